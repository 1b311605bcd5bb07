//! The outbox: messages `mailhaul send` accepted, kept on local disk until
//! the server's sendmail has taken them (see `relay`), so that a mail client
//! never loses a message because the link was down.
//!
//! Layout, per account, under the data dir (`DATA/outbox/ACCOUNT/`, 0700,
//! files 0600):
//!
//! - `tmp/ID`: a message being written (a crash leaves it; old ones are
//!   removed);
//! - `queue/ID`: queued: an envelope block, an empty line, the message;
//!   `queue/ID.state` its attempts, next try and last error (losing it
//!   loses only the backoff); `queue/ID.sending` while SMTP's end of data
//!   is out and its answer not recorded (see `smtp`);
//! - `failed/ID` and `failed/ID.error`: refused for good, with the server's
//!   words; kept until `mailhaul queue drop ID`;
//! - `sent.log`: one line per message the server accepted (time, id, bytes
//!   of the message, bytes it took on the wire), for statistics;
//! - `send.lock`: held (flock) by whoever is relaying this account's queue.
//!
//! A message enters `queue/` by rename after its file and then the
//! directory were fsynced, so once `send` exits 0 it survives a crash.

pub mod flush;
pub mod relay;
pub mod smtp;
pub mod submit;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use submit::{Envelope, Submission};

use crate::engine::event::OutboxCounts;

/// First line of every queued file: the format and its version.
const MAGIC: &str = "mailhaul-outbox 1";

/// A message's unique id: 128 random bits as 32 hex digits. It names the
/// files and is what the server's ledger records.
pub fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `id` looks like one of ours (32 lower-case hex digits).
pub fn is_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Waiting to be sent.
    Queued,
    /// Refused for good; kept with the reason.
    Failed,
}

/// One message of the outbox, as listed.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// Its id.
    pub id: String,
    /// Queued or failed.
    pub place: Place,
    /// When `send` queued it (seconds since the epoch).
    pub queued_at: u64,
    /// Bytes of the message (envelope block excluded).
    pub size: u64,
    /// Sender, full name and recipients.
    pub envelope: Envelope,
    /// Where the message starts in its file.
    body_offset: u64,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// Not to be tried again before this time (seconds since the epoch).
    pub next_try: u64,
    /// The last failure, or for a failed message the server's refusal.
    pub last_error: Option<String>,
}

/// What [`Outbox::store`] queued.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The new message's id.
    pub id: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Sent-message statistics from `sent.log`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentStats {
    /// Messages accepted by the server since the given time.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What they took on the wire (compressed).
    pub wire_bytes: u64,
}

/// One account's outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    root: PathBuf,
}

