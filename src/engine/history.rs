//! The fetch history: one tab-separated line per fetch in
//! `$XDG_DATA_HOME/mailhaul/history.tsv`, so that a user (or the dashboard)
//! can see what each fetch moved, how well it compressed and how long it took.
//!
//! Columns: `time` (UTC, RFC 3339), `account`, `messages`, `undelivered`,
//! `raw_bytes`, `payload_bytes`, `socket_bytes`, `method`, `seconds`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engine::civil::UtcTime;
use crate::engine::event::FetchSummary;

/// The file name inside the data dir.
pub const FILE_NAME: &str = "history.tsv";

const HEADER: &str =
    "time\taccount\tmessages\tundelivered\traw_bytes\tpayload_bytes\tsocket_bytes\tmethod\tseconds";

/// One line of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// When the fetch finished, RFC 3339 UTC.
    pub time: String,
    /// The account.
    pub account: String,
    /// What it moved.
    pub summary: FetchSummary,
}

/// Appends one fetch to the history file, writing the header first if the
/// file is new.
pub fn append(path: &Path, account: &str, summary: &FetchSummary) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mut line = String::new();
    if file.metadata()?.len() == 0 {
        line.push_str(HEADER);
        line.push('\n');
    }
    line.push_str(&format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.3}\n",
        rfc3339(SystemTime::now()),
        account.replace(['\t', '\n'], " "),
        summary.messages,
        summary.undelivered,
        summary.raw_bytes,
        summary.payload_bytes,
        summary.socket_bytes,
        summary.method,
        summary.elapsed.as_secs_f64()
    ));
    file.write_all(line.as_bytes())
}

/// Reads every entry of the history file (a missing file is an empty history).
pub fn read(path: &Path) -> io::Result<Vec<HistoryEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| *l != HEADER)
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [time, account, messages, undelivered, raw, payload, socket, method, seconds] =
                f.as_slice()
            else {
                return None;
            };
            Some(HistoryEntry {
                time: time.to_string(),
                account: account.to_string(),
                summary: FetchSummary {
                    messages: messages.parse().ok()?,
                    undelivered: undelivered.parse().ok()?,
                    raw_bytes: raw.parse().ok()?,
                    payload_bytes: payload.parse().ok()?,
                    socket_bytes: socket.parse().ok()?,
                    method: method.to_string(),
                    elapsed: Duration::from_secs_f64(seconds.parse().ok()?),
                    ..Default::default()
                },
            })
        })
        .collect())
}

impl HistoryEntry {
    /// When the fetch ended, in seconds since the Unix epoch; `None` when the
    /// stamp is not the `YYYY-MM-DDTHH:MM:SSZ` this file writes.
    pub fn unix_secs(&self) -> Option<u64> {
        let t = self.time.as_bytes();
        let shape_ok = t.len() == 20
            && t.iter().enumerate().all(|(i, &b)| match i {
                4 | 7 => b == b'-',
                10 => b == b'T',
                13 | 16 => b == b':',
                19 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !shape_ok {
            return None;
        }
        let num = |r: std::ops::Range<usize>| self.time[r].parse::<u32>().ok();
        let at = UtcTime {
            year: i64::from(num(0..4)?),
            month: num(5..7)?,
            day: num(8..10)?,
            hour: num(11..13)?,
            minute: num(14..16)?,
            second: num(17..19)?,
            weekday: 0,
        };
        u64::try_from(at.to_unix()).ok()
    }
}

/// Formats a time as RFC 3339 in UTC, to the second.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let t = UtcTime::from_unix(i64::try_from(secs).unwrap_or(i64::MAX));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn stamps_read_back_as_unix_time() {
        let entry = |time: &str| HistoryEntry {
            time: time.into(),
            account: "a".into(),
            summary: FetchSummary::default(),
        };
        for secs in [0, 951_782_400, 1_798_761_599] {
            let stamp = rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(entry(&stamp).unix_secs(), Some(secs), "{stamp}");
        }
        assert_eq!(entry("2026-11-28 10:00:00").unix_secs(), None);
        assert_eq!(entry("yesterday").unix_secs(), None);
    }

    #[test]
    fn appended_entries_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let s = FetchSummary {
            messages: 3,
            undelivered: 0,
            raw_bytes: 1000,
            payload_bytes: 250,
            socket_bytes: 900,
            method: "zstd -3".into(),
            elapsed: Duration::from_millis(1500),
            ..Default::default()
        };
        append(&path, "work", &s).unwrap();
        append(&path, "home", &FetchSummary::default()).unwrap();
        let all = read(&path).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].account, "work");
        assert_eq!(all[0].summary, s);
        assert_eq!(all[1].summary.method, "");
        assert!(all[0].time.ends_with('Z'));
    }
}
