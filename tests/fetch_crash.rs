//! Kill -9 of `mailhaul fetch` at every step of the protocol, then a rerun:
//! every message must be filed exactly once (I2), and nothing may be left on
//! the server or in staging. The crash points are set with
//! `MAILHAUL_TEST_CRASH_AT`, at which the binary sends itself SIGKILL.

mod common;
mod fetch_support;

use common::{TestSshd, TestUser};
use fetch_support::{assert_same_messages, describe, fill_spool, real_mail, Client};

/// Crash as an ordinary user (copy-truncate) at `point`, check the state the
/// crash left, rerun, and check that every message arrived exactly once.
fn crash_then_rerun_as_user(point: &str) {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhcr");
    let mail = real_mail();
    fill_spool(&user.spool, &mail.spool);
    let client = Client::new(&sshd, &user.name, "");
    client.set_format("mboxrd");

    client.fetch_crashing_at(point);
    // Whatever the point, the spool was claimed (all points are after it).
    assert_eq!(std::fs::metadata(&user.spool).unwrap().len(), 0, "{point}");
    let on_server = claims_of(&user);
    let staged = staged_files(&client);
    match point {
        "claimed" | "mid-transfer" => {
            assert_eq!(on_server.len(), 1, "{point}: claim kept on the server");
            assert!(staged.iter().all(|f| f.ends_with(".part")), "{staged:?}");
        }
        "verified" => {
            assert_eq!(on_server.len(), 1, "{point}: not released yet");
            assert_eq!(staged.len(), 1, "{point}: {staged:?}");
        }
        "released" | "mid-delivery" => {
            assert!(on_server.is_empty(), "{point}: released: {on_server:?}");
            assert_eq!(staged.len(), 1, "{point}: {staged:?}");
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
        claims_of(&user).is_empty(),
        "{point}: claims left on the server"
    );
    assert!(
        staged_files(&client).is_empty(),
        "{point}: staging not emptied"
    );
    // And a third run has nothing more to do.
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(client.filed_md5s().len(), mail.md5s.len());
}

fn claims_of(user: &TestUser) -> Vec<String> {
    std::fs::read_dir(user.home.join(".mailhaul/claims"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
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
fn kill_after_release_before_delivery() {
    crash_then_rerun_as_user("released");
}

#[test]
fn kill_mid_delivery() {
    crash_then_rerun_as_user("mid-delivery");
}

/// The rename strategy (root) killed mid-transfer: the renamed claim is
/// recovered on the next run, and new mail that arrived meanwhile is claimed
/// too.
#[test]
fn root_kill_mid_transfer_then_new_mail() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let server = tempfile::tempdir().unwrap();
    let spool = server.path().join("spool");
    fill_spool(&spool, &mail.spool);
    let client = Client::new(&sshd, "root", &format!("spool = {spool:?}"));
    client.set_format("mboxrd");
    client.fetch_crashing_at("mid-transfer");
    let left: Vec<String> = std::fs::read_dir(server.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("spool.mailhaul-claim."), "{left:?}");

    let extra = b"From x@y Thu Jan  1 00:00:00 1970\nSubject: arrived later\n\nhi\n\n";
    fill_spool(&spool, extra);
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    let mut want = mail.md5s.clone();
    want.push(format!(
        "{:x}",
        <md5::Md5 as md5::Digest>::digest(b"Subject: arrived later\n\nhi\n")
    ));
    want.sort();
    assert_same_messages(&client.filed_md5s(), &want, "rename crash + new mail");
    assert_eq!(std::fs::read_dir(server.path()).unwrap().count(), 0);
}
