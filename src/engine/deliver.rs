//! Delivery: puts each message where the rules say, durably, without ever
//! dropping one.
//!
//! Targets:
//! - a Maildir folder (see [`maildir`] for layouts and names): the message is
//!   written to a file in `tmp/` (unnamed where Linux allows, see
//!   [`maildir::TmpFile`]), made durable, then given its name in `new/`
//!   (never overwriting, see [`maildir::publish`]) and `new/` is fsynced,
//!   per the maildir spec. The file holds the message's bytes
//!   unchanged (no `Return-Path:` or From_ line is added).
//! - an mbox file: a folder named `mbox:PATH` (relative paths are under the
//!   Maildir root) is appended to in mboxrd under a dot-lock and an fcntl
//!   lock (see [`mboxfile`]).
//! - a delivery agent (`mda = [...]`, see [`mda`]).
//!
//! When an agent fails or an mbox cannot be appended to (lock busy, disk
//! full), the message is filed into the Maildir folder [`QUARANTINE_FOLDER`]
//! instead and reported as undelivered; it is never dropped.
//!
//! Durability in batches: Maildir deliveries are queued in `tmp/` and
//! published by [`Filer::commit`], which first makes every queued file
//! durable (one `syncfs(2)` per file system for a batch, one `fsync(2)` for a
//! batch of one), then links them all into `new/` and fsyncs each `new/`
//! touched. A file is thus never visible in `new/` before its bytes are on
//! disk — the spec's guarantee — and a crash before the commit leaves
//! nothing readers can see, which a resumed delivery with stable names
//! redoes. Nothing is reported delivered before its commit. Filers made with
//! [`Filer::sibling`] file parts of one input on other threads; their
//! [`Batch`]es can be made durable together on yet another thread
//! ([`make_durable`]) and published by the thread that wrote them.
//!
//! Resumable deliveries: with a [`StableId`], Maildir names are derived from
//! the claim and the message index, and when the delivery is a resumed one
//! ([`StableId::resumed`]) a message whose name is already in `new/` or
//! `cur/` of its folder (or of the quarantine) is skipped; a claim's first
//! delivery lists no folder. Messages that went to an agent or an mbox file
//! cannot be recognised that way.

pub mod maildir;
pub mod mboxfile;
pub mod mda;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::filing::{FilterConfig, FolderLayout, DEFAULT_BATCH};
use crate::engine::message::Message;
use crate::engine::os;
use crate::engine::rules::{RuleError, Rules, Target};

pub use maildir::StableId;

/// The Maildir folder that keeps messages a delivery agent refused.
pub const QUARANTINE_FOLDER: &str = "mailhaul-undelivered";

/// Folder names with this prefix are mbox files, not Maildir folders.
pub const MBOX_PREFIX: &str = "mbox:";

/// The largest batch a filer may queue: each queued message holds an open
/// file (see [`maildir::TmpFile`]), and a pipeline has up to eight batches
/// of its filers in flight. Raises this process's soft limit on open files
/// to the hard limit first (once), as a program that holds many files open
/// should; under a low hard limit, batches get smaller rather than fail.
fn max_batch() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        let Some(limit) = os::raise_open_file_limit() else {
            return DEFAULT_BATCH;
        };
        usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(64)
            .max(8)
            / 8
    })
}

/// Bytes queued before [`Filer::should_commit`] says to commit.
const BATCH_BYTES: u64 = 64 << 20;

