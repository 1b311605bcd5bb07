//! A zstd dictionary made from the account's own filed mail, so that
//! small fetches, which have no history of their own to match, compress
//! against the mail the user already has (issue 14; figures in
//! docs/bench-fetch.md, rules in docs/fetch.md "Dictionary").
//!
//! It is raw content, not a trained dictionary: the newest messages under
//! the account's Maildir root, oldest first, each cut to
//! [`MAX_PER_MESSAGE`] bytes, up to [`SIZE`] bytes in all (the measurement
//! favoured this over `zstd --train`'s output at any size). It is kept in
//! the account's work area as `dictionary` (0600) with its state
//! (`dictionary-state`: its sha256, when it was made, and the ratios of the
//! transfers that used it). The server keeps a copy beside the cached
//! scripts, named and checked by its sha256 (`assets/remote/claim.sh`,
//! `dict-put`).
//!
//! Retraining: the first [`WINDOW`] transfers that use a dictionary set its
//! baseline ratio (raw bytes over payload bytes, summed); after that the
//! last [`WINDOW`] are compared with it, and when they fall below
//! [`RETRAIN_BELOW`] of the baseline the dictionary is made again from the
//! newest mail. A dictionary missing, unreadable or not matching its
//! recorded sha256 is made again too.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::engine::account::ZstdLevel;
use crate::engine::ssh::hex;

/// The dictionary's file in the account's work area.
pub const FILE_NAME: &str = "dictionary";

/// Its state file in the account's work area.
pub const STATE_NAME: &str = "dictionary-state";

/// The dictionary's size at most.
pub const SIZE: usize = 1 << 20;

/// What one message contributes at most (its headers and the start of its
/// body; a large attachment's base64 would only crowd out other messages).
pub const MAX_PER_MESSAGE: usize = 32 << 10;

/// Less filed mail than this makes no dictionary.
pub const MIN_SAMPLE: usize = 64 << 10;

/// Claims up to this size are sent with the dictionary; larger ones find
/// enough to match in their own earlier messages.
pub const MAX_CLAIM: u64 = 1 << 20;

/// The zstd level of a transfer that uses the dictionary on a slow link.
/// Measured with a 1 MiB dictionary of recent mail and 1, 10 and 50 new
/// messages (docs/bench-fetch.md, "The dictionary's level"): level 19
/// spends 0.15-0.26 s of server CPU per claim, most of it loading the
/// dictionary into its match finder before the first byte, for 7-10 %
/// fewer bytes than level 6, which spends 26-33 ms. On a modem (125 kB/s)
/// those bytes are 4-35 ms: level 6 is the faster fetch on any link down
/// to [`CRAWL`].
pub const SLOW_LINK_LEVEL: i32 = 6;

/// Below this rate (bytes per second; 32 kbit/s) level 19's fewer bytes
/// repay its time: [`CRAWL_LEVEL`].
pub const CRAWL: f64 = 4_000.0;

/// The level on a link slower than [`CRAWL`].
pub const CRAWL_LEVEL: i32 = 19;

/// The level on other links (and before a rate is known): loading the
/// dictionary costs next to nothing (0.02 s) and still saves (0.71x for the
/// same message), so a push fetch on a fast link is not delayed by it.
pub const FAST_LEVEL: i32 = 3;

/// The level of a transfer with the dictionary: the account's fixed
/// `zstd_level` if it has one, else by the link's recorded `rate` (bytes
/// per second): [`CRAWL_LEVEL`] below [`CRAWL`], [`SLOW_LINK_LEVEL`] below
/// [`link::SLOW_LINK`](super::link::SLOW_LINK), else (and with no rate
/// known) [`FAST_LEVEL`].
pub fn level(configured: Option<ZstdLevel>, rate: Option<f64>) -> i32 {
    match (configured, rate) {
        (Some(ZstdLevel::Fixed(l)), _) => l.clamp(1, 19),
        (_, Some(r)) if r < CRAWL => CRAWL_LEVEL,
        (_, Some(r)) if r < super::link::SLOW_LINK => SLOW_LINK_LEVEL,
        _ => FAST_LEVEL,
    }
}

/// The level the dictionary itself is compressed at for its one upload.
const UPLOAD_LEVEL: i32 = 19;