impl Outbox {
    /// Opens (creating it, 0700) the outbox of `account` under `data_dir`,
    /// and removes what crashed `send`s left in `tmp/` more than a day ago.
    pub fn open(data_dir: &Path, account: &str) -> io::Result<Outbox> {
        let root = data_dir.join("outbox").join(account);
        for sub in ["tmp", "queue", "failed"] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root.join(sub))?;
        }
        let outbox = Outbox { root };
        if let Ok(entries) = fs::read_dir(outbox.root.join("tmp")) {
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 86_400);
                if old {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(outbox)
    }

    /// The outbox's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes the message to `tmp/`, fsyncs it, renames it into `queue/`
    /// and fsyncs the directory: when this returns Ok, the message is
    /// durable.
    pub fn store<R: Read>(&self, submission: Submission<R>) -> io::Result<Stored> {
        let id = new_id()?;
        let tmp = self.root.join("tmp").join(&id);
        let result = (|| {
            let file = private_file(&tmp)?;
            let mut out = io::BufWriter::with_capacity(256 * 1024, file);
            out.write_all(envelope_block(&submission.envelope, now()).as_bytes())?;
            let size = submission.copy_rest(&mut out)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&tmp, self.queue_path(&id))?;
            sync_dir(&self.root.join("queue"))?;
            Ok(size)
        })();
        match result {
            Ok(size) => Ok(Stored { id, size }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn queue_path(&self, id: &str) -> PathBuf {
        self.root.join("queue").join(id)
    }

    fn failed_path(&self, id: &str) -> PathBuf {
        self.root.join("failed").join(id)
    }

    /// The queued messages, oldest first.
    pub fn queued(&self) -> io::Result<Vec<OutboxMessage>> {
        self.list(Place::Queued)
    }

    /// The failed messages, oldest first.
    pub fn failed(&self) -> io::Result<Vec<OutboxMessage>> {
        self.list(Place::Failed)
    }

    fn list(&self, place: Place) -> io::Result<Vec<OutboxMessage>> {
        let dir = self.root.join(match place {
            Place::Queued => "queue",
            Place::Failed => "failed",
        });
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().filter(|n| is_id(n)) else {
                continue;
            };
            match read_message(&entry.path(), id, place) {
                Ok(mut m) => {
                    let side = match place {
                        Place::Queued => self.queue_path(id).with_extension("state"),
                        Place::Failed => self.failed_path(id).with_extension("error"),
                    };
                    if let Ok(text) = fs::read_to_string(side) {
                        apply_side_file(&mut m, &text, place);
                    }
                    out.push(m)
                }
                // Removed meanwhile (sent by another flush): not listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| (a.queued_at, &a.id).cmp(&(b.queued_at, &b.id)));
        Ok(out)
    }

    /// Opens a message for reading, positioned where the message starts.
    pub fn open_message(&self, message: &OutboxMessage) -> io::Result<File> {
        let path = match message.place {
            Place::Queued => self.queue_path(&message.id),
            Place::Failed => self.failed_path(&message.id),
        };
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(message.body_offset))?;
        Ok(file)
    }

    /// The server accepted the message: removes it from the queue (made
    /// durable) and logs it in `sent.log`.
    pub fn mark_sent(&self, id: &str, size: u64, wire_bytes: u64) -> io::Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.root.join("sent.log"))?;
        writeln!(log, "{} {id} {size} {wire_bytes}", now())?;
        let _ = fs::remove_file(self.queue_path(id).with_extension("state"));
        match fs::remove_file(self.queue_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        sync_dir(&self.root.join("queue"))?;
        // Only now: the message is gone, so a crash cannot leave it queued
        // without its marker.
        self.clear_sending(id);
        Ok(())
    }

    /// A temporary failure: counts the attempt, records `error` and when to
    /// try again (1 min after the first failure, doubling up to 1 h).
    pub fn mark_deferred(&self, id: &str, error: &str) -> io::Result<()> {
        let state_path = self.queue_path(id).with_extension("state");
        let attempts = fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("attempts ")?.parse::<u32>().ok())
            })
            .unwrap_or(0)
            + 1;
        let next = now() + backoff_secs(attempts);
        let text = format!(
            "attempts {attempts}\nnext {next}\nerror {}\n",
            error.replace(['\n', '\r'], " ")
        );
        let tmp = self.root.join("tmp").join(format!("{id}.state"));
        let mut f = private_file(&tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        fs::rename(&tmp, &state_path)?;
        self.clear_sending(id);
        Ok(())
    }

    /// A permanent refusal: writes the reason to `failed/ID.error`, moves
    /// the message to `failed/`, both durably. Never deletes it.
    pub fn mark_failed(&self, id: &str, reason: &str) -> io::Result<()> {
        let error_path = self.failed_path(id).with_extension("error");
        let mut f = private_file(&error_path)?;
        f.write_all(reason.as_bytes())?;
        if !reason.ends_with('\n') {
            f.write_all(b"\n")?;
        }
        f.sync_all()?;
        fs::rename(self.queue_path(id), self.failed_path(id))?;
        sync_dir(&self.root.join("failed"))?;
        let _ = fs::remove_file(self.queue_path(id).with_extension("state"));
        self.clear_sending(id);
        sync_dir(&self.root.join("queue"))
    }

    /// Removes a queued or failed message for good (`mailhaul queue drop`);
    /// false when there is no such message.
    pub fn drop_message(&self, id: &str) -> io::Result<bool> {
        if !is_id(id) {
            return Ok(false);
        }
        let mut found = false;
        for path in [self.queue_path(id), self.failed_path(id)] {
            match fs::remove_file(&path) {
                Ok(()) => found = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let _ = fs::remove_file(self.queue_path(id).with_extension("state"));
        self.clear_sending(id);
        let _ = fs::remove_file(self.failed_path(id).with_extension("error"));
        sync_dir(&self.root.join("queue"))?;
        sync_dir(&self.root.join("failed"))?;
        Ok(found)
    }

    fn sending_path(&self, id: &str) -> PathBuf {
        self.queue_path(id).with_extension("sending")
    }

    /// Records, durably, that the message's end of data is about to go to
    /// an SMTP server: from here until its answer is recorded, a crash or a
    /// cut link leaves the message's fate unknown (SMTP has no ledger to
    /// ask), and [`Outbox::was_sending`] tells the next flush so.
    pub fn mark_sending(&self, id: &str) -> io::Result<()> {
        private_file(&self.sending_path(id))?.sync_all()?;
        sync_dir(&self.root.join("queue"))
    }

    /// Whether an earlier run sent the message's end of data over SMTP and
    /// never recorded the answer (see [`Outbox::mark_sending`]).
    pub fn was_sending(&self, id: &str) -> bool {
        self.sending_path(id).exists()
    }

    /// The answer to the end of data was recorded (or it never went out):
    /// the marker goes.
    fn clear_sending(&self, id: &str) {
        let _ = fs::remove_file(self.sending_path(id));
    }

    /// Moves a failed message back into the queue (`mailhaul queue retry`)
    /// under a new id, so that neither the server's ledger nor an old
    /// marker takes it for the message that failed; its attempts start
    /// again. Returns the new id, `None` when there is no such failed
    /// message.
    pub fn retry(&self, id: &str) -> io::Result<Option<String>> {
        if !is_id(id) || !self.failed_path(id).exists() {
            return Ok(None);
        }
        let new = new_id()?;
        fs::rename(self.failed_path(id), self.queue_path(&new))?;
        sync_dir(&self.root.join("queue"))?;
        let _ = fs::remove_file(self.failed_path(id).with_extension("error"));
        sync_dir(&self.root.join("failed"))?;
        Ok(Some(new))
    }

    /// Writes a copy of `message` addressed to `recipients` only, durably,
    /// into the queue or (with `reason`) the failed folder; returns its id.
    /// For a message some of whose recipients an SMTP server took and some
    /// it refused: each part goes its own way.
    pub fn copy_for(
        &self,
        message: &OutboxMessage,
        recipients: &[String],
        place: Place,
        reason: &str,
    ) -> io::Result<String> {
        let id = new_id()?;
        let dest = match place {
            Place::Queued => self.queue_path(&id),
            Place::Failed => {
                let mut f = private_file(&self.failed_path(&id).with_extension("error"))?;
                writeln!(f, "{}", reason.trim_end())?;
                f.sync_all()?;
                self.failed_path(&id)
            }
        };
        self.write_with_recipients(message, recipients, &id, &dest)?;
        if place == Place::Queued {
            self.mark_deferred(&id, reason)?;
        }
        Ok(id)
    }

    /// Rewrites a queued message so that it goes to `recipients` only (the
    /// others were taken care of), durably and atomically.
    pub fn set_recipients(&self, message: &OutboxMessage, recipients: &[String]) -> io::Result<()> {
        self.write_with_recipients(
            message,
            recipients,
            &message.id,
            &self.queue_path(&message.id),
        )
    }

    fn write_with_recipients(
        &self,
        message: &OutboxMessage,
        recipients: &[String],
        tmp_name: &str,
        dest: &Path,
    ) -> io::Result<()> {
        let tmp = self.root.join("tmp").join(format!("{tmp_name}.copy"));
        let result = (|| {
            let envelope = Envelope {
                recipients: recipients.to_vec(),
                ..message.envelope.clone()
            };
            let mut out = io::BufWriter::new(private_file(&tmp)?);
            out.write_all(envelope_block(&envelope, message.queued_at).as_bytes())?;
            io::copy(&mut self.open_message(message)?, &mut out)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&tmp, dest)?;
            sync_dir(dest.parent().unwrap_or(&self.root))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Takes the account's relay lock (flock on `send.lock`), waiting for
    /// another relay of the same outbox to finish; released on drop, and
    /// by the kernel after a kill -9.
    pub fn lock_sending(&self) -> io::Result<SendLock> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.root.join("send.lock"))?;
        loop {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(SendLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// The counts the dashboard shows: queued and failed messages, and
    /// what the server accepted since local midnight (nothing sending).
    pub fn counts(&self) -> io::Result<OutboxCounts> {
        let today = self.sent_since(crate::engine::os::local_midnight(now()))?;
        Ok(OutboxCounts {
            queued: self.queued()?.len() as u64,
            sending: 0,
            sent_today: today.messages,
            failed: self.failed()?.len() as u64,
            sent_bytes: today.bytes,
            wire_bytes: today.wire_bytes,
        })
    }

    /// The directory `send` puts new messages into, for a watch on it.
    pub fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }

    /// What the server accepted since `since` (seconds since the epoch).
    pub fn sent_since(&self, since: u64) -> io::Result<SentStats> {
        let file = match File::open(self.root.join("sent.log")) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SentStats::default()),
            Err(e) => return Err(e),
        };
        let mut stats = SentStats::default();
        for line in BufReader::new(file).lines() {
            let line = line?;
            let mut w = line.split(' ');
            let (Some(t), Some(_), Some(size), Some(wire)) =
                (w.next(), w.next(), w.next(), w.next())
            else {
                continue;
            };
            if t.parse::<u64>().is_ok_and(|t| t >= since) {
                stats.messages += 1;
                stats.bytes += size.parse::<u64>().unwrap_or(0);
                stats.wire_bytes += wire.parse::<u64>().unwrap_or(0);
            }
        }
        Ok(stats)
    }
}

/// The relay lock of one outbox (see [`Outbox::lock_sending`]).
#[derive(Debug)]
pub struct SendLock {
    _file: File,
}

/// Seconds to wait after the `attempts`-th failure.
pub fn backoff_secs(attempts: u32) -> u64 {
    (60u64 << attempts.saturating_sub(1).min(6)).min(3600)
}

fn private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The envelope block a queued file starts with.
fn envelope_block(envelope: &Envelope, queued_at: u64) -> String {
    let mut s = format!("{MAGIC}\nqueued {queued_at}\n");
    if let Some(sender) = &envelope.sender {
        s.push_str(&format!("from {sender}\n"));
    }
    if let Some(name) = &envelope.full_name {
        s.push_str(&format!("name {name}\n"));
    }
    for r in &envelope.recipients {
        s.push_str(&format!("rcpt {r}\n"));
    }
    s.push('\n');
    s
}

fn read_message(path: &Path, id: &str, place: Place) -> io::Result<OutboxMessage> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut reader = BufReader::new(file);
    let mut offset = 0u64;
    let mut envelope = Envelope::default();
    let mut queued_at = 0;
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: the envelope block has no end", path.display()),
            ));
        }
        offset += n as u64;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\n');
        if first {
            if text != MAGIC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a mailhaul outbox file", path.display()),
                ));
            }
            first = false;
            continue;
        }
        if text.is_empty() {
            break;
        }
        let (key, value) = text.split_once(' ').unwrap_or((text, ""));
        match key {
            "queued" => queued_at = value.parse().unwrap_or(0),
            "from" => envelope.sender = Some(value.to_string()),
            "name" => envelope.full_name = Some(value.to_string()),
            "rcpt" => envelope.recipients.push(value.to_string()),
            _ => {}
        }
    }
    Ok(OutboxMessage {
        id: id.to_string(),
        place,
        queued_at,
        size: total - offset,
        envelope,
        body_offset: offset,
        attempts: 0,
        next_try: 0,
        last_error: None,
    })
}

