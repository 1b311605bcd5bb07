//! Resume: a download cut at a known byte of its stream continues from
//! about there on the next run, against the real sshd. The link is cut by
//! the harness: the server hook (`tests/common/hook.rs`, switch `cut`)
//! writes the first K bytes of `send`'s zstd stream and hangs, and the test
//! kills the server's end of the connection. The next run must ask for the
//! rest only (its offset is in the hook's log; its payload is exactly
//! `zstd -9` of the rest), file every message exactly once, and still
//! check the whole file's sha256: a flipped byte in the resumed part is
//! refused, and a kept prefix that is not the server's claim's (changed
//! locally, or a claim changed on the server) starts over from byte 0.

mod common;
mod fetch_support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ServerHook, TestSshd};
use fetch_support::{assert_same_messages, describe, real_mail, settled, Fixture};

/// What `send` streams for a whole claim holding `data`: `zstd -q -c
/// -LEVEL FILE` (from a file, zstd records the size in the frame header).
fn zstd_file(level: u32, data: &[u8]) -> Vec<u8> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let out = Command::new("zstd")
        .args(["-q", "-c", &format!("-{level}")])
        .arg(file.path())
        .output()
        .expect("zstd (apt-get install zstd)");
    assert!(out.status.success());
    out.stdout
}