/// Transfers that set the baseline ratio, and that are compared with it.
pub const WINDOW: usize = 8;

/// The share of the baseline ratio below which the dictionary is made again.
pub const RETRAIN_BELOW: f64 = 0.8;

/// A dictionary and its sha256.
#[derive(Clone, PartialEq, Eq)]
pub struct Dictionary {
    bytes: Vec<u8>,
    sha256: String,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dictionary({} bytes, {})", self.bytes.len(), self.sha256)
    }
}

impl Dictionary {
    /// A dictionary of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Dictionary {
        let sha256 = hex(&Sha256::digest(&bytes));
        Dictionary { bytes, sha256 }
    }

    /// Its content.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its sha256, lower-case hex (its name on the server).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its content zstd-compressed, as it is sent to the server.
    pub fn compressed(&self) -> Vec<u8> {
        zstd::bulk::compress(&self.bytes, UPLOAD_LEVEL).expect("zstd into memory cannot fail")
    }
}

/// The dictionary's state: which dictionary, and how its transfers went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// The sha256 of the dictionary the rest is about.
    pub sha256: String,
    /// When it was made (seconds since the epoch).
    pub made: u64,
    /// The first [`WINDOW`] transfers that used it: (raw, payload) bytes.
    pub baseline: Vec<(u64, u64)>,
    /// The last [`WINDOW`] transfers after those: (raw, payload) bytes.
    pub recent: Vec<(u64, u64)>,
}

fn ratio(transfers: &[(u64, u64)]) -> f64 {
    let (raw, payload) = transfers
        .iter()
        .fold((0u64, 0u64), |(r, p), (a, b)| (r + a, p + b));
    if payload == 0 {
        0.0
    } else {
        raw as f64 / payload as f64
    }
}

impl State {
    /// Adds a transfer that used the dictionary.
    pub fn add(&mut self, raw: u64, payload: u64) {
        if self.baseline.len() < WINDOW {
            self.baseline.push((raw, payload));
        } else {
            self.recent.push((raw, payload));
            if self.recent.len() > WINDOW {
                self.recent.remove(0);
            }
        }
    }

    /// The baseline's ratio and the recent transfers' ratio, once both
    /// windows are full.
    pub fn ratios(&self) -> Option<(f64, f64)> {
        (self.baseline.len() == WINDOW && self.recent.len() == WINDOW)
            .then(|| (ratio(&self.baseline), ratio(&self.recent)))
    }

    /// Whether the recent transfers compress so much worse than the
    /// baseline that the dictionary is to be made again.
    pub fn retrain_due(&self) -> bool {
        self.ratios()
            .is_some_and(|(base, now)| now < base * RETRAIN_BELOW)
    }

    fn parse(text: &str) -> Option<State> {
        let mut state = State::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let pair = |w: &mut std::str::SplitWhitespace<'_>| -> Option<(u64, u64)> {
                Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
            };
            match words.next()? {
                "sha256" => state.sha256 = words.next()?.to_string(),
                "made" => state.made = words.next()?.parse().ok()?,
                "baseline" => state.baseline.push(pair(&mut words)?),
                "recent" => state.recent.push(pair(&mut words)?),
                _ => {}
            }
        }
        (state.sha256.len() == 64).then_some(state)
    }

    fn text(&self) -> String {
        let mut text = format!("sha256 {}\nmade {}\n", self.sha256, self.made);
        for (raw, payload) in &self.baseline {
            text.push_str(&format!("baseline {raw} {payload}\n"));
        }
        for (raw, payload) in &self.recent {
            text.push_str(&format!("recent {raw} {payload}\n"));
        }
        text
    }
}

