//! Servers that lack tools. The test sshd runs every root session in its own
//! mount namespace (ForceCommand + `unshare -m`) where the programs named in
//! a file are covered by a non-executable file, so one real server can lack
//! zstd, gzip or the lock helpers in turn: `auto` compression falls back to
//! gzip, then to SSH transport compression (never two); copy-truncate takes
//! procmail's `lockfile` without dotlockfile, and without either stops with
//! exit 9 naming the package to install, touching nothing.

mod common;
mod fetch_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::Digest;

use common::TestSshd;
use fetch_support::{assert_same_messages, describe, real_mail, Client, Fixture};

/// An sshd whose root sessions cannot see the programs listed in `hide`;
/// each exec request is appended to `commands`.
fn sshd_hiding_tools(dir: &Path) -> TestSshd {
    let blank = dir.join("blank");
    std::fs::write(&blank, "").unwrap();
    let wrapper = dir.join("hide-tools.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {commands}\n\
             exec unshare -m sh -c 'for t in $(cat {hide}); do \
             mount --bind {blank} \"$t\" || exit 99; done; exec sh -c \"$SSH_ORIGINAL_COMMAND\"'\n",
            hide = dir.join("hide").display(),
            commands = dir.join("commands").display(),
            blank = blank.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    TestSshd::start_with_config(&format!("ForceCommand {}\n", wrapper.display()))
}

fn history_row(client: &Client) -> Vec<String> {
    client
        .history()
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split('\t')
        .map(String::from)
        .collect()
}

#[test]
fn missing_compressors_and_lock_helpers_fall_back_or_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = sshd_hiding_tools(dir.path());
    let mail = real_mail();
    let raw = mail.spool.len() as u64;

    // No zstd: gzip.
    std::fs::write(dir.path().join("hide"), "/usr/bin/zstd\n").unwrap();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    let client = &fixture.client;
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(gzip -6)"));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, "gzip fallback");
    let row = history_row(client);
    assert_eq!(row[7], "gzip -6");

    // Neither zstd nor gzip: plain bytes over SSH transport compression.
    std::fs::write(dir.path().join("hide"), "/usr/bin/zstd\n/usr/bin/gzip\n").unwrap();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    let client = &fixture.client;
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, "ssh fallback");
    let row = history_row(client);
    assert_eq!(row[7], "ssh");
    let (payload, socket): (u64, u64) = (row[5].parse().unwrap(), row[6].parse().unwrap());
    assert_eq!(payload, raw, "the payload itself is not compressed");
    assert!(
        socket < raw / 2,
        "the socket carried {socket} of {raw} bytes"
    );

    // No dotlockfile: copy-truncate locks with procmail's lockfile.
    std::fs::write(dir.path().join("hide"), "/usr/bin/dotlockfile\n").unwrap();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "claim = \"copy-truncate\"");
    let (client, spool) = (&fixture.client, &fixture.spool);
    let out = client.run(&["check"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("under lockfile's lock"),
        "{}",
        describe(&out)
    );
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, "lockfile");
    assert_eq!(
        std::fs::metadata(spool).unwrap().len(),
        0,
        "truncated in place"
    );
    assert!(!fixture.server_dir().join("spool.lock").exists());

    // copy-truncate without dotlockfile or lockfile: refused, nothing touched.
    std::fs::write(
        dir.path().join("hide"),
        "/usr/bin/dotlockfile\n/usr/bin/lockfile\n",
    )
    .unwrap();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "claim = \"copy-truncate\"");
    let (client, spool) = (&fixture.client, &fixture.spool);
    let out = client.run(&["fetch"]);
    assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("install liblockfile-bin"), "{err}");
    assert_eq!(std::fs::read(spool).unwrap(), mail.spool, "spool touched");
    // Claims of this spool only: other root tests running beside this one
    // claim spools named `spool` too (claim.sh names a copy claim after the
    // spool and the sha256 of its canonical path).
    let canonical = std::fs::canonicalize(spool).unwrap();
    let key = format!(
        "{:x}",
        sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes())
    );
    let ours = format!("spool.{}.", &key[..12]);
    let claims: Vec<_> = std::fs::read_dir("/root/.mailhaul/claims")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !claims
            .iter()
            .any(|n| n.to_string_lossy().starts_with(&ours)),
        "a claim of {spool:?} was made: {claims:?}"
    );
    let out = client.run(&["check"]);
    assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("claim: impossible"));
}

/// How many exec requests in the wrapper's log ran claim.sh's `command`
/// (the loader's first argument, hex-encoded).
fn steps(dir: &Path, command: &str) -> usize {
    let hex: String = command.bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::read_to_string(dir.join("commands"))
        .unwrap_or_default()
        .matches(&format!("' sh x{hex} "))
        .count()
}

/// The server's facts are kept after a fetch, so the next one makes no
/// survey step: the claim step checks them (their key). A server that
/// changed meanwhile is chosen for again from the facts the claim step sent
/// back, claiming nothing first: without zstd the mail comes by gzip; without
/// the lock helpers, exit 9 naming the package, the spool untouched; kept
/// facts that allow no claim are surveyed again, and once the helpers are
/// back the mail comes, each message once.
#[test]
fn kept_facts_spare_the_survey_until_the_server_changes() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = sshd_hiding_tools(dir.path());
    let hide = |tools: &str| std::fs::write(dir.path().join("hide"), tools).unwrap();
    let steps = || (steps(dir.path(), "survey"), steps(dir.path(), "claim"));
    hide("");
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "claim = \"copy-truncate\"");
    let (client, spool) = (&fixture.client, &fixture.spool);
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(steps(), (1, 1));
    let facts = client.data_dir().join("accounts/acct/server-facts");
    assert_eq!(
        std::fs::metadata(&facts).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(steps(), (1, 2));

    fetch_support::fill_spool(spool, &mail.spool);
    hide("/usr/bin/zstd\n");
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(gzip -6)"));
    assert_eq!(steps(), (1, 4));

    fetch_support::fill_spool(spool, &mail.spool);
    hide("/usr/bin/dotlockfile\n/usr/bin/lockfile\n");
    let out = client.run(&["fetch"]);
    assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("install liblockfile-bin"), "{err}");
    assert_eq!(std::fs::read(spool).unwrap(), mail.spool, "spool touched");
    assert_eq!(steps(), (1, 5));

    hide("");
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::metadata(spool).unwrap().len(), 0);
    assert_eq!(steps(), (2, 6));
    let mut want: Vec<String> = (0..3).flat_map(|_| mail.md5s.iter().cloned()).collect();
    want.sort();
    assert_same_messages(&client.filed_md5s(), &want, "before and after the changes");
}
