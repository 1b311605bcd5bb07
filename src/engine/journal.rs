//! The local journal of an account's fetches, and the account's work area
//! (staging directory, journal, lock) in the data dir.
//!
//! The journal is what makes every step of a fetch recoverable after a
//! kill -9: a claim is recorded as `staged` only once its download is
//! verified and durable, as `delivered` once every message is filed, and as
//! `released` once the server copy is known to be gone (`release-sent`
//! when its deletion was sent at the end of a connection without waiting
//! for the answer: the next listing of the server's claims settles it);
//! a download cut short is
//! recorded as `partial` with the length of the prefix it made durable, so
//! that the next run asks the server only for the rest. Each record is one line, appended
//! and fsynced before the step it enables; a torn last line (a crash while
//! writing it) is dropped on the next open, which is safe because the step it
//! would have recorded is then simply done again, idempotently
//! (durable-before-release and exactly-once, docs/design.md).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::engine::claim::RemoteClaim;
use crate::engine::ssh::{hex, unhex};

/// One claim as the journal knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalClaim {
    /// The claim's id ([`RemoteClaim::id`]).
    pub id: String,
    /// The claim as the server described it.
    pub remote: RemoteClaim,
    /// The server copy has been deleted.
    pub released: bool,
    /// Every message has been filed.
    pub delivered: bool,
    /// Its deletion was sent without waiting for the answer
    /// ([`Journal::release_sent`]): the spool whose claims it is among.
    /// `released` once a listing of that spool's claims lacks it.
    pub release_sent: Option<String>,
}

/// The append-only, fsynced journal of one account.
#[derive(Debug)]
pub struct Journal {
    file: File,
    claims: BTreeMap<String, JournalClaim>,
    order: Vec<String>,
    /// Downloads cut short: the claim and how many of its first bytes its
    /// partial file holds durably (by claim id).
    partials: BTreeMap<String, (RemoteClaim, u64)>,
}