/// The newest messages filed under the Maildir root `maildir` (every
/// folder's `new/` and `cur/`), by modification time, as one raw-content
/// dictionary of at most `size` bytes: oldest first (zstd reaches the end
/// of a dictionary most cheaply), each message cut to [`MAX_PER_MESSAGE`].
/// `None` when less than [`MIN_SAMPLE`] bytes of mail were found.
pub fn sample(maildir: &Path, size: usize) -> io::Result<Option<Vec<u8>>> {
    let mut files: Vec<(SystemTime, PathBuf, u64)> = Vec::new();
    let mut stack = vec![maildir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let name = entry.file_name();
            if name == "new" || name == "cur" {
                let Ok(messages) = std::fs::read_dir(entry.path()) else {
                    continue;
                };
                for m in messages.flatten() {
                    if let Ok(meta) = m.metadata() {
                        if meta.is_file() && meta.len() > 0 {
                            let when = meta.modified().unwrap_or(UNIX_EPOCH);
                            files.push((when, m.path(), meta.len()));
                        }
                    }
                }
            } else if name != "tmp" {
                stack.push(entry.path());
            }
        }
    }
    // Newest first; the name decides between equal times (one delivery).
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let mut chosen = Vec::new();
    let mut total = 0usize;
    for (_, path, len) in files {
        if total >= size {
            break;
        }
        let take = (len as usize).min(MAX_PER_MESSAGE).min(size - total);
        chosen.push((path, take));
        total += take;
    }
    if total < MIN_SAMPLE {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(total);
    for (path, take) in chosen.into_iter().rev() {
        // A message removed since it was listed is skipped.
        let Ok(file) = File::open(&path) else {
            continue;
        };
        file.take(take as u64).read_to_end(&mut bytes)?;
    }
    Ok((bytes.len() >= MIN_SAMPLE).then_some(bytes))
}

/// Stores `dictionary` in the account's work area `dir` (0600) with a new
/// state naming its sha256.
pub fn store(dir: &Path, dictionary: &Dictionary, now: SystemTime) -> io::Result<()> {
    super::write_private(&dir.join(FILE_NAME), dictionary.bytes())?;
    let state = State {
        sha256: dictionary.sha256().to_string(),
        made: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        ..State::default()
    };
    super::write_private(&dir.join(STATE_NAME), state.text().as_bytes())
}

/// The dictionary kept in `dir` and its state, when both are there and
/// the file's sha256 is the one the state records (anything else is no
/// dictionary: a new one is made).
pub fn load(dir: &Path) -> Option<(Dictionary, State)> {
    let state = State::parse(&std::fs::read_to_string(dir.join(STATE_NAME)).ok()?)?;
    let dictionary = Dictionary::new(std::fs::read(dir.join(FILE_NAME)).ok()?);
    (dictionary.sha256() == state.sha256).then_some((dictionary, state))
}

/// Records a transfer of `raw` bytes as `payload` bytes that used the
/// dictionary whose sha256 is `sha256`; returns whether it is now due to be
/// made again ([`State::retrain_due`]).
pub fn record(dir: &Path, sha256: &str, raw: u64, payload: u64) -> io::Result<bool> {
    let path = dir.join(STATE_NAME);
    let Some(mut state) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| State::parse(&t))
        .filter(|s| s.sha256 == sha256)
    else {
        return Ok(false);
    };
    state.add(raw, payload);
    super::write_private(&path, state.text().as_bytes())?;
    Ok(state.retrain_due())
}

