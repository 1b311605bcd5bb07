//! Splitter throughput on the shared corpus (all files concatenated and
//! read from memory, so that only the splitter is timed; then from the
//! files), and its memory on a long generated stream that ends in one huge
//! message. Run: `cargo bench --bench split`. Skips with a note without the
//! corpus.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mailhaul::engine::filing::MboxFormat;
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
        messages = split_count(&all[..]).0;
        best = best.min(start.elapsed().as_secs_f64());
    }
    report("in memory", all.len() as u64, messages, best);

    let start = Instant::now();
    let mut messages = 0;
    for file in &files {
        messages += split_count(File::open(file).unwrap()).0;
    }
    let seconds = start.elapsed().as_secs_f64();
    report("from files", all.len() as u64, messages, seconds);

    // Bounded memory: the corpus ten times over, then one 200 MB message,
    // generated on the fly; the peak RSS must not grow with them.
    let before = peak_rss_kib();
    let corpus_ten_times: Box<dyn Read> = (0..10).fold(Box::new(std::io::empty()), |r, _| {
        Box::new(r.chain(&all[..]))
    });
    let stream = corpus_ten_times
        .chain(&b"From big@example.com Mon Jan  1 00:00:00 2001\nSubject: big\n\n"[..])
        .chain(Lines { left: 200_000_000 });
    let start = Instant::now();
    let (messages, bytes) = split_count(stream);
    report(
        "a generated stream",
        bytes,
        messages,
        start.elapsed().as_secs_f64(),
    );
    println!(
        "peak RSS: {before} KiB before the stream, {} KiB after it",
        peak_rss_kib()
    );
}

/// Splits everything; the number of messages and of content bytes.
fn split_count(input: impl Read) -> (u64, u64) {
    let mut messages = 0;
    let mut bytes = 0;
    for message in MboxSplitter::new(input, MboxFormat::Mboxrd) {
        bytes += message.unwrap().content.len();
        messages += 1;
    }
    (messages, bytes)
}

fn report(what: &str, bytes: u64, messages: u64, seconds: f64) {
    println!(
        "split {what}: {messages} messages, {bytes} bytes in {:.1} ms: {:.0} MB/s, {:.0} msgs/s",
        seconds * 1e3,
        bytes as f64 / seconds / 1e6,
        messages as f64 / seconds
    );
}

/// `left` bytes of text lines.
struct Lines {
    left: u64,
}

impl Read for Lines {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        const LINE: &[u8] = b"All work and no play makes Jack a dull boy; 0123456789.\n";
        let n = (buf.len() as u64).min(self.left) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = LINE[(self.left as usize - i) % LINE.len()];
        }
        self.left -= n as u64;
        Ok(n)
    }
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
