//! Kill -9 of `mailhaul fetch` at every step of the protocol, then a rerun:
//! every message must be filed exactly once (exactly-once, docs/design.md), and nothing may be left on
//! the server or in staging. The crash points are set with
//! `MAILHAUL_TEST_CRASH_AT`, at which the binary sends itself SIGKILL.

mod common;
mod fetch_support;

use common::tmpfs::Tmpfs;
use common::{TestSshd, TestUser};
use fetch_support::{
    assert_same_messages, describe, fill_spool, names_in, real_mail, settled, Client, Fixture,
};

/// Crash as an ordinary user (copy-truncate) at `point`, check the state the
/// crash left, rerun, and check that every message arrived exactly once.
fn crash_then_rerun_as_user(point: &str) {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_user(&sshd, "mhcr", &mail.spool, "");
    let (client, user) = (&fixture.client, fixture.user());

    client.fetch_crashing_at(point);
    // Whatever the point, the spool was claimed (all points are after it).
    assert_eq!(std::fs::metadata(&user.spool).unwrap().len(), 0, "{point}");
    let on_server = claims_of(user);
    let staged = staged_files(client);
    match point {
        "claimed" | "mid-transfer" => {
            assert_eq!(on_server.len(), 1, "{point}: claim kept on the server");
            assert!(staged.iter().all(|f| f.ends_with(".part")), "{staged:?}");
        }
        "verified" | "mid-delivery" => {
            assert_eq!(on_server.len(), 1, "{point}: not released yet");
            assert_eq!(staged.len(), 1, "{point}: {staged:?}");
        }
        // Filed, the journal says so, and the staged copy is gone; the
        // rerun only releases the server copy. A reader has seen the
        // messages meanwhile (moved to cur/), so fetching the claim again
        // would file every message twice.
        "delivered" => {
            assert_eq!(on_server.len(), 1, "{point}: not released yet");
            assert!(staged.is_empty(), "{point}: {staged:?}");
            assert_eq!(client.filed_md5s().len(), mail.md5s.len(), "{point}");
            read_as_a_mail_reader_does(client);
        }
        // Journalled as sent, but the request never left: the rerun finds
        // the claim still listed and only releases it. A reader has seen
        // the messages meanwhile, as above.
        "release-sent" => {
            assert_eq!(on_server.len(), 1, "{point}: not released yet");
            assert!(staged.is_empty(), "{point}: {staged:?}");
            assert_eq!(client.filed_md5s().len(), mail.md5s.len(), "{point}");
            read_as_a_mail_reader_does(client);
        }
        // The release was sent and the process died without its answer:
        // the server removes the claim all the same (sshd runs the request
        // it read, without the client), and the rerun sees it gone.
        "released" => {
            let left = settled(|| claims_of(user));
            assert!(
                left.is_empty(),
                "{point}: the release sent before the crash did not happen: {left:?}"
            );
            assert!(staged.is_empty(), "{point}: {staged:?}");
        }
        _ => unreachable!(),
    }
    if point == "mid-delivery" {
        let partial = client.filed_md5s().len();
        assert!(
            partial > 0 && partial < mail.md5s.len(),
            "mid-delivery crash filed {partial} of {}",
            mail.md5s.len()
        );
    }

    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{point}: rerun: {}", describe(&out));
    assert_same_messages(
        &client.filed_md5s(),
        &mail.md5s,
        &format!("crash at {point}, then rerun"),
    );
    assert!(
        settled(|| claims_of(user)).is_empty(),
        "{point}: claims left on the server"
    );
    assert!(
        staged_files(client).is_empty(),
        "{point}: staging not emptied"
    );
    // And a third run has nothing more to do.
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(client.filed_md5s().len(), mail.md5s.len());
}

/// Moves every message in a `new/` to its `cur/` as seen (`:2,S`).
fn read_as_a_mail_reader_does(client: &Client) {
    for file in fetch_support::maildir_files(&client.maildir) {
        let dir = file.parent().unwrap();
        if dir.file_name().is_some_and(|n| n == "new") {
            let name = file.file_name().unwrap().to_string_lossy();
            let seen = dir
                .parent()
                .unwrap()
                .join("cur")
                .join(format!("{name}:2,S"));
            std::fs::rename(&file, seen).unwrap();
        }
    }
}

