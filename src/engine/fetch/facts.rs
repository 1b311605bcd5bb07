//! The server's facts (the probe) kept from the last fetch of an account,
//! so that a fetch need not spend a remote step on a survey: the claim step
//! is given the facts' key and claims only while the server's facts still
//! have it; otherwise it answers `resurvey` with the new ones, which are
//! kept and chosen from again (docs/design.md, the fetch protocol).

use std::path::Path;

use crate::engine::claim::{parse_probe, Probe};

/// The file in the account's data directory.
const FILE: &str = "server-facts";

/// The records a probe answers with; the rest of a reply is not kept.
const PROBE_KEYS: &[&str] = &[
    "user",
    "home",
    "spool",
    "spool-symlink",
    "spool-dir-shared",
    "spool-size",
    "spool-messages",
    "spool-dir-writable",
    "spool-writable",
    "tool",
    "zstd-version",
    "facts",
];

/// The facts kept in `dir`, if there are any with a key.
pub fn load(dir: &Path) -> Option<Probe> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    let records: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    parse_probe(&records).ok().filter(|p| !p.facts.is_empty())
}

/// Keeps the probe records of a reply in `dir` (mode 0600, replaced
/// whole); a reply without a facts key removes what was kept.
pub fn store(dir: &Path, records: &[(String, String)]) -> std::io::Result<()> {
    let path = dir.join(FILE);
    if !records.iter().any(|(k, v)| k == "facts" && !v.is_empty()) {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let text: String = records
        .iter()
        .filter(|(k, _)| PROBE_KEYS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k} {v}\n"))
        .collect();
    super::write_private(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn facts_round_trip_and_a_reply_without_a_key_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        let records: Vec<(String, String)> = [
            ("user", "616e6e"),
            ("spool", "2f7661722f6d61696c2f616e6e"),
            ("tool", "zstd 1"),
            ("claim", "2f78 1 ab"),
            ("facts", "12-34"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        store(dir.path(), &records).unwrap();
        let p = load(dir.path()).unwrap();
        assert_eq!(
            (p.spool.as_str(), p.facts.as_str()),
            ("/var/mail/ann", "12-34")
        );
        assert!(p.tools.zstd);
        let file = dir.path().join(FILE);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!std::fs::read_to_string(&file).unwrap().contains("claim"));
        store(dir.path(), &records[..3]).unwrap();
        assert_eq!(load(dir.path()), None);
        assert!(!file.exists());
    }
}