fn apply_side_file(m: &mut OutboxMessage, text: &str, place: Place) {
    match place {
        Place::Failed => m.last_error = Some(text.trim_end().to_string()),
        Place::Queued => {
            for line in text.lines() {
                let (key, value) = line.split_once(' ').unwrap_or((line, ""));
                match key {
                    "attempts" => m.attempts = value.parse().unwrap_or(0),
                    "next" => m.next_try = value.parse().unwrap_or(0),
                    "error" => m.last_error = Some(value.to_string()),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::submit::{Submission, SubmitOptions};
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn queue_one(outbox: &Outbox, msg: &[u8]) -> Stored {
        let options = SubmitOptions {
            extract_recipients: true,
            ignore_dots: true,
            sender: Some("me@x.org".into()),
            ..SubmitOptions::default()
        };
        outbox
            .store(Submission::begin(msg, &options).unwrap())
            .unwrap()
    }

    #[test]
    fn store_list_defer_fail_drop() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), "acct").unwrap();
        let msg = b"To: a@b.c\nBcc: d@e.f\n\nhello\n";
        let stored = queue_one(&outbox, msg);
        let path = outbox.queue_path(&stored.id);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = fs::metadata(outbox.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let listed = outbox.queued().unwrap();
        assert_eq!(listed.len(), 1);
        let m = &listed[0];
        assert_eq!(m.envelope.recipients, ["a@b.c", "d@e.f"]);
        assert_eq!(m.envelope.sender.as_deref(), Some("me@x.org"));
        assert_eq!(m.size, stored.size);
        let mut body = Vec::new();
        outbox
            .open_message(m)
            .unwrap()
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body, b"To: a@b.c\n\nhello\n");

        outbox.mark_deferred(&stored.id, "link down").unwrap();
        outbox
            .mark_deferred(&stored.id, "link down\nagain")
            .unwrap();
        let m = &outbox.queued().unwrap()[0];
        assert_eq!(m.attempts, 2);
        assert_eq!(m.last_error.as_deref(), Some("link down again"));
        assert!(m.next_try >= now() + 110);

        outbox
            .mark_failed(&stored.id, "sendmail: no such user")
            .unwrap();
        assert!(outbox.queued().unwrap().is_empty());
        let failed = outbox.failed().unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].last_error.as_deref(),
            Some("sendmail: no such user")
        );
        assert!(outbox.drop_message(&stored.id).unwrap());
        assert!(outbox.failed().unwrap().is_empty());
        assert!(!outbox.drop_message(&stored.id).unwrap());
    }

    #[test]
    fn sent_messages_leave_the_queue_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), "acct").unwrap();
        let a = queue_one(&outbox, b"To: a@b.c\n\none\n");
        let b = queue_one(&outbox, b"To: a@b.c\n\ntwo\n");
        outbox.mark_sent(&a.id, a.size, 10).unwrap();
        let left = outbox.queued().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, b.id);
        let stats = outbox.sent_since(0).unwrap();
        assert_eq!(
            stats,
            SentStats {
                messages: 1,
                bytes: a.size,
                wire_bytes: 10
            }
        );
        assert_eq!(outbox.sent_since(now() + 10).unwrap().messages, 0);
    }

    #[test]
    fn split_copies_keep_the_body_and_retry_gives_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), "acct").unwrap();
        let stored = queue_one(&outbox, b"To: a@b.c, d@e.f, g@h.i\n\nbody\n");
        let m = outbox.queued().unwrap().remove(0);
        let body = |m: &OutboxMessage| {
            let mut v = Vec::new();
            outbox.open_message(m).unwrap().read_to_end(&mut v).unwrap();
            v
        };
        let original_body = body(&m);
        let failed = outbox
            .copy_for(&m, &["d@e.f".into()], Place::Failed, "550 no such user")
            .unwrap();
        let later = outbox
            .copy_for(&m, &["g@h.i".into()], Place::Queued, "450 later")
            .unwrap();
        outbox.set_recipients(&m, &["a@b.c".into()]).unwrap();
        let queued = outbox.queued().unwrap();
        assert_eq!(queued.len(), 2);
        for q in &queued {
            assert_eq!(body(q), original_body);
            assert_eq!(q.queued_at, m.queued_at);
        }
        let original = queued.iter().find(|q| q.id == stored.id).unwrap();
        assert_eq!(original.envelope.recipients, ["a@b.c"]);
        let copy = queued.iter().find(|q| q.id == later).unwrap();
        assert_eq!(copy.envelope.recipients, ["g@h.i"]);
        assert_eq!(
            (copy.attempts, copy.last_error.as_deref()),
            (1, Some("450 later"))
        );
        let f = outbox.failed().unwrap().remove(0);
        assert_eq!(
            (f.id.as_str(), f.envelope.recipients.as_slice()),
            (failed.as_str(), &["d@e.f".to_string()][..])
        );
        assert_eq!(f.last_error.as_deref(), Some("550 no such user"));

        let again = outbox.retry(&failed).unwrap().unwrap();
        assert_ne!(again, failed);
        assert!(outbox.failed().unwrap().is_empty());
        assert!(outbox
            .queued()
            .unwrap()
            .iter()
            .any(|q| q.id == again && q.attempts == 0));
        assert_eq!(outbox.retry(&failed).unwrap(), None);
        assert_eq!(outbox.retry("../x").unwrap(), None);
        assert!(fs::read_dir(outbox.root().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn the_sending_marker_lasts_until_the_answer_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), "acct").unwrap();
        let a = queue_one(&outbox, b"To: a@b.c\n\none\n");
        let b = queue_one(&outbox, b"To: a@b.c\n\ntwo\n");
        outbox.mark_sending(&a.id).unwrap();
        outbox.mark_sending(&b.id).unwrap();
        assert!(outbox.was_sending(&a.id));
        assert_eq!(
            outbox.queued().unwrap().len(),
            2,
            "the marker is no message"
        );
        outbox.mark_sent(&a.id, a.size, 1).unwrap();
        assert!(!outbox.was_sending(&a.id));
        outbox.mark_failed(&b.id, "may have been sent").unwrap();
        assert!(!outbox.was_sending(&b.id));
    }

    #[test]
    fn backoff_doubles_to_an_hour() {
        assert_eq!(backoff_secs(1), 60);
        assert_eq!(backoff_secs(2), 120);
        assert_eq!(backoff_secs(6), 1920);
        assert_eq!(backoff_secs(7), 3600);
        assert_eq!(backoff_secs(40), 3600);
    }

    #[test]
    fn ids_are_unique_hex() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert!(is_id(&a) && is_id(&b));
        assert_ne!(a, b);
        assert!(!is_id("../../etc/passwd"));
    }
}