/// How long to wait for a busy mbox lock.
const MBOX_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Why the filer cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A rule cannot be compiled.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A target folder name cannot be mapped onto the Maildir root.
    #[error(transparent)]
    Folder(#[from] maildir::BadFolderName),
    /// The Maildir root cannot be made absolute (the working directory is gone).
    #[error("maildir root {root}: {source}")]
    Root {
        /// The root as given.
        root: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Why one message could not be delivered; it was not filed anywhere.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Creating, writing or publishing a Maildir file failed.
    #[error("maildir {dir}: {source}")]
    Maildir {
        /// The folder's directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The agent or the mbox append failed, and filing into the quarantine
    /// failed too.
    #[error("{reason}; and the quarantine failed too: {quarantine}")]
    Quarantine {
        /// Why the agent or the mbox append failed.
        reason: String,
        /// Why the quarantine failed.
        quarantine: Box<DeliveryError>,
    },
}

/// What [`Filer::file`] did with a message.
#[derive(Debug)]
pub enum Filed {
    /// Written to a Maildir's `tmp/`; delivered by the next [`Filer::commit`].
    Queued {
        /// The folder.
        folder: String,
    },
    /// A message with its stable name is already in the folder; skipped.
    AlreadyDelivered {
        /// The folder (the quarantine when an agent refused it earlier).
        folder: String,
    },
    /// A delivery agent took it.
    Piped {
        /// `mda:COMMAND`.
        mda: String,
    },
    /// Appended to an mbox file (durable when `fsync` is on).
    Appended {
        /// `mbox:PATH` as configured.
        folder: String,
    },
    /// The agent refused it or the mbox append failed; it is queued into the
    /// quarantine folder and is to be reported as undelivered.
    Quarantined {
        /// `mda:COMMAND` or `mbox:PATH`.
        target: String,
        /// Why it was not delivered there.
        reason: String,
    },
}

/// A message made visible in a Maildir by [`Filer::commit`].
#[derive(Debug, Clone)]
pub struct Published {
    /// The message's index in its input.
    pub index: u64,
    /// Its byte offset in the input.
    pub offset: u64,
    /// The folder it was meant for (a folder name; `mda:COMMAND` or
    /// `mbox:PATH` for a quarantined message).
    pub target: String,
    /// Its file in `new/`.
    pub path: PathBuf,
    /// Why it went to the quarantine instead, if it did.
    pub quarantined: Option<String>,
}

/// A failed [`Filer::commit`]: these queued messages were not delivered
/// (their `tmp/` files are removed).
#[derive(Debug, thiserror::Error)]
#[error("making {} queued messages durable failed: {source}", .lost.len())]
pub struct CommitError {
    /// The messages published before the failure (they are delivered).
    pub published: Vec<Published>,
    /// The messages that were not: (index, offset, target).
    pub lost: Vec<(u64, u64, String)>,
    /// Why.
    pub source: io::Error,
}

/// A folder the filer has prepared.
#[derive(Debug)]
struct Folder {
    dir: PathBuf,
    /// Bases in `new/` and `cur/` (only read when names are stable).
    delivered: Option<HashSet<String>>,
    /// Whether `tmp/ new/ cur/` have been made (or checked) in this run.
    created: bool,
}

/// A message in `tmp/`, waiting for the commit.
#[derive(Debug)]
struct Pending {
    index: u64,
    offset: u64,
    target: String,
    quarantined: Option<String>,
    dir: PathBuf,
    tmp: maildir::TmpFile,
    name: String,
}

/// Files messages: decides with the rules, delivers, and publishes in
/// durable batches. One filer per input (or per fetched claim).
#[derive(Debug)]
pub struct Filer {
    rules: Rules,
    root: PathBuf,
    layout: FolderLayout,
    fsync: bool,
    stable: bool,
    /// Stable names of this claim may already be in the folders (see
    /// [`StableId::resumed`]).
    resumed: bool,
    namer: maildir::Namer,
    folders: HashMap<String, Folder>,
    pending: Vec<Pending>,
    pending_bytes: u64,
    /// Directories made since the last batch was taken (see [`Batch`]).
    new_dirs: Vec<PathBuf>,
    batch: usize,
}

impl Filer {
    /// A filer for `config`'s rules into the Maildir root `root`; with
    /// `stable`, names are derived from the claim and message index so that a
    /// resumed delivery skips what is already there.
    pub fn new(
        config: &FilterConfig,
        root: &Path,
        stable: Option<StableId>,
    ) -> Result<Filer, SetupError> {
        let rules = Rules::compile(config)?;
        // Absolute, so that the root's parent (fsynced when folders are
        // made) is a real directory even for `--maildir Mail`.
        let root = std::path::absolute(root).map_err(|source| SetupError::Root {
            root: root.to_path_buf(),
            source,
        })?;
        let root = root.as_path();
        let targets = rules
            .rules()
            .iter()
            .map(|r| &r.target)
            .chain([rules.default_target()]);
        for target in targets {
            if let Target::Folder(name) = target {
                if !name.starts_with(MBOX_PREFIX) {
                    maildir::folder_dir(root, config.layout, name)?;
                }
            }
        }
        Ok(Filer {
            rules,
            root: root.to_path_buf(),
            layout: config.layout,
            fsync: config.fsync,
            stable: stable.is_some(),
            resumed: stable.as_ref().is_some_and(|s| s.resumed),
            namer: maildir::Namer::new(stable.as_ref()),
            folders: HashMap::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            new_dirs: Vec::new(),
            batch: config.batch.clamp(1, max_batch()),
        })
    }

    /// A filer with the same rules, root, options and naming as this one
    /// but its own batch, to file one of `shares` parts of the same input on
    /// another thread; it commits after its share of this filer's batch, so
    /// that the input is still made durable about every batch. Each filer
    /// commits its own batches, so each keeps the durability guarantee by
    /// itself; names stay unique (a process-wide counter) or stable (from
    /// the message index, which only one filer sees).
    pub fn sibling(&self, shares: usize) -> Filer {
        Filer {
            rules: self.rules.clone(),
            root: self.root.clone(),
            layout: self.layout,
            fsync: self.fsync,
            stable: self.stable,
            resumed: self.resumed,
            namer: self.namer.clone(),
            folders: HashMap::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            new_dirs: Vec::new(),
            batch: self.batch.div_ceil(shares.max(1)),
        }
    }

    /// Sets how many messages are made durable together (at least 1; 1 means
    /// one fsync per message, as most delivery agents do).
    pub fn with_batch(mut self, messages: usize) -> Filer {
        self.batch = messages.clamp(1, max_batch());
        self
    }

    /// The compiled rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Delivers `message` to `target`, decided with [`Filer::rules`]
    /// (Maildir targets are queued until [`Filer::commit`]). An error means
    /// the message was not filed anywhere; the caller must keep it.
    pub fn file(&mut self, message: &mut Message, target: Target) -> Result<Filed, DeliveryError> {
        let label = target.label();
        let failure = match target {
            Target::Folder(name) => match name.strip_prefix(MBOX_PREFIX) {
                None => return self.queue(message, &name, &name, None),
                Some(path) => {
                    if self.stable && self.is_delivered(QUARANTINE_FOLDER, message.index)? {
                        return Ok(Filed::AlreadyDelivered {
                            folder: QUARANTINE_FOLDER.to_string(),
                        });
                    }
                    let path = self.root.join(path);
                    match mboxfile::append(&path, message, self.fsync, MBOX_LOCK_WAIT) {
                        Ok(()) => return Ok(Filed::Appended { folder: label }),
                        Err(e) => e.to_string(),
                    }
                }
            },
            Target::Mda(argv) => {
                if self.stable && self.is_delivered(QUARANTINE_FOLDER, message.index)? {
                    return Ok(Filed::AlreadyDelivered {
                        folder: QUARANTINE_FOLDER.to_string(),
                    });
                }
                match mda::pipe(&argv, message) {
                    Ok(()) => return Ok(Filed::Piped { mda: label }),
                    Err(e) => e.to_string(),
                }
            }
        };
        match self.queue(message, QUARANTINE_FOLDER, &label, Some(failure.clone())) {
            Ok(_) => Ok(Filed::Quarantined {
                target: label,
                reason: failure,
            }),
            Err(quarantine) => Err(DeliveryError::Quarantine {
                reason: failure,
                quarantine: Box::new(quarantine),
            }),
        }
    }

    /// True when enough is queued that [`Filer::commit`] should run now.
    pub fn should_commit(&self) -> bool {
        self.pending.len() >= self.batch || self.pending_bytes >= BATCH_BYTES
    }

    /// Makes every queued message durable and visible in its folder's `new/`.
    pub fn commit(&mut self) -> Result<Vec<Published>, CommitError> {
        self.take_batch().commit()
    }

    /// Hands over what is queued, to be committed elsewhere (another thread
    /// that commits while this filer goes on writing).
    pub fn take_batch(&mut self) -> Batch {
        self.pending_bytes = 0;
        // Kept for the next batch if this one has nothing to publish.
        let new_dirs = if self.pending.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut self.new_dirs)
        };
        Batch {
            pending: std::mem::take(&mut self.pending),
            fsync: self.fsync,
            new_dirs,
        }
    }

    /// Writes `message` into `tmp/` of `folder` and queues it.
    fn queue(
        &mut self,
        message: &mut Message,
        folder: &str,
        target: &str,
        quarantined: Option<String>,
    ) -> Result<Filed, DeliveryError> {
        let base = self.namer.base(message.index);
        if self.stable && self.is_delivered(folder, message.index)? {
            return Ok(Filed::AlreadyDelivered {
                folder: folder.to_string(),
            });
        }
        let dir = self.folder(folder, true)?.dir.clone();
        let maildir_err = |source| DeliveryError::Maildir {
            dir: dir.clone(),
            source,
        };
        let tmp = maildir::create_tmp(&dir, &self.namer).map_err(maildir_err)?;
        let written = message.content.copy_to(&mut tmp.file());
        if let Err(e) = written {
            tmp.discard();
            return Err(maildir_err(e));
        }
        let size = message.content.len();
        if let Some(delivered) = &mut self.folders.get_mut(folder).expect("prepared").delivered {
            delivered.insert(base.clone());
        }
        self.pending.push(Pending {
            index: message.index,
            offset: message.offset,
            target: target.to_string(),
            quarantined,
            dir,
            tmp,
            name: maildir::file_name(&base, size),
        });
        self.pending_bytes += size;
        Ok(Filed::Queued {
            folder: folder.to_string(),
        })
    }

    /// Whether the stable name of message `index` is already in `folder`.
    fn is_delivered(&mut self, folder: &str, index: u64) -> Result<bool, DeliveryError> {
        let base = self.namer.base(index);
        Ok(self
            .folder(folder, false)?
            .delivered
            .as_ref()
            .is_some_and(|d| d.contains(&base)))
    }

    /// The Maildir of `name`; created (with `create`) on first need, so
    /// that merely checking the quarantine creates no folder.
    fn folder(&mut self, name: &str, create: bool) -> Result<&mut Folder, DeliveryError> {
        if !self.folders.contains_key(name) {
            let dir = maildir::folder_dir(&self.root, self.layout, name).map_err(|e| {
                DeliveryError::Maildir {
                    dir: self.root.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, e),
                }
            })?;
            let delivered = match self.namer.stable_prefix() {
                Some(prefix) if self.resumed => {
                    Some(maildir::delivered_bases(&dir, &prefix).map_err(|source| {
                        DeliveryError::Maildir {
                            dir: dir.clone(),
                            source,
                        }
                    })?)
                }
                // A claim's first delivery: none of its names exist yet.
                Some(_) => Some(HashSet::new()),
                None => None,
            };
            let folder = Folder {
                dir,
                delivered,
                created: false,
            };
            self.folders.insert(name.to_string(), folder);
        }
        let folder = self.folders.get_mut(name).expect("inserted above");
        if create && !folder.created {
            let maildir_err = |source| DeliveryError::Maildir {
                dir: folder.dir.clone(),
                source,
            };
            let subfolder = self.layout == FolderLayout::MaildirPlusPlus && folder.dir != self.root;
            maildir::ensure(&folder.dir, subfolder).map_err(maildir_err)?;
            // Their entries are made durable with the next batch.
            self.new_dirs.extend(
                folder
                    .dir
                    .ancestors()
                    .take_while(|d| d.starts_with(&self.root))
                    .chain(self.root.parent())
                    .map(Path::to_path_buf),
            );
            folder.created = true;
        }
        Ok(folder)
    }
}