/// What `send` streams for the rest of a claim, `data`: zstd's output from
/// a pipe (`tail -c +N FILE | zstd -q -c -LEVEL`).
fn zstd(level: u32, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args(["-q", "-c", &format!("-{level}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd (apt-get install zstd)");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

/// How many bytes zstd decodes from the first bytes of a stream.
fn decodable(stream: &[u8]) -> usize {
    let mut child = Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = stream.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout.len()
}

const CONFIG: &str = "compression = \"zstd\"\nzstd_level = 9\n";

fn account_dir(fixture: &Fixture) -> PathBuf {
    fixture.client.data_dir().join("accounts/acct")
}

fn staging(fixture: &Fixture) -> Vec<PathBuf> {
    std::fs::read_dir(account_dir(fixture).join("staging"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn claims_on_server(fixture: &Fixture) -> Vec<PathBuf> {
    std::fs::read_dir(fixture.server_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".mailhaul-claim."))
        .collect()
}

/// The offsets the `send`s logged after entry `from` of the hook's log.
fn send_offsets(hook: &ServerHook, from: usize) -> Vec<u64> {
    hook.log()[from..]
        .iter()
        .filter(|e| e.is(&["send", "start", "offset"]))
        .map(|e| e.words[3].parse().unwrap())
        .collect()
}

/// Payload and socket bytes of the history's last fetch.
fn last_bytes(fixture: &Fixture) -> (u64, u64) {
    let history = fixture.client.history();
    let line = history.lines().last().expect("a history line");
    let f: Vec<&str> = line.split('\t').collect();
    (f[5].parse().unwrap(), f[6].parse().unwrap())
}

/// Runs a fetch whose `send` stream is cut after `cut` bytes (the server's
/// end of the connection killed), checks that it failed saying the claim
/// stays, and returns the prefix length the journal kept.
fn fetch_cut_at(sshd: &TestSshd, hook: &ServerHook, fixture: &Fixture, cut: usize) -> u64 {
    hook.set_value("cut", &cut.to_string());
    let logged = hook.log().len();
    let mut child = fixture
        .client
        .command(&["fetch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !hook.log()[logged..]
        .iter()
        .any(|e| e.is(&["send", "cut-at"]))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the fetch ended before the cut"
        );
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "no cut within 60 s; hook log:\n{}\nfetch: {}",
                hook.log_text(),
                describe(&child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the K bytes reach the client, then cut the link.
    std::thread::sleep(Duration::from_secs(1));
    common::proc::kill_connection_holders(sshd.port);
    hook.set("cut", false);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stays on the server"), "{err}");
    assert_eq!(claims_on_server(fixture).len(), 1, "claim kept");
    assert!(fixture.client.filed_md5s().is_empty());
    let journal = std::fs::read_to_string(account_dir(fixture).join("journal")).unwrap();
    let kept: u64 = journal
        .lines()
        .rfind(|l| l.starts_with("partial\t"))
        .unwrap_or_else(|| panic!("no partial record in the journal: {journal}"))
        .rsplit('\t')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kept
}

/// Cut at 60 % of the zstd stream: the journal keeps about what zstd
/// decodes from those bytes, durable in staging and equal to the spool's
/// start; the next run asks for the rest from exactly there, moves only
/// `zstd -9` of the rest, and files every message once.
#[test]
fn a_download_cut_at_a_known_offset_continues_from_there() {
    let hook = ServerHook::new();
    let sshd = hook.start_sshd();
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, CONFIG);
    let full = zstd_file(9, &mail.spool);
    let cut = full.len() * 6 / 10;
    let decoded = decodable(&full[..cut]) as u64;

    let kept = fetch_cut_at(&sshd, &hook, &fixture, cut);
    eprintln!(
        "spool {} bytes, stream {} bytes cut at {cut}: zstd decodes {decoded}, the journal kept {kept}",
        mail.spool.len(),
        full.len()
    );
    assert!(
        kept <= decoded && kept + (512 << 10) >= decoded,
        "kept {kept} of the {decoded} bytes the cut stream decodes to"
    );
    let part = staging(&fixture);
    assert_eq!(part.len(), 1, "{part:?}");
    let bytes = std::fs::read(&part[0]).unwrap();
    assert!(bytes.len() as u64 >= kept);
    assert!(mail.spool.starts_with(&bytes[..kept as usize]));

    let logged = hook.log().len();
    let out = fixture.client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(send_offsets(&hook, logged), [kept], "{}", hook.log_text());
    let rest = zstd(9, &mail.spool[kept as usize..]).len() as u64;
    let (payload, socket) = last_bytes(&fixture);
    eprintln!(
        "second run: payload {payload} (zstd -9 of the rest: {rest}), socket {socket}; \
         the whole stream is {}",
        full.len()
    );
    assert_eq!(payload, rest, "the second run moves the rest only");
    assert!(socket < rest + 64 * 1024, "socket {socket}, rest {rest}");
    assert!(rest < full.len() as u64 / 2);
    assert_same_messages(
        &fixture.client.filed_md5s(),
        &mail.md5s,
        "cut, then resumed",
    );
    assert!(
        settled(|| claims_on_server(&fixture)).is_empty(),
        "released"
    );
    assert!(staging(&fixture).is_empty(), "{:?}", staging(&fixture));
}

/// The resumed part is verified with the whole: one byte flipped in it
/// (the stream decodes cleanly) is refused and nothing is filed; the next
/// run starts over and files every message once. A kept prefix changed on
/// the local disk is caught by the server before it sends (the prefix's
/// sha256), and a claim changed on the server (another sha256) is not
/// resumed at all: both start from byte 0, never mixing the two.
#[test]
fn a_resumed_download_is_verified_whole_and_a_changed_prefix_starts_over() {
    let hook = ServerHook::new();
    let sshd = hook.start_sshd();
    let mail = real_mail();
    let full = zstd_file(9, &mail.spool).len();
    let cut = full / 2;

    // A flipped byte in the resumed part.
    let fixture = Fixture::as_root(&sshd, &mail.spool, CONFIG);
    let kept = fetch_cut_at(&sshd, &hook, &fixture, cut);
    hook.set("flip", true);
    let logged = hook.log().len();
    let out = fixture.client.run(&["fetch"]);
    hook.set("flip", false);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not verify"),
        "{}",
        describe(&out)
    );
    assert_eq!(send_offsets(&hook, logged), [kept]);
    let flipped: Vec<_> = hook.log()[logged..]
        .iter()
        .filter(|e| e.is(&["send", "flipped"]))
        .map(|e| e.words[3].clone())
        .collect();
    assert_eq!(
        flipped,
        [(mail.spool.len() as u64 - kept).to_string()],
        "the flip is in the rest"
    );
    assert!(fixture.client.filed_md5s().is_empty(), "nothing filed");
    assert_eq!(claims_on_server(&fixture).len(), 1);
    assert!(staging(&fixture).is_empty(), "{:?}", staging(&fixture));
    let logged = hook.log().len();
    let out = fixture.client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(send_offsets(&hook, logged), [0], "started over");
    assert_eq!(last_bytes(&fixture).0, full as u64);
    assert_same_messages(
        &fixture.client.filed_md5s(),
        &mail.md5s,
        "flip refused, then fetched",
    );
    drop(fixture);

    // The kept prefix changed on the local disk: the server refuses to
    // continue it, and the same run downloads from the start.
    let fixture = Fixture::as_root(&sshd, &mail.spool, CONFIG);
    let kept = fetch_cut_at(&sshd, &hook, &fixture, cut);
    let part = staging(&fixture).pop().unwrap();
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[kept as usize / 2] ^= 0x01;
    std::fs::write(&part, &bytes).unwrap();
    let logged = hook.log().len();
    let out = fixture.client.run(&["fetch", "--verbose"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        describe(&out).contains("does not begin with"),
        "{}",
        describe(&out)
    );
    assert_eq!(send_offsets(&hook, logged), [kept, 0]);
    assert_eq!(last_bytes(&fixture).0, full as u64);
    assert_same_messages(
        &fixture.client.filed_md5s(),
        &mail.md5s,
        "local prefix changed",
    );
    assert!(staging(&fixture).is_empty());
    drop(fixture);

    // The claim changed on the server (one letter in its first half): its
    // sha256 is not the journal's, so it is fetched whole, as it is now.
    let fixture = Fixture::as_root(&sshd, &mail.spool, CONFIG);
    let kept = fetch_cut_at(&sshd, &hook, &fixture, cut);
    let claim = claims_on_server(&fixture).pop().unwrap();
    let mut changed = mail.spool.clone();
    let at = (kept as usize / 2..)
        .find(|&i| changed[i].is_ascii_lowercase() && !changed[i - 6..i].contains(&b'\n'))
        .unwrap();
    changed[at] ^= 0x20;
    std::fs::write(&claim, &changed).unwrap();
    let logged = hook.log().len();
    let out = fixture.client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(send_offsets(&hook, logged), [0], "not resumed");
    let filed = fixture.client.filed_md5s();
    assert_eq!(filed.len(), mail.md5s.len());
    let differing = filed.iter().filter(|m| !mail.md5s.contains(m)).count();
    assert_eq!(differing, 1, "exactly the changed message differs");
    assert!(settled(|| claims_on_server(&fixture)).is_empty());
}