impl Journal {
    /// Opens (creating, mode 0600) and replays the journal at `path`.
    pub fn open(path: &Path) -> io::Result<Journal> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        // A crash mid-append leaves a line without its newline: drop it.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            file.set_len(complete as u64)?;
            file.sync_all()?;
        }
        let mut journal = Journal {
            file,
            claims: BTreeMap::new(),
            order: Vec::new(),
            partials: BTreeMap::new(),
        };
        for line in BufReader::new(&text[..complete]).lines() {
            journal.apply(&line?);
        }
        Ok(journal)
    }

    fn apply(&mut self, line: &str) {
        let fields: Vec<&str> = line.split('\t').collect();
        let remote = |path: &str, size: &str, sha: &str| {
            Some(RemoteClaim {
                path: unhex(path).and_then(|p| String::from_utf8(p).ok())?,
                size: size.parse().ok()?,
                sha256: sha.to_string(),
            })
        };
        match fields.as_slice() {
            ["partial", id, path, size, sha, len] => {
                if let (Some(claim), Ok(len)) = (remote(path, size, sha), len.parse()) {
                    self.partials.insert(id.to_string(), (claim, len));
                }
            }
            ["staged", id, path, size, sha] => {
                let Some(remote) = remote(path, size, sha) else {
                    return;
                };
                self.partials.remove(*id);
                if !self.claims.contains_key(*id) {
                    self.order.push(id.to_string());
                }
                self.claims.insert(
                    id.to_string(),
                    JournalClaim {
                        id: id.to_string(),
                        remote,
                        released: false,
                        delivered: false,
                        release_sent: None,
                    },
                );
            }
            ["released", id] => {
                if let Some(c) = self.claims.get_mut(*id) {
                    c.released = true;
                }
            }
            ["release-sent", id, spool] => {
                let spool = unhex(spool).and_then(|p| String::from_utf8(p).ok());
                if let (Some(c), Some(spool)) = (self.claims.get_mut(*id), spool) {
                    c.release_sent = Some(spool);
                }
            }
            ["delivered", id, ..] => {
                if let Some(c) = self.claims.get_mut(*id) {
                    c.delivered = true;
                }
            }
            _ => {}
        }
    }

    fn append(&mut self, line: String) -> io::Result<()> {
        self.file.write_all(format!("{line}\n").as_bytes())?;
        self.file.sync_data()?;
        self.apply(&line);
        Ok(())
    }

    /// Records that the claim's download is verified and durable in staging.
    pub fn staged(&mut self, claim: &RemoteClaim) -> io::Result<()> {
        self.append(format!(
            "staged\t{}\t{}\t{}\t{}",
            claim.id(),
            hex(claim.path.as_bytes()),
            claim.size,
            claim.sha256
        ))
    }

    /// Records that the partial download of `claim` holds its first `len`
    /// bytes durably (fsynced before this is called), for a later run to
    /// continue from.
    pub fn partial(&mut self, claim: &RemoteClaim, len: u64) -> io::Result<()> {
        self.append(format!(
            "partial\t{}\t{}\t{}\t{}\t{len}",
            claim.id(),
            hex(claim.path.as_bytes()),
            claim.size,
            claim.sha256
        ))
    }

    /// How many first bytes of `claim` an interrupted download kept, when
    /// the journal has a partial download of this very claim (same path,
    /// size and sha256 as the server lists now).
    pub fn resumable(&self, claim: &RemoteClaim) -> Option<u64> {
        self.partials
            .get(&claim.id())
            .filter(|(kept, _)| kept == claim)
            .map(|(_, len)| *len)
    }

    /// Whether the journal has a partial download of the claim with this id
    /// (its file in staging is kept).
    pub fn has_partial(&self, id: &str) -> bool {
        self.partials.contains_key(id)
    }

    /// Records that the server copy of the claim is deleted.
    pub fn released(&mut self, id: &str) -> io::Result<()> {
        self.append(format!("released\t{id}"))
    }

    /// Records that the deletion of the claim's server copy is about to be
    /// sent without waiting for the answer; `spool` is the server spool it
    /// was claimed from, whose listing settles it. Recorded first: a crash
    /// before the request leaves a claim the next listing still has, and
    /// it is then released, never fetched again.
    pub fn release_sent(&mut self, id: &str, spool: &str) -> io::Result<()> {
        self.append(format!("release-sent\t{id}\t{}", hex(spool.as_bytes())))
    }

    /// Records that every message of the claim is filed.
    pub fn delivered(&mut self, id: &str, messages: u64) -> io::Result<()> {
        self.append(format!("delivered\t{id}\t{messages}"))
    }

    /// The claim with this id, if the journal has it.
    pub fn get(&self, id: &str) -> Option<&JournalClaim> {
        self.claims.get(id)
    }

    /// Claims staged but not yet both delivered and released (a claim
    /// delivered but not released is still on the server), oldest first.
    pub fn pending(&self) -> Vec<JournalClaim> {
        self.order
            .iter()
            .filter_map(|id| self.claims.get(id))
            .filter(|c| !(c.delivered && c.released))
            .cloned()
            .collect()
    }

    /// Empties the journal when nothing is pending, so it never grows without
    /// bound; a crash during this only leaves finished records behind.
    pub fn compact(&mut self) -> io::Result<()> {
        if self.pending().is_empty() && !(self.claims.is_empty() && self.partials.is_empty()) {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::End(0))?;
            self.file.sync_all()?;
            self.claims.clear();
            self.order.clear();
            self.partials.clear();
        }
        Ok(())
    }
}

/// Another mailhaul process is fetching this account right now.
#[derive(Debug, thiserror::Error)]
#[error("another mailhaul is fetching account {0} right now")]
pub struct AccountBusy(pub String);