/// Messages written to `tmp/` files by a [`Filer`] and not yet published.
/// [`Batch::commit`] makes them durable and visible; a pipeline can instead
/// make several filers' batches durable together ([`make_durable`], one
/// sync of the file system for all, on a thread of its own) and
/// [publish](Batch::publish) each on the thread that wrote it. Dropped
/// uncommitted, its files are removed (the input still holds the messages).
#[derive(Debug)]
pub struct Batch {
    pending: Vec<Pending>,
    fsync: bool,
    /// Directories made for this batch's folders whose entries must be made
    /// durable before anything is published in them.
    new_dirs: Vec<PathBuf>,
}

impl Batch {
    /// How many messages the batch holds.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Makes every message of the batch durable and visible in its folder's
    /// `new/`.
    pub fn commit(self) -> Result<Vec<Published>, CommitError> {
        match make_durable(std::slice::from_ref(&self)) {
            Ok(()) => self.publish(),
            Err(e) => Err(self.fail(Vec::new(), e)),
        }
    }

    /// Gives up the batch after `source` made it fail: its files are
    /// removed and its messages reported lost (`published` were delivered).
    pub fn fail(mut self, published: Vec<Published>, source: io::Error) -> CommitError {
        let rest = std::mem::take(&mut self.pending);
        let lost = rest
            .iter()
            .map(|p| (p.index, p.offset, p.target.clone()))
            .collect();
        for p in rest {
            p.tmp.discard();
        }
        CommitError {
            published,
            lost,
            source,
        }
    }

