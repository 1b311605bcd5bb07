//! A 200 MB spool (real messages repeated, plus 10 MB attachments that spill
//! to disk) fetched end to end as root, with the peak resident memory of the
//! `mailhaul` process measured by the kernel (wait4's ru_maxrss): it must
//! stay under 50 MB whatever the spool's size (bounded-memory,
//! docs/design.md).

mod common;
mod fetch_support;

use std::io::Write;
use std::path::Path;

use common::TestSshd;
use fetch_support::{maildir_files, Client};

const LIMIT_KIB: i64 = 50 * 1024;

/// Writes about 200 MB of mail to `path`; returns the number of messages.
fn write_big_spool(path: &Path) -> usize {
    let sample =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-spool.mbox"))
            .unwrap();
    let sample_messages = 315;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut messages = 0;
    for round in 0..100 {
        out.write_all(&sample).unwrap();
        messages += sample_messages;
        if round % 10 == 0 {
            // A 10 MB message: base64 of random bytes, as an attachment is.
            write!(
                out,
                "From big@example.org Thu Jan  1 00:00:00 1970\nSubject: big {round}\n\
                 Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
            )
            .unwrap();
            let attachment = std::process::Command::new("sh")
                .args(["-c", "head -c 7864320 /dev/urandom | base64 -w 76"])
                .output()
                .unwrap();
            assert!(attachment.status.success());
            out.write_all(&attachment.stdout).unwrap();
            out.write_all(b"\n").unwrap();
            messages += 1;
        }
    }
    out.flush().unwrap();
    messages
}

#[test]
fn a_200_mb_spool_is_fetched_in_bounded_memory() {
    let sshd = TestSshd::start();
    let server = tempfile::tempdir().unwrap();
    let spool = server.path().join("spool");
    let messages = write_big_spool(&spool);
    let size = std::fs::metadata(&spool).unwrap().len();
    assert!(size > 200_000_000, "{size}");
    let client = Client::new(&sshd, "root", &format!("spool = {spool:?}"));
    client.set_format("mboxrd");

    let started = std::time::Instant::now();
    // Reaped below by wait4, which also returns its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = client.command(&["fetch"]).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for this child only.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "fetch failed: wait status {status}"
    );
    let peak_kib = usage.ru_maxrss;
    eprintln!(
        "fetched {size} bytes ({messages} messages) in {:.1} s; peak RSS {peak_kib} KiB",
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak_kib < LIMIT_KIB,
        "peak RSS {peak_kib} KiB exceeds {LIMIT_KIB} KiB"
    );
    assert_eq!(maildir_files(&client.maildir).len(), messages);
    let history = client.history();
    assert!(history.contains(&format!("\t{size}\t")), "{history}");
}
