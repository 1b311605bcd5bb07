//! The demo's arriving mail (`assets/demo-arrive.sh`, used by
//! `assets/demo-env.sh`) is a valid mbox, as an MTA writes it: 40 arrivals
//! appended by the real procmail split back into 40 messages, each its
//! source message behind Postfix's headers. (They used to be written with
//! no From_ line, and merged into one message when fetched.)

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn forty_arrivals_split_into_forty_messages() {
    common::require_tool("procmail", "procmail");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let messages = dir.path().join("messages");
    std::fs::create_dir(&messages).unwrap();
    let rc = dir.path().join("procmailrc");
    std::fs::write(&rc, format!("DEFAULT={}\n", spool.display())).unwrap();
    let script = format!(
        "set -euo pipefail; source {arrive}; demo_messages {messages} 40; \
         for m in {messages}/*; do demo_arrive {rc} \"$m\"; done",
        arrive = repo.join("assets/demo-arrive.sh").display(),
        messages = messages.display(),
        rc = rc.display(),
    );
    common::run(Command::new("bash").arg("-c").arg(&script));

    let maildir = dir.path().join("Maildir");
    let out = common::run(
        Command::new(env!("CARGO_BIN_EXE_mailhaul"))
            .args([
                "--config",
                "/dev/null",
                "filter",
                "--format",
                "mboxrd",
                "--maildir",
            ])
            .arg(&maildir)
            .arg(&spool)
            .env("HOME", dir.path()),
    );
    let filed: Vec<Vec<u8>> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(filed.len(), 40, "{}", String::from_utf8_lossy(&out.stderr));
    let mut sources: Vec<Vec<u8>> = std::fs::read_dir(&messages)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    sources.sort();
    for source in &sources {
        // The file ends with the blank line that separated it in the sample,
        // and its body lines are mboxrd-quoted (`>From`, `>>From`).
        let body = mboxrd_unquote(source.strip_suffix(b"\n").unwrap_or(source));
        let body = &body[..];
        let found = filed.iter().filter(|f| f.ends_with(body)).count();
        assert_eq!(found, 1, "a source message is not filed exactly once");
    }
    for f in &filed {
        let text = String::from_utf8_lossy(f);
        assert!(
            text.starts_with("Return-Path: <") && text.contains("\nDelivered-To: "),
            "not headed as an MTA delivery: {}",
            &text[..text.len().min(200)]
        );
    }
}

/// One `>` less on every `>...>From ` line, as an mboxrd reader reads it.
fn mboxrd_unquote(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if quotes > 0 && line[quotes..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}