    /// Makes the messages visible in their folders' `new/` (never
    /// overwriting, see [`maildir::publish`]) and, with fsync on, makes those
    /// names durable. Only after [`make_durable`] has succeeded for it.
    pub fn publish(mut self) -> Result<Vec<Published>, CommitError> {
        let mut published = Vec::with_capacity(self.pending.len());
        let mut dirs = BTreeSet::new();
        let mut pending = std::mem::take(&mut self.pending).into_iter();
        while let Some(p) = pending.next() {
            if let Err(e) = maildir::publish(&p.tmp, &p.dir, &p.name) {
                self.pending = std::iter::once(p).chain(pending).collect();
                return Err(self.fail(published, e));
            }
            let new = p.dir.join("new");
            published.push(Published {
                index: p.index,
                offset: p.offset,
                target: p.target,
                path: new.join(&p.name),
                quarantined: p.quarantined,
            });
            dirs.insert(new);
        }
        if self.fsync {
            for dir in &dirs {
                if let Err(e) = os::sync_dir(dir) {
                    // The links exist but may not survive a crash: report
                    // them as not delivered so that the input is kept.
                    let lost = published
                        .iter()
                        .map(|p| (p.index, p.offset, p.target.clone()))
                        .collect();
                    return Err(CommitError {
                        published: Vec::new(),
                        lost,
                        source: e,
                    });
                }
            }
        }
        Ok(published)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        for p in self.pending.drain(..) {
            p.tmp.discard();
        }
    }
}

