//! The dictionary made from the user's own filed mail (engine::fetch::
//! dictionary) against a real sshd: made after a fetch files enough mail,
//! sent up once when a small claim finds the server without it, used for
//! small claims (filed byte for byte), and a copy changed or removed on the
//! server is never used: the claim goes without it and the dictionary is
//! sent again; every message is filed once.

mod common;
mod fetch_support;

use common::TestSshd;
use fetch_support::{assert_same_messages, describe, fill_spool, real_mail, Fixture};

/// The spool split at its `From ` lines: one slice per message.
fn messages(spool: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<usize> = spool
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"\nFrom ")
        .map(|(i, _)| i + 1)
        .collect();
    starts.insert(0, 0);
    starts.push(spool.len());
    starts.windows(2).map(|w| &spool[w[0]..w[1]]).collect()
}

/// The history's method column of the last fetch.
fn last_method(history: &str) -> String {
    let row = history.lines().last().unwrap_or("");
    row.split('\t').nth(7).unwrap_or("").to_string()
}

#[test]
fn small_fetches_use_the_dictionary_and_a_changed_server_copy_is_replaced() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let all = messages(&mail.spool);
    let (filed, fresh) = all.split_at(all.len() - 15);
    let fixture = Fixture::as_root(&sshd, &filed.concat(), "");
    let client = &fixture.client;
    let fetch = || {
        let out = client.run(&["fetch", "--verbose"]);
        assert!(out.status.success(), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains("with the dictionary failed"),
            "a wrong dictionary was used: {stderr}"
        );
        stderr
    };

    // A large fetch goes without; the dictionary is made after it.
    let said = fetch();
    assert!(said.contains("made a dictionary of"), "{said}");
    assert!(!last_method(&client.history()).contains("dictionary"));
    let state =
        std::fs::read_to_string(client.data_dir().join("accounts/acct/dictionary-state")).unwrap();
    let sha = state
        .lines()
        .next()
        .unwrap()
        .strip_prefix("sha256 ")
        .unwrap();
    let server_copy =
        std::path::PathBuf::from(format!("/root/.mailhaul/scripts/dict-{}.zdict", &sha[..16]));
    let _ = std::fs::remove_file(&server_copy);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(client.data_dir().join("accounts/acct/dictionary"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut batches = fresh.chunks(3);
    let mut small = |what: &str| {
        fill_spool(&fixture.spool, &batches.next().unwrap().concat());
        let said = fetch();
        eprintln!("{what}: {}", client.history().lines().last().unwrap());
        said
    };
    // The server lacks it: this claim goes without, then it is sent up.
    let said = small("missing");
    assert!(!last_method(&client.history()).contains("dictionary"));
    assert!(said.contains("sent the dictionary to the server"), "{said}");
    assert_eq!(
        sha256_hex(&std::fs::read(&server_copy).unwrap()),
        sha,
        "the server's copy"
    );
    // Now it is used.
    small("used");
    assert!(
        last_method(&client.history()).contains("dictionary"),
        "{}",
        client.history()
    );

    // Changed on the server: not used, sent again.
    std::fs::write(
        &server_copy,
        b"Subject: not the dictionary\n\n".repeat(5000),
    )
    .unwrap();
    let said = small("changed");
    assert!(!last_method(&client.history()).contains("dictionary"));
    assert!(said.contains("sent the dictionary to the server"), "{said}");
    assert_eq!(sha256_hex(&std::fs::read(&server_copy).unwrap()), sha);

    // Removed on the server: the same.
    std::fs::remove_file(&server_copy).unwrap();
    let said = small("removed");
    assert!(!last_method(&client.history()).contains("dictionary"));
    assert!(said.contains("sent the dictionary to the server"), "{said}");

    small("used again");
    assert!(last_method(&client.history()).contains("dictionary"));

    // Every message filed once, byte for byte.
    assert_same_messages(&client.filed_md5s(), &mail.md5s, &mail.source);
    let _ = std::fs::remove_file(&server_copy);
}

/// `dictionary = false`: no dictionary is made or sent.
#[test]
fn the_dictionary_can_be_turned_off() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "dictionary = false\n");
    let client = &fixture.client;
    let out = client.run(&["fetch", "--verbose"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!client.data_dir().join("accounts/acct/dictionary").exists());
    assert_same_messages(&client.filed_md5s(), &mail.md5s, &mail.source);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