fn claims_of(user: &TestUser) -> Vec<String> {
    names_in(&user.home.join(".mailhaul/claims"))
}

fn staged_files(client: &Client) -> Vec<String> {
    std::fs::read_dir(client.data_dir().join("accounts/acct/staging"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kill_after_the_claim() {
    crash_then_rerun_as_user("claimed");
}

#[test]
fn kill_mid_transfer() {
    crash_then_rerun_as_user("mid-transfer");
}

#[test]
fn kill_after_verification_before_release() {
    crash_then_rerun_as_user("verified");
}

#[test]
fn kill_mid_delivery() {
    crash_then_rerun_as_user("mid-delivery");
}

#[test]
fn kill_after_delivery_before_release() {
    crash_then_rerun_as_user("delivered");
}

#[test]
fn kill_after_journalling_a_release_not_yet_sent() {
    crash_then_rerun_as_user("release-sent");
}

#[test]
fn kill_after_release() {
    crash_then_rerun_as_user("released");
}

/// The rename strategy (root) killed mid-transfer: the renamed claim is
/// recovered on the next run, and new mail that arrived meanwhile is claimed
/// too.
#[test]
fn root_kill_mid_transfer_then_new_mail() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    let (client, spool) = (&fixture.client, &fixture.spool);
    client.fetch_crashing_at("mid-transfer");
    let left: Vec<String> = std::fs::read_dir(fixture.server_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("spool.mailhaul-claim."), "{left:?}");

    let extra = b"From x@y Thu Jan  1 00:00:00 1970\nSubject: arrived later\n\nhi\n\n";
    fill_spool(spool, extra);
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    let mut want = mail.md5s.clone();
    want.push(format!(
        "{:x}",
        <md5::Md5 as md5::Digest>::digest(b"Subject: arrived later\n\nhi\n")
    ));
    want.sort();
    assert_same_messages(&client.filed_md5s(), &want, "rename crash + new mail");
    assert_eq!(
        settled(|| names_in(fixture.server_dir())),
        Vec::<String>::new()
    );
}

/// A full local disk while the claim is downloaded: the fetch fails with
/// exit 1 (a local error), the claim stays on the server, nothing is filed
/// twice once there is room again.
#[test]
fn a_full_local_disk_keeps_the_claim_on_the_server() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_user(&sshd, "mhcd", &mail.spool, "");
    let (client, user) = (&fixture.client, fixture.user());
    // The data dir (journal, staging) on a tmpfs smaller than the spool.
    let data = Tmpfs::mount(&client.dir.path().join("data"), "256k", 0, 0);

    let out = client.run(&["fetch"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left"), "{err}");
    assert!(err.contains("stays on the server"), "{err}");
    assert!(client.filed_md5s().is_empty());
    assert_eq!(
        claims_of(user).len(),
        1,
        "the claim must stay on the server"
    );
    assert!(
        staged_files(client).is_empty(),
        "partial download left behind"
    );

    data.resize("64m");
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, "after a full disk");
    assert!(settled(|| claims_of(user)).is_empty());
}

/// The connection dies mid-transfer (every server process of the user is
/// killed while `zstd -19` is still streaming): the fetch fails with exit 7
/// and says the claim stays on the server; the next run files everything
/// exactly once.
#[test]
fn a_connection_dropped_mid_transfer_keeps_the_claim() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    // zstd -19 compresses ~2 MB/s here: the transfer lasts seconds.
    let fixture = Fixture::as_user(&sshd, "mhcx", &mail.spool, "zstd_level = 19");
    let (client, user) = (&fixture.client, fixture.user());
    let mut child = client
        .command(&["fetch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Wait until the download has started writing, then cut the link.
    loop {
        let started = staged_files(client).iter().any(|f| {
            f.ends_with(".part")
                && std::fs::metadata(client.data_dir().join("accounts/acct/staging").join(f))
                    .is_ok_and(|m| m.len() > 0)
        });
        if started {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "fetch ended before the cut"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the download never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    common::proc::kill_user_processes(user.uid);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stays on the server"), "{err}");
    eprintln!("the cut fetch said: {}", err.lines().last().unwrap_or(""));
    assert_eq!(
        claims_of(user).len(),
        1,
        "the claim must stay on the server"
    );
    assert!(client.filed_md5s().is_empty());

    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, "after a dropped link");
    assert!(settled(|| claims_of(user)).is_empty());
}

/// A one-line message with `subject`, as a spool holds it.
fn message(subject: &str) -> String {
    format!("From a@b Thu Jan  1 00:00:00 1970\nSubject: {subject}\n\nbody\n\n")
}

/// The md5 of [`message`]`(subject)` as filed.
fn md5(subject: &str) -> String {
    let filed = format!("Subject: {subject}\n\nbody\n");
    format!("{:x}", <md5::Md5 as md5::Digest>::digest(filed.as_bytes()))
}

/// Two accounts of one login whose spools have the same file name in
/// different directories (copy-truncate keeps both accounts' claims in
/// `~/.mailhaul/claims`): a claim one account left behind is recovered by
/// that account only, never filed into the other's Maildir.
#[test]
fn a_claim_left_by_one_spool_is_not_taken_by_another_of_the_same_name() {
    let sshd = TestSshd::start();
    // A name no other test uses, so that no other fetch can meet these claims.
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clients: Vec<(Client, std::path::PathBuf)> = [&first_dir, &second_dir]
        .into_iter()
        .map(|dir| {
            let spool = dir.path().join("same-name-inbox");
            let extra = format!("spool = {spool:?}\nclaim = \"copy-truncate\"");
            (Client::new(&sshd, "root", &extra), spool)
        })
        .collect();
    let [(first, first_spool), (second, second_spool)] = &clients[..] else {
        unreachable!()
    };
    fill_spool(first_spool, message("first").as_bytes());
    fill_spool(second_spool, message("second").as_bytes());

    first.fetch_crashing_at("claimed");
    assert_eq!(std::fs::metadata(first_spool).unwrap().len(), 0, "claimed");
    let out = second.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&second.filed_md5s(), &[md5("second")], "the other account");
    let out = first.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(
        &first.filed_md5s(),
        &[md5("first")],
        "the claim's own account",
    );
}

/// Copies cut short by a crash of the server script itself (a power loss
/// between copy and truncate, or between truncate and naming), found under
/// the lock at the next claim: a `.part` that is still the spool's prefix is
/// dropped (the spool keeps that mail), any other is finished and fetched.
#[test]
fn copies_cut_short_on_the_server_are_repaired_under_the_lock() {
    use sha2::Digest;
    let sshd = TestSshd::start();
    let server = tempfile::tempdir().unwrap();
    let spool = server.path().join("repair-inbox");
    let in_spool = format!(
        "{}{}",
        message("in the spool"),
        message("also in the spool")
    );
    fill_spool(&spool, in_spool.as_bytes());
    let client = Client::new(
        &sshd,
        "root",
        &format!("spool = {spool:?}\nclaim = \"copy-truncate\""),
    );
    // The script's names: NAME.KEY.ID.part, KEY from the canonical path.
    let canonical = std::fs::canonicalize(&spool).unwrap();
    let key = format!(
        "{:x}",
        sha2::Sha256::digest(canonical.to_str().unwrap().as_bytes())
    );
    let claims = std::path::Path::new("/root/.mailhaul/claims");
    std::fs::create_dir_all(claims).unwrap();
    let part = |id: &str| claims.join(format!("repair-inbox.{}.{id}.part", &key[..12]));
    let (finished, dropped) = (part("20260101T000000-1-1"), part("20260101T000000-2-2"));
    // Truncated after a complete copy: the copy holds the only one.
    std::fs::write(&finished, message("only in the copy")).unwrap();
    // Cut short before the truncate: a prefix of what the spool still holds.
    std::fs::write(&dropped, &in_spool.as_bytes()[..40]).unwrap();

    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("repaired an interrupted claim"),
        "{}",
        describe(&out)
    );
    let mut want = vec![
        md5("in the spool"),
        md5("also in the spool"),
        md5("only in the copy"),
    ];
    want.sort();
    assert_same_messages(&client.filed_md5s(), &want, "after the repair");
    assert!(!finished.exists() && !dropped.exists());
}