/// Makes the `tmp/` files of `batches` and the directories made for them
/// durable (batches with fsync off are skipped): one syncfs(2) per file
/// system (Linux) when there is more than one message, which writes every
/// dirty page and directory of that file system and commits its journal
/// once; else fsync of the file and of each new directory.
pub fn make_durable(batches: &[Batch]) -> io::Result<()> {
    let batches: Vec<&Batch> = batches
        .iter()
        .filter(|b| b.fsync && !b.is_empty())
        .collect();
    #[cfg(target_os = "linux")]
    if batches.iter().map(|b| b.len()).sum::<usize>() > 1 {
        let folders: BTreeSet<&Path> = batches
            .iter()
            .flat_map(|b| b.pending.iter().map(|p| p.dir.as_path()))
            .collect();
        let mut devices = HashMap::new();
        for dir in folders {
            let tmp_dir = dir.join("tmp");
            let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&tmp_dir)?);
            devices.entry(dev).or_insert(tmp_dir);
        }
        for dir in devices.values() {
            os::syncfs(dir)?;
        }
        return Ok(());
    }
    for batch in batches {
        for p in &batch.pending {
            p.tmp.file().sync_all()?;
        }
        for dir in &batch.new_dirs {
            os::sync_dir(dir)?;
        }
    }
    Ok(())
}

impl Drop for Filer {
    /// Removes `tmp/` files of a batch that was never committed, so that an
    /// abandoned filer leaves no garbage (the input still holds the messages).
    fn drop(&mut self) {
        for p in self.pending.drain(..) {
            p.tmp.discard();
        }
    }
}

#[cfg(test)]
mod tests;
