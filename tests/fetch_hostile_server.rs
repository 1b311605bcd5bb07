//! A server whose tools betray it: the claim's bytes come back with one
//! byte changed and the right length, inside a stream that decodes cleanly
//! (the hook in `tests/common/hook.rs` flips a letter of the claim and
//! compresses it again the way the client asked). The download must be
//! refused, nothing filed, and the claim left on the server; once the
//! server is honest again the next fetch files every message exactly once.

mod common;
mod fetch_support;

use common::ServerHook;
use fetch_support::{assert_same_messages, describe, names_in, real_mail, settled, Fixture};

#[test]
fn a_stream_with_one_flipped_byte_is_refused_and_the_claim_stays_on_the_server() {
    let hook = ServerHook::new();
    let sshd = hook.start_sshd();
    let mail = real_mail();
    // zstd: the default; none: no decoder in the way, only the checksum.
    for compression in ["zstd", "none"] {
        let fixture = Fixture::as_root(
            &sshd,
            &mail.spool,
            &format!("compression = {compression:?}\n"),
        );
        let client = &fixture.client;
        hook.set("flip", true);
        let logged = hook.log().len();
        let out = client.run(&["fetch"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(7),
            "{compression}: {}",
            describe(&out)
        );
        assert!(
            stderr.contains("does not verify"),
            "{compression}: {}",
            describe(&out)
        );
        let flipped: Vec<Vec<String>> = hook.log()[logged..]
            .iter()
            .filter(|e| e.is(&["send", "flipped"]))
            .map(|e| e.words.clone())
            .collect();
        assert_eq!(flipped.len(), 1, "{}", hook.log_text());
        assert_eq!(
            flipped[0][3],
            mail.spool.len().to_string(),
            "the corrupt stream has the claim's length"
        );

        // Nothing filed, nothing staged or journalled, the claim on the
        // server byte for byte.
        assert!(client.filed_md5s().is_empty(), "{compression}: filed");
        let account = client.data_dir().join("accounts/acct");
        let staged: Vec<_> = std::fs::read_dir(account.join("staging"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(staged.is_empty(), "{compression}: staging holds {staged:?}");
        let journal = std::fs::read_to_string(account.join("journal")).unwrap_or_default();
        assert!(
            !journal.contains("staged"),
            "{compression}: journal {journal}"
        );
        assert!(!fixture.spool.exists(), "the spool was claimed");
        let claims: Vec<_> = std::fs::read_dir(fixture.server_dir())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(claims.len(), 1, "{compression}: server holds {claims:?}");
        assert!(
            std::fs::read(&claims[0]).unwrap() == mail.spool,
            "{compression}: the claim on the server changed"
        );

        // An honest server again: every message exactly once, claim released.
        hook.set("flip", false);
        let out = client.run(&["fetch"]);
        assert!(out.status.success(), "{compression}: {}", describe(&out));
        assert_same_messages(
            &client.filed_md5s(),
            &mail.md5s,
            &format!("{compression}: refused once, then fetched"),
        );
        assert_eq!(
            settled(|| names_in(fixture.server_dir())),
            Vec::<String>::new(),
            "{compression}: the claim was released"
        );
    }
}