/// This installation's id: 12 hex digits, made at random on first use and
/// kept in `DATA_DIR/installation-id` (0600). Claims carry it, so that two
/// machines fetching one account never both take the same claim (which
/// would file its messages twice): each takes only its own claims and
/// claims made without an id.
pub fn installation_id(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join("installation-id");
    let valid = |text: &str| {
        let id = text.trim();
        (id.len() == 12 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| id.to_string())
    };
    loop {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return valid(&text).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} does not hold 12 hex digits", path.display()),
                    )
                })
            }
            // A link to nothing reads as missing, but no new id can be
            // linked over it: an error, or the loop would never end.
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is a symbolic link that points to nothing: restore what it \
                         points to, or remove it to make a new id",
                        path.display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(data_dir)?;
        let mut random = [0u8; 6];
        File::open("/dev/urandom")?.read_exact(&mut random)?;
        let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
        // Written aside, then linked into place: a concurrent first run
        // keeps whichever id was linked first, and nobody reads half a file.
        // Named for this attempt: threads of one process (parallel fetches
        // of a first run) must not share, truncate or remove each other's.
        let tmp = data_dir.join(format!("installation-id.{}.{id}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(format!("{id}\n").as_bytes())?;
        file.sync_all()?;
        let linked = std::fs::hard_link(&tmp, &path);
        std::fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => return Ok(id),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The local work area of one account: `DATA/accounts/NAME/` with the
/// journal, the staging directory and a lock file, all private (0700/0600).
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    _lock: File,
}

impl Workspace {
    /// The default data dir: `$XDG_DATA_HOME/mailhaul`.
    pub fn default_data_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "mailhaul").map(|d| d.data_dir().to_path_buf())
    }

    /// Opens the account's area and takes its exclusive lock (an `flock`,
    /// released by the kernel even after kill -9), so that the dashboard and a
    /// cron job never fetch the same account at once.
    pub fn open(data_dir: &Path, account: &str) -> Result<Workspace, WorkspaceError> {
        let root = data_dir.join("accounts").join(account);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join("staging"))?;
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(root.join("lock"))?;
        // SAFETY: flock on an fd we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                WorkspaceError::Busy(AccountBusy(account.to_string()))
            } else {
                WorkspaceError::Io(err)
            });
        }
        Ok(Workspace { root, _lock: lock })
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// Where a verified claim is kept until delivered.
    pub fn staged_path(&self, id: &str) -> PathBuf {
        self.root.join("staging").join(format!("{id}.mbox"))
    }

    /// Where a claim is downloaded to before it is verified.
    pub fn partial_path(&self, id: &str) -> PathBuf {
        self.root.join("staging").join(format!("{id}.part"))
    }

    /// The staging directory (fsynced after renames into it).
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// The account's work area itself (small per-account records such as
    /// the measured link rate live here).
    pub fn dir(&self) -> &Path {
        &self.root
    }
}

