//! What filing a few fetched messages costs when the Maildir they go to
//! already holds many: a Maildir of `MAILHAUL_BIG_MAILDIR` (default 500,000)
//! read messages in `cur/`, then 5 messages of one claim filed with stable
//! names, each way in a process of its own (wall time of the filing, peak
//! RSS of the process):
//! - `first`: a claim's first delivery (what a fetch does now): no folder
//!   is listed;
//! - `resumed`: a delivery resumed after a crash: `new/` and `cur/` are
//!   read through once, keeping only this claim's names;
//! - `list-all`: what every delivery did before: every name of `new/` and
//!   `cur/` kept in a set, then the messages filed.
//!
//! Run: `cargo bench --bench big_maildir` (`MAILDIR_PARENT=DIR` makes the
//! Maildir under DIR instead of /tmp). Figures in docs/reliability.md.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mailhaul::config::Config;
use mailhaul::engine::deliver::{maildir, Filer, StableId};
use mailhaul::engine::message::{Content, Message};
use mailhaul::engine::pipeline::file_messages;

const MESSAGES: u64 = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs this too, unoptimised: only `cargo
    // bench` (which passes --bench) measures.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("big_maildir bench: run with `cargo bench --bench big_maildir` to measure");
        return;
    }
    if let [_, mode, root, ..] = &args[..] {
        if mode != "--bench" {
            file_into(mode, Path::new(root));
            return;
        }
    }
    let size: u64 = std::env::var("MAILHAUL_BIG_MAILDIR")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500_000);
    let parent = std::env::var_os("MAILDIR_PARENT").unwrap_or_else(|| "/tmp".into());
    let dir = tempfile::Builder::new()
        .prefix("mailhaul-big-maildir.")
        .tempdir_in(parent)
        .unwrap();
    let start = Instant::now();
    let cur = dir.path().join("cur");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for i in 0..size {
        let name = format!("1600000000.M{i}P4242Q{i}.mailhost,S=4321,W=4400:2,S");
        std::fs::File::create(cur.join(name)).unwrap();
    }
    println!(
        "Maildir of {size} messages in cur/ made in {:.1} s; {MESSAGES} messages filed:",
        start.elapsed().as_secs_f64()
    );
    println!("| delivery | wall ms | peak RSS MB |");
    println!("|---|---:|---:|");
    for mode in ["first", "resumed", "list-all"] {
        let root = dir.path().to_str().unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([mode, root, "--bench"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {out:?}");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Files the messages one way (in a process of its own) and prints a row.
fn file_into(mode: &str, root: &Path) {
    let config = Config::parse("[filter]\nfsync = false\n", Path::new("bench.toml")).unwrap();
    let claim = format!("bench-{mode}-{}", std::process::id());
    let stable = StableId {
        time: 1_700_000_000,
        claim,
        resumed: mode == "resumed",
    };
    let start = Instant::now();
    if mode == "list-all" {
        let all = maildir::delivered_bases(root, "").unwrap();
        assert!(all.len() > 1000, "{} names", all.len());
    }
    let mut filer = Filer::new(&config.filter, root, Some(stable)).unwrap();
    let messages = (1..=MESSAGES).map(|index| {
        let mut content = Content::new();
        let text = format!("Subject: {index}\n\nbody {index}\n");
        content.extend(text.as_bytes()).unwrap();
        Ok::<_, String>(Message {
            index,
            offset: index * 100,
            envelope: None,
            header: text.as_bytes()[..text.find("\n\n").unwrap() + 2].to_vec(),
            content,
        })
    });
    let report = file_messages(messages, "bench", &mut filer, &mut |_| {});
    assert_eq!(report.delivered_total(), MESSAGES);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "| {mode} | {ms:.1} | {:.1} |",
        peak_rss_kib() as f64 * 1.024 / 1000.0
    );
}

/// The process's peak resident set size (Linux), 0 elsewhere.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