/// Makes the dictionary again from the newest mail under `maildir` and
/// stores it in `dir`; `None` when there is not enough filed mail yet.
pub fn train(dir: &Path, maildir: &Path, now: SystemTime) -> io::Result<Option<Dictionary>> {
    let Some(bytes) = sample(maildir, SIZE)? else {
        return Ok(None);
    };
    let dictionary = Dictionary::new(bytes);
    store(dir, &dictionary, now)?;
    Ok(Some(dictionary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_follows_the_link_unless_one_is_configured() {
        let (modem, dsl, gprs) = (Some(125_000.0), Some(1_250_000.0), Some(3_000.0));
        assert_eq!(level(None, None), FAST_LEVEL);
        assert_eq!(level(None, dsl), FAST_LEVEL);
        assert_eq!(level(None, modem), SLOW_LINK_LEVEL);
        assert_eq!(level(None, gprs), CRAWL_LEVEL);
        assert_eq!(level(Some(ZstdLevel::Adapt), modem), SLOW_LINK_LEVEL);
        assert_eq!(level(Some(ZstdLevel::Adapt), None), FAST_LEVEL);
        assert_eq!(level(Some(ZstdLevel::Fixed(7)), modem), 7);
        assert_eq!(level(Some(ZstdLevel::Fixed(40)), None), 19);
    }
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn message(i: usize, len: usize) -> Vec<u8> {
        let mut m = format!("Subject: message {i}\n\n").into_bytes();
        m.resize(len, b'a' + (i % 26) as u8);
        m
    }

    /// Newest messages of every folder, oldest first, each cut to
    /// MAX_PER_MESSAGE, up to the size; tmp/ and too little mail are left.
    #[test]
    fn the_sample_is_the_newest_mail_oldest_first() {
        let root = tempfile::tempdir().unwrap();
        let base = SystemTime::now() - Duration::from_secs(1000);
        let put = |folder: &str, sub: &str, i: usize, len: usize| {
            let dir = root.path().join(folder).join(sub);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("m{i}"));
            std::fs::write(&path, message(i, len)).unwrap();
            let file = File::options().write(true).open(&path).unwrap();
            file.set_modified(base + Duration::from_secs(i as u64))
                .unwrap();
        };
        put("", "cur", 1, 30_000);
        put(".Lists", "new", 2, 30_000);
        assert_eq!(sample(root.path(), SIZE).unwrap(), None, "too little mail");
        put("", "tmp", 3, 30_000);
        put(".Lists", "cur", 4, 100_000);
        put("", "new", 5, 20_000);
        let all = sample(root.path(), SIZE).unwrap().unwrap();
        let mut want = message(1, 30_000);
        want.extend(message(2, 30_000));
        want.extend(&message(4, 100_000)[..MAX_PER_MESSAGE]);
        want.extend(message(5, 20_000));
        assert!(all == want, "{} bytes, want {}", all.len(), want.len());
        // Cut to size: the newest kept, the oldest message shortened.
        let cut = sample(root.path(), 70_000).unwrap().unwrap();
        assert_eq!(cut.len(), 70_000);
        assert!(cut.ends_with(&message(5, 20_000)));
        assert!(cut.starts_with(&message(2, 30_000)[..70_000 - 20_000 - MAX_PER_MESSAGE]));
    }

    /// Stored 0600 with its sha256; a file changed behind its state's back
    /// is no dictionary.
    #[test]
    fn a_stored_dictionary_loads_only_with_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_none());
        let d = Dictionary::new(b"Subject: hello\n".repeat(1000));
        store(dir.path(), &d, SystemTime::now()).unwrap();
        for name in [FILE_NAME, STATE_NAME] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let (loaded, state) = load(dir.path()).unwrap();
        assert_eq!(loaded, d);
        assert_eq!(state.sha256, d.sha256());
        assert_eq!(
            zstd::bulk::decompress(&d.compressed(), 1 << 20).unwrap(),
            d.bytes()
        );
        std::fs::write(dir.path().join(FILE_NAME), b"Subject: other\n").unwrap();
        assert!(load(dir.path()).is_none());
    }

    /// The first WINDOW transfers set the baseline; retraining is due when
    /// the last WINDOW fall below RETRAIN_BELOW of it, and only then.
    #[test]
    fn retraining_is_due_when_the_recent_ratio_drops() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dictionary::new(b"x".repeat(100));
        store(dir.path(), &d, SystemTime::now()).unwrap();
        assert!(!record(dir.path(), "0".repeat(64).as_str(), 100, 1).unwrap());
        for _ in 0..WINDOW {
            assert!(!record(dir.path(), d.sha256(), 4_000, 1_000).unwrap());
        }
        // Ratio 3.3 of 4.0 (0.825): not yet.
        for _ in 0..WINDOW {
            assert!(!record(dir.path(), d.sha256(), 3_300, 1_000).unwrap());
        }
        let (_, state) = load(dir.path()).unwrap();
        assert_eq!(state.ratios(), Some((4.0, 3.3)));
        // The window slides: ratios of 3.0 (0.75) make it due at the end.
        for i in 0..WINDOW {
            let due = record(dir.path(), d.sha256(), 3_000, 1_000).unwrap();
            // (3.3 * (8 - k) + 3.0 * k) / 8 < 3.2 from k = 3 on.
            assert_eq!(due, i + 1 >= 3, "after {} of 3.0", i + 1);
        }
        // A new dictionary starts a new state.
        store(
            dir.path(),
            &Dictionary::new(b"y".repeat(100)),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap().1.baseline, []);
    }
}