/// Why an account's work area could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// Another process holds it.
    #[error(transparent)]
    Busy(AccountBusy),
    /// The data dir is not usable.
    #[error("data dir: {0}")]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installation_id_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let id = installation_id(&data).unwrap();
        assert_eq!(id.len(), 12);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(installation_id(&data).unwrap(), id);
        let file = data.join("installation-id");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            1,
            "no temporary left"
        );
        for bad in [
            "not an id\n",
            "0123456789abcdef\n",
            "0123456789ag\n",
            "0123456789AB\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            let e = installation_id(&data).unwrap_err();
            assert!(e.to_string().contains("installation-id"), "{bad:?}: {e}");
        }
        // Unreadable (here a directory) is an error, not a reason to make a
        // new id: another installation's claims would then look foreign.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(installation_id(&data).is_err()));
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)),
            Ok(true),
            "an unreadable id must be an error, promptly"
        );
    }

    /// An `installation-id` that is a symbolic link to nothing (a data dir
    /// restored without its target, a link into an unmounted disk) reads as
    /// missing, but the new id cannot be linked over it: that was retried
    /// without end. Now it is an error naming the file, promptly, and the
    /// link is left alone (the id it pointed at may come back).
    #[test]
    fn a_dangling_installation_id_link_is_an_error_not_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let link = data.join("installation-id");
        std::os::unix::fs::symlink(dir.path().join("gone"), &link).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = data.clone();
        std::thread::spawn(move || tx.send(installation_id(&d).map_err(|e| e.to_string())));
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("installation_id loops on a dangling link");
        let e = got.unwrap_err();
        assert!(
            e.contains("installation-id") && e.contains("points to nothing"),
            "{e}"
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    /// Two first runs at once (a cron fetch and the dashboard) agree on one
    /// id: the loser of the race to link it reads the winner's.
    #[test]
    fn concurrent_first_runs_agree_on_one_installation_id() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let ids: Vec<String> = (0..8)
                .map(|_| {
                    let (data, start) = (data.clone(), std::sync::Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        installation_id(&data).unwrap()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        }
    }

    fn claim(id: &str) -> RemoteClaim {
        RemoteClaim {
            path: format!("/var/mail/a.mailhaul-claim.{id}"),
            size: 5,
            sha256: "00".repeat(32),
        }
    }

    #[test]
    fn replays_states_and_drops_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        {
            let mut j = Journal::open(&path).unwrap();
            j.staged(&claim("1-1-1")).unwrap();
            j.staged(&claim("2-2-2")).unwrap();
            j.staged(&claim("3-3-3")).unwrap();
            j.released("1-1-1").unwrap();
            j.delivered("2-2-2", 3).unwrap();
            j.delivered("3-3-3", 1).unwrap();
            j.released("3-3-3").unwrap();
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"released\t2-2").unwrap();
        drop(f);
        let mut j = Journal::open(&path).unwrap();
        let pending = j.pending();
        assert_eq!(pending.len(), 2, "{pending:?}");
        assert_eq!(pending[0].id, "1-1-1");
        assert!(pending[0].released && !pending[0].delivered);
        assert_eq!(pending[0].remote, claim("1-1-1"));
        // Delivered, not released (the torn line does not count): still on
        // the server, so still pending.
        assert_eq!(pending[1].id, "2-2-2");
        assert!(pending[1].delivered && !pending[1].released);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with('\n'));
        j.delivered("1-1-1", 1).unwrap();
        j.compact().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0, "2-2-2 pending");
        j.released("2-2-2").unwrap();
        j.compact().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(Journal::open(&path).unwrap().pending().is_empty());
    }

    /// A deletion sent without its answer keeps the claim pending (the next
    /// listing settles it), across a reopen, until `released`.
    #[test]
    fn a_release_sent_stays_pending_until_settled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        {
            let mut j = Journal::open(&path).unwrap();
            j.staged(&claim("1-1-1")).unwrap();
            j.delivered("1-1-1", 2).unwrap();
            j.release_sent("1-1-1", "/var/mail/a").unwrap();
            j.compact().unwrap();
        }
        let mut j = Journal::open(&path).unwrap();
        let pending = j.pending();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert!(pending[0].delivered && !pending[0].released);
        assert_eq!(pending[0].release_sent.as_deref(), Some("/var/mail/a"));
        j.released("1-1-1").unwrap();
        j.compact().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    /// Compaction empties the journal only when nothing is pending: a claim
    /// staged but not delivered survives it, and a reopen still has it.
    #[test]
    fn compaction_keeps_a_pending_claim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut j = Journal::open(&path).unwrap();
        j.staged(&claim("1-1-1")).unwrap();
        j.delivered("1-1-1", 1).unwrap();
        j.released("1-1-1").unwrap();
        j.staged(&claim("2-2-2")).unwrap();
        j.compact().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        let pending = Journal::open(&path).unwrap().pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, "2-2-2");
        assert!(!pending[0].released && !pending[0].delivered);
    }

    /// A partial download is resumable only for the very claim it was
    /// recorded for, survives a reopen, and ends once the claim is staged.
    #[test]
    fn a_partial_download_is_kept_for_the_same_claim_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let c = claim("1-1-1");
        {
            let mut j = Journal::open(&path).unwrap();
            j.partial(&c, 2).unwrap();
            j.partial(&c, 4).unwrap();
        }
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.resumable(&c), Some(4));
        assert!(j.has_partial(&c.id()));
        let mut changed = c.clone();
        changed.sha256 = "11".repeat(32);
        assert_eq!(j.resumable(&changed), None, "another sha256");
        changed = c.clone();
        changed.size += 1;
        assert_eq!(j.resumable(&changed), None, "another size");
        assert_eq!(j.resumable(&claim("2-2-2")), None);
        j.staged(&c).unwrap();
        assert_eq!(j.resumable(&c), None);
        assert!(!j.has_partial(&c.id()));
        assert_eq!(Journal::open(&path).unwrap().resumable(&c), None);
    }

    #[test]
    fn workspace_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = Workspace::open(dir.path(), "acct").unwrap();
        assert!(matches!(
            Workspace::open(dir.path(), "acct"),
            Err(WorkspaceError::Busy(_))
        ));
        drop(first);
        assert!(Workspace::open(dir.path(), "acct").is_ok());
    }
}
