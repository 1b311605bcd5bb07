//! A message that can be neither filed nor quarantined (here: both folders'
//! paths are taken by plain files) stays in the staged claim, the fetch
//! exits 8 saying so, and the next fetch delivers it: every message once.

mod common;
mod fetch_support;

use common::TestSshd;
use fetch_support::{assert_same_messages, describe, fill_spool, Client};

#[test]
fn an_unfilable_message_stays_staged_until_a_later_fetch_files_it() {
    common::require_root_and_packages();
    let sshd = TestSshd::start();
    let root = env!("CARGO_MANIFEST_DIR");
    let sample = std::fs::read(format!("{root}/assets/sample-spool.mbox")).unwrap();
    let mut want: Vec<String> = std::fs::read_to_string(format!("{root}/assets/sample-spool.md5"))
        .unwrap()
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect();
    want.sort();

    let server = tempfile::tempdir().unwrap();
    let spool = server.path().join("spool");
    fill_spool(&spool, &sample);
    let client = Client::new(&sshd, "root", &format!("spool = {spool:?}"));
    client.set_format("mboxrd");
    let config = std::fs::read_to_string(&client.config).unwrap();
    std::fs::write(
        &client.config,
        config.replace(
            "[[account]]",
            "[[filter.rule]]\nsize_over = 20000\nfolder = \"Big\"\n\n[[account]]",
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&client.maildir).unwrap();
    let blockers = [
        client.maildir.join(".Big"),
        client.maildir.join(".mailhaul-undelivered"),
    ];
    for b in &blockers {
        std::fs::write(b, "not a directory\n").unwrap();
    }

    let first = client.run(&["fetch"]);
    assert_eq!(first.status.code(), Some(8), "{}", describe(&first));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("the next fetch delivers them"), "{stderr}");
    let filed_first = client.filed_md5s();
    assert!(
        !filed_first.is_empty() && filed_first.len() < want.len(),
        "expected a partial delivery, filed {}",
        filed_first.len()
    );
    assert!(!spool.exists(), "the spool was claimed and released");
    let staging = client.data_dir();
    let staged: Vec<_> = walk(&staging)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("stag"))
        .collect();
    assert!(
        !staged.is_empty(),
        "the claim must stay staged under {}",
        staging.display()
    );

    for b in &blockers {
        std::fs::remove_file(b).unwrap();
    }
    let second = client.run(&["fetch"]);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_same_messages(&client.filed_md5s(), &want, "after the second fetch");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
