//! Helpers shared by the send tests (`send_outbox`, `send_smtp`): running
//! `mailhaul send` with a message on stdin, queueing tagged real mail and
//! checking that each tagged message reached a spool exactly once.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use super::{describe, Client};
use crate::common::proxy::CutProxy;
use crate::common::TestUser;

/// Runs `mailhaul ARGS` with `input` on stdin.
pub fn run_with_input(client: &Client, args: &[&str], input: &[u8]) -> Output {
    let mut child = client
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A command line `send` refuses ends it before it reads its input.
    if let Err(e) = stdin.write_all(input) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// How many times `needle` occurs in `haystack` (read as UTF-8, lossily).
pub fn count(haystack: &[u8], needle: &str) -> usize {
    String::from_utf8_lossy(haystack).matches(needle).count()
}

/// Waits (60 s) until `user`'s spool holds `needle` at least `n` times.
pub fn wait_for_in_spool(user: &TestUser, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&user.spool_contents(), needle) < n {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not {n} times in {}'s spool within 60 s",
            user.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What `mailhaul queue` lists (it must succeed).
pub fn queue_listing(client: &Client) -> String {
    let out = client.run(&["queue"]);
    assert!(out.status.success(), "queue: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `n` messages from the committed sample of real mail, each with a tag
/// header `X-Mailhaul-Test-Tag: RUN-I`.
pub fn tagged_messages(n: usize, run: &str) -> Vec<Vec<u8>> {
    let spool = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-spool.mbox"),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&spool).into_owned();
    let mut out = Vec::new();
    for (i, chunk) in text.split("\nFrom ").enumerate().take(n) {
        let body = chunk.split_once('\n').map_or("", |(_, rest)| rest);
        out.push(format!("X-Mailhaul-Test-Tag: {run}-{i}\n{body}\n").into_bytes());
    }
    assert_eq!(out.len(), n);
    out
}

/// Queues each of `messages` for `rcpt` with `mailhaul send` (each must
/// succeed).
pub fn queue_tagged(client: &Client, rcpt: &str, messages: &[Vec<u8>]) {
    for m in messages {
        let out = run_with_input(client, &["send", "-oi", "--", rcpt], m);
        assert!(out.status.success(), "send: {}", describe(&out));
    }
}

/// Panics unless each of the tags `RUN-0` .. `RUN-(n-1)` is in `user`'s
/// spool exactly once.
pub fn assert_each_tag_once(user: &TestUser, run: &str, n: usize) {
    let spool = user.spool_contents();
    let mut wrong = Vec::new();
    for i in 0..n {
        let c = count(&spool, &format!("X-Mailhaul-Test-Tag: {run}-{i}\n"));
        if c != 1 {
            wrong.push(format!("{run}-{i}: {c} times"));
        }
    }
    assert!(wrong.is_empty(), "not exactly once: {wrong:?}");
}

/// One round of the send race tests: starts `mailhaul queue flush`, waits
/// `pause`, then by `choice` kills it -9 (0), cuts the link through `proxy`
/// (1) or leaves it be (else), and waits for it to end. Returns (kills,
/// cuts), each 0 or 1, for the tests' counts.
pub fn flush_and_disturb(
    client: &Client,
    proxy: &CutProxy,
    pause: Duration,
    choice: u64,
) -> (usize, usize) {
    let mut child = client
        .command(&["queue", "flush"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(pause);
    let done = match choice {
        0 => {
            // SAFETY: kill(2) on the child this test started.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            (1, 0)
        }
        1 => {
            proxy.cut();
            (0, 1)
        }
        _ => (0, 0),
    };
    child.wait().unwrap();
    done
}
