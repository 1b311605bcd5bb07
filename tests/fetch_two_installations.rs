//! Two machines fetching one account (two mailhaul installations: two data
//! dirs) against a real sshd: a claim belongs to the installation that made
//! it, so a claim one machine left on the server (killed after claiming) is
//! never downloaded by the other, which would file its messages twice once
//! the first comes back. `--adopt-claims` takes such a claim over.

mod common;
mod fetch_support;

use common::TestSshd;
use fetch_support::{
    assert_same_messages, describe, fill_spool, real_mail, settled, Client, Fixture,
};
use md5::{Digest, Md5};

/// Names of the claims next to root's spool in `dir`.
fn claims_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spool.mailhaul-claim."))
        .collect()
}

/// A second client on another "machine": its own data dir and Maildir, the
/// same account on the same server.
fn other_installation(sshd: &TestSshd, fixture: &Fixture) -> Client {
    let client = Client::new(sshd, "root", &format!("spool = {:?}\n", fixture.spool));
    client.set_format("mboxrd");
    client
}

/// Three messages that are not in the corpus, and their md5s (sorted).
fn new_mail() -> (Vec<u8>, Vec<String>) {
    let mut spool = Vec::new();
    let mut md5s = Vec::new();
    for i in 0..3 {
        let message = format!(
            "Subject: arrived later {i}\nFrom: a@example.org\nTo: root@localhost\n\nbody {i}\n"
        );
        spool.extend(format!("From a@example.org Mon Jan  1 10:0{i}:00 2024\n").bytes());
        spool.extend(message.bytes());
        spool.push(b'\n');
        md5s.push(format!("{:x}", Md5::digest(message.as_bytes())));
    }
    md5s.sort();
    (spool, md5s)
}

#[test]
fn a_claim_left_by_another_installation_is_left_to_it() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    let laptop = &fixture.client;
    let desktop = other_installation(&sshd, &fixture);

    // The laptop claims the spool and is killed before downloading it.
    laptop.fetch_crashing_at("claimed");
    let laptop_id = std::fs::read_to_string(laptop.data_dir().join("installation-id")).unwrap();
    let left = claims_in(fixture.server_dir());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].ends_with(&format!("-o{}", laptop_id.trim())),
        "the claim names its owner: {left:?}"
    );

    // New mail arrives; the desktop files it, and only it.
    let (later, later_md5s) = new_mail();
    fill_spool(&fixture.spool, &later);
    let out = desktop.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    let said = describe(&out);
    assert!(
        said.contains("another mailhaul installation") && said.contains("--adopt-claims"),
        "{said}"
    );
    assert_same_messages(&desktop.filed_md5s(), &later_md5s, "the desktop");
    let desktops = settled(|| {
        let mut now = claims_in(fixture.server_dir());
        now.retain(|n| !left.contains(n));
        now
    });
    assert!(
        desktops.is_empty(),
        "the desktop's claim released: {desktops:?}"
    );
    assert_eq!(
        claims_in(fixture.server_dir()),
        left,
        "the laptop's claim stays"
    );

    // The laptop comes back and files its claim: every message once, on
    // one machine or the other.
    let out = laptop.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&laptop.filed_md5s(), &mail.md5s, "the laptop");
    assert!(settled(|| claims_in(fixture.server_dir())).is_empty());
}

#[test]
fn adopt_claims_takes_over_a_claim_of_an_installation_that_is_gone() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    fixture.client.fetch_crashing_at("claimed");
    let desktop = other_installation(&sshd, &fixture);
    let out = desktop.run(&["fetch", "--adopt-claims"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&desktop.filed_md5s(), &mail.md5s, "adopted");
    assert!(settled(|| claims_in(fixture.server_dir())).is_empty());
}
