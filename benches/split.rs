//! Splitter throughput on the shared corpus (all files concatenated, read
//! from memory so that only the splitter is timed, then from the files).
//! Run: `cargo bench --bench split`. Skips with a note without the corpus.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mailhaul::config::MboxFormat;
use mailhaul::engine::mbox::MboxSplitter;

fn main() {
    // `cargo test --all-targets` runs this too, unoptimised: only `cargo
    // bench` (which passes --bench) measures.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("split bench: run with `cargo bench --bench split` to measure");
        return;
    }
    let dir = match std::env::var_os("MAILHAUL_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "mbox"))
            .collect(),
        Err(_) => {
            eprintln!(
                "SKIPPED: no corpus at {} (set MAILHAUL_CORPUS)",
                dir.display()
            );
            return;
        }
    };
    files.sort();
    let mut all = Vec::new();
    for file in &files {
        all.extend(std::fs::read(file).unwrap());
    }

    let mut best = f64::MAX;
    let mut messages = 0;
    for _ in 0..5 {
        let start = Instant::now();
        messages = 0;
        for message in MboxSplitter::new(&all[..], MboxFormat::Mboxrd) {
            let message = message.unwrap();
            std::hint::black_box(message.content.len());
            messages += 1;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    report("in memory", all.len(), messages, best);

    let start = Instant::now();
    let mut messages = 0;
    for file in &files {
        messages += MboxSplitter::new(File::open(file).unwrap(), MboxFormat::Mboxrd).count();
    }
    report(
        "from files",
        all.len(),
        messages,
        start.elapsed().as_secs_f64(),
    );
}

fn report(what: &str, bytes: usize, messages: usize, seconds: f64) {
    println!(
        "split {what}: {messages} messages, {bytes} bytes in {:.1} ms: {:.0} MB/s, {:.0} msgs/s",
        seconds * 1e3,
        bytes as f64 / seconds / 1e6,
        messages as f64 / seconds
    );
}
