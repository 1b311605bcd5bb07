//! The split-filter-deliver pipeline over one input: every message is
//! matched against the rules and filed, Maildir deliveries are committed in
//! durable batches, and the report counts messages per folder and names each
//! one that could not be delivered (input, index, byte offset, where it is
//! kept). Used by `mailhaul filter` and by the fetch engine's delivery step.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::engine::deliver::{
    self, Batch, CommitError, DeliveryError, Filed, Filer, Published, MBOX_PREFIX,
    QUARANTINE_FOLDER,
};
use crate::engine::event::FetchEvent;
use crate::engine::filing::MboxFormat;
use crate::engine::mbox::MboxSplitter;
use crate::engine::message::Message;
use crate::engine::rules::Target;

/// One message that was not delivered where the rules said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// The input's name (a path, or `-` for stdin).
    pub input: String,
    /// The message's 1-based index in the input.
    pub index: u64,
    /// Byte offset of its first byte in the input.
    pub offset: u64,
    /// Where the rules sent it (folder, `mbox:PATH` or `mda:COMMAND`).
    pub target: String,
    /// Why it was not delivered there.
    pub reason: String,
    /// Its file in the quarantine folder; `None` when it is only in the input.
    pub kept: Option<PathBuf>,
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: message {} at byte {} not delivered to {}: {}; ",
            self.input, self.index, self.offset, self.target, self.reason
        )?;
        match &self.kept {
            Some(path) => write!(f, "kept in {}", path.display()),
            None => write!(f, "it is still in {}", self.input),
        }
    }
}

/// The outcome of filing one input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilingReport {
    /// The input's name.
    pub input: String,
    /// Messages read from the input.
    pub messages: u64,
    /// Messages delivered, per folder, `mbox:PATH` or `mda:COMMAND`.
    pub delivered: BTreeMap<String, u64>,
    /// Messages skipped because a resumed delivery found them already there.
    pub already_delivered: u64,
    /// Messages not delivered where the rules said (quarantined or kept in the input).
    pub undelivered: Vec<Undelivered>,
    /// Reading the input failed here (the error names the offset); messages
    /// after it were not read.
    pub read_error: Option<String>,
}

impl FilingReport {
    /// True when every message of the input was delivered (or already was).
    pub fn complete(&self) -> bool {
        self.undelivered.is_empty() && self.read_error.is_none()
    }

    /// Messages delivered in all.
    pub fn delivered_total(&self) -> u64 {
        self.delivered.values().sum()
    }
}

/// Splits the mbox `reader` (in dialect `format`) and files every message
/// with `filer`; see [`file_messages`].
pub fn file_mbox(
    reader: impl Read,
    input: &str,
    filer: &mut Filer,
    format: MboxFormat,
    progress: &mut dyn FnMut(FetchEvent),
) -> FilingReport {
    file_messages(MboxSplitter::new(reader, format), input, filer, progress)
}

/// Threads that write Maildir files, besides the one that splits the input.
const WRITERS: usize = 2;

/// Batches written and waiting for the syncing thread, which makes every
/// batch waiting durable with one sync while the writers go on writing.
const BATCHES_IN_FLIGHT: usize = 2;

/// Bundles of messages waiting between the splitter and the writers, to keep
/// the writers busy (their memory is bounded by [`IN_FLIGHT_MEMORY`]).
const BUNDLES_IN_FLIGHT: usize = 4;

/// Messages handed to a writer at once: one channel operation (and at most
/// one wake-up) per bundle instead of per message.
const BUNDLE_MESSAGES: usize = 32;

/// Bytes after which a bundle is handed over even if it is not full.
const BUNDLE_BYTES: u64 = 1 << 20;

/// Memory the messages between the splitter and the writers may hold in
/// all; a message is let through alone when it needs more (its content is
/// in memory up to 8 MiB, then in a temporary file).
const IN_FLIGHT_MEMORY: usize = 16 << 20;

/// The memory held by messages on their way to the writers: the splitter
/// waits for the writers to free some before it sends more.
struct InFlight {
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl InFlight {
    /// Whether taking `n` bytes now would wait.
    fn would_wait(&self, n: usize) -> bool {
        let used = *self.used.lock().expect("no thread panics holding it");
        used > 0 && used + n > IN_FLIGHT_MEMORY
    }

    /// Takes `n` bytes, waiting until they fit (or nothing else is held).
    fn take(&self, n: usize) {
        let mut used = self.used.lock().expect("no thread panics holding it");
        while *used > 0 && *used + n > IN_FLIGHT_MEMORY {
            used = self.freed.wait(used).expect("no thread panics holding it");
        }
        *used += n;
    }

    fn give(&self, n: usize) {
        *self.used.lock().expect("no thread panics holding it") -= n;
        self.freed.notify_all();
    }
}

/// The memory a message holds.
fn message_memory(message: &Message) -> usize {
    message.content.memory() + message.header.capacity()
}

/// Holds back the publishing of filed messages until their input is known
/// to be good. A fetch files a claim while it is still downloading: the
/// messages are written into unnamed files in `tmp/` (which vanish if the
/// process dies), and nothing reaches `new/`, an mbox file or a delivery
/// agent until the fetch opens the gate with the verified, durable,
/// journalled staged file; shut, every filed message is dropped.
#[derive(Debug, Default)]
pub struct PublishGate {
    state: std::sync::Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
enum GateState {
    #[default]
    Waiting,
    Open(PathBuf),
    Shut,
}

impl PublishGate {
    /// Lets the messages be published; `verified` is the whole input.
    pub fn open(&self, verified: PathBuf) {
        self.set(GateState::Open(verified));
    }

    /// Drops every message filed behind the gate.
    pub fn shut(&self) {
        self.set(GateState::Shut);
    }

    fn set(&self, state: GateState) {
        *self.state.lock().expect("no thread panics holding it") = state;
        self.changed.notify_all();
    }

    /// Waits until the gate is opened (the verified input's path) or shut
    /// (`None`).
    pub fn wait(&self) -> Option<PathBuf> {
        let mut state = self.state.lock().expect("no thread panics holding it");
        loop {
            match &*state {
                GateState::Waiting => {
                    state = self
                        .changed
                        .wait(state)
                        .expect("no thread panics holding it")
                }
                GateState::Open(path) => return Some(path.clone()),
                GateState::Shut => return None,
            }
        }
    }
}

/// Files every message of `messages` (an mbox splitter, or any source of
/// messages) with `filer`; `input` names the input in the report; `progress`
/// gets a [`FetchEvent::Filed`] with the running count of a folder whenever
/// messages are delivered there. Errors reading the input end the run and
/// are in the report; everything read before is filed.
///
/// The calling thread reads the input and decides each message's target;
/// messages for Maildir folders go in bundles through a bounded channel to
/// [`WRITERS`] threads, each with its own [`Filer::sibling`] that writes
/// them into `tmp/` in batches (its share of `filer`'s). A full batch goes
/// to a syncing thread, which makes every batch waiting durable at once
/// and hands each back to its writer, which publishes it into `new/`.
/// Writers send the outcomes back here, where the report and the progress
/// are kept (that channel is unbounded but carries only small records,
/// drained after each message). Delivery agents and mbox files (and their
/// quarantine) are served by `filer` on the calling thread, one message at
/// a time and in input order.
pub fn file_messages<E: fmt::Display>(
    messages: impl IntoIterator<Item = Result<Message, E>>,
    input: &str,
    filer: &mut Filer,
    progress: &mut dyn FnMut(FetchEvent),
) -> FilingReport {
    file_messages_behind(messages, input, filer, progress, None)
}

/// [`file_messages`], publishing nothing until `gate` opens: Maildir
/// batches wait at the syncing thread, mbox files and delivery agents at
/// the calling thread; shut, the batches are dropped unpublished and the
/// rest is not filed.
pub fn file_messages_behind<E: fmt::Display>(
    messages: impl IntoIterator<Item = Result<Message, E>>,
    input: &str,
    filer: &mut Filer,
    progress: &mut dyn FnMut(FetchEvent),
    gate: Option<&PublishGate>,
) -> FilingReport {
    let passed = std::sync::OnceLock::new();
    let pass = || *passed.get_or_init(|| gate.is_none_or(|g| g.wait().is_some()));
    let pass = &pass;
    let mut run = Run {
        report: FilingReport {
            input: input.to_string(),
            ..FilingReport::default()
        },
        progress,
    };
    let (work_tx, work_rx) =
        crossbeam_channel::bounded::<Vec<(Message, Target)>>(BUNDLES_IN_FLIGHT);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Outcome>();
    let (sync_tx, sync_rx) = crossbeam_channel::bounded::<ToSync>(BATCHES_IN_FLIGHT);
    let in_flight = InFlight {
        used: std::sync::Mutex::new(0),
        freed: std::sync::Condvar::new(),
    };
    let in_flight = &in_flight;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Ok(first) = sync_rx.recv() {
                // Group commit: whatever else is waiting shares the sync.
                let (batches, writers): (Vec<Batch>, Vec<_>) =
                    std::iter::once(first).chain(sync_rx.try_iter()).unzip();
                let synced = if pass() {
                    deliver::make_durable(&batches)
                } else {
                    Err(io::Error::other("the input was not verified"))
                };
                for (batch, writer) in batches.into_iter().zip(writers) {
                    let result = match &synced {
                        Ok(()) => Ok(()),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    };
                    // The writer waits for every batch it sent.
                    let _ = writer.send((batch, result));
                }
            }
        });
        for _ in 0..WRITERS {
            let mut writer = filer.sibling(WRITERS);
            let work = work_rx.clone();
            let done = done_tx.clone();
            let to_sync = sync_tx.clone();
            scope.spawn(move || {
                let (synced_tx, synced_rx) = crossbeam_channel::unbounded();
                let mut unsynced = 0usize;
                // The receiver lives until every writer has ended.
                let publish = |(batch, synced): Synced| {
                    let result = match synced {
                        Ok(()) => batch.publish(),
                        Err(e) => Err(batch.fail(Vec::new(), e)),
                    };
                    let _ = done.send(Outcome::Committed(result));
                };
                let send_batch = |batch: Batch, unsynced: &mut usize| {
                    // Only fails if the syncing thread ended; the batch is
                    // then dropped, which removes its files, and it is not
                    // reported delivered.
                    if to_sync.send((batch, synced_tx.clone())).is_ok() {
                        *unsynced += 1;
                    }
                };
                loop {
                    crossbeam_channel::select! {
                        recv(work) -> bundle => {
                            let Ok(bundle) = bundle else { break };
                            for (mut message, target) in bundle {
                                let label = target.label();
                                let memory = message_memory(&message);
                                let result = writer.file(&mut message, target);
                                let filed = Outcome::Filed(message.index, message.offset, label, result);
                                drop(message);
                                in_flight.give(memory);
                                let _ = done.send(filed);
                                if writer.should_commit() {
                                    send_batch(writer.take_batch(), &mut unsynced);
                                }
                                // Published as soon as they are durable:
                                // their files are open until then.
                                for synced in synced_rx.try_iter() {
                                    publish(synced);
                                    unsynced -= 1;
                                }
                            }
                        }
                        recv(synced_rx) -> synced => {
                            publish(synced.expect("this thread holds a sender"));
                            unsynced -= 1;
                        }
                    }
                }
                send_batch(writer.take_batch(), &mut unsynced);
                for synced in synced_rx.iter().take(unsynced) {
                    publish(synced);
                }
            });
        }
        drop(sync_tx);
        drop((work_rx, done_tx));
        let mut bundle = Vec::with_capacity(BUNDLE_MESSAGES);
        let mut bundle_bytes = 0;
        let hand_over = |bundle: &mut Vec<(Message, Target)>| {
            if !bundle.is_empty() {
                let full = std::mem::replace(bundle, Vec::with_capacity(BUNDLE_MESSAGES));
                work_tx
                    .send(full)
                    .expect("writers take messages until the channel closes");
            }
        };
        for message in messages {
            let mut message = match message {
                Ok(m) => m,
                Err(e) => {
                    run.report.read_error = Some(format!("{input}: {e}"));
                    break;
                }
            };
            run.report.messages += 1;
            let target = filer.rules().decide(&message).target.clone();
            match &target {
                Target::Folder(name) if !name.starts_with(MBOX_PREFIX) => {
                    let memory = message_memory(&message);
                    if in_flight.would_wait(memory) {
                        // The writers must have the held messages to free them.
                        hand_over(&mut bundle);
                        bundle_bytes = 0;
                    }
                    in_flight.take(memory);
                    bundle_bytes += message.content.len();
                    bundle.push((message, target));
                    if bundle.len() >= BUNDLE_MESSAGES || bundle_bytes >= BUNDLE_BYTES {
                        hand_over(&mut bundle);
                        bundle_bytes = 0;
                    }
                }
                _ => {
                    if !pass() {
                        run.report.read_error = Some(format!("{input}: not verified"));
                        break;
                    }
                    let label = target.label();
                    let result = filer.file(&mut message, target);
                    run.filed(message.index, message.offset, label, result);
                    if filer.should_commit() {
                        run.committed(filer.commit());
                    }
                }
            }
            for outcome in done_rx.try_iter() {
                run.outcome(outcome);
            }
        }
        hand_over(&mut bundle);
        drop(work_tx);
        run.committed(filer.commit());
        // Ends when every writer has committed its last batch and ended.
        for outcome in done_rx {
            run.outcome(outcome);
        }
    });
    run.report.undelivered.sort_by_key(|u| u.index);
    run.report
}

/// A written batch on its way to the syncing thread, with the way back to
/// its writer.
type ToSync = (Batch, crossbeam_channel::Sender<Synced>);

/// A batch back from the syncing thread: made durable, or why not.
type Synced = (Batch, io::Result<()>);

/// What a writer thread reports back to the thread that keeps the report.
enum Outcome {
    /// Message (index, offset, target label) was filed with this result.
    Filed(u64, u64, String, Result<Filed, DeliveryError>),
    /// A batch was committed.
    Committed(Result<Vec<Published>, CommitError>),
}

/// The report being built and the progress sink.
struct Run<'a> {
    report: FilingReport,
    progress: &'a mut dyn FnMut(FetchEvent),
}

impl Run<'_> {
    fn outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Filed(index, offset, target, result) => {
                self.filed(index, offset, target, result)
            }
            Outcome::Committed(result) => self.committed(result),
        }
    }

    /// Counts what [`Filer::file`] did with message `index` (meant for `target`).
    fn filed(
        &mut self,
        index: u64,
        offset: u64,
        target: String,
        result: Result<Filed, DeliveryError>,
    ) {
        match result {
            Ok(Filed::Queued { .. }) | Ok(Filed::Quarantined { .. }) => {}
            Ok(Filed::AlreadyDelivered { .. }) => self.report.already_delivered += 1,
            Ok(Filed::Piped { mda: target }) | Ok(Filed::Appended { folder: target }) => {
                self.delivered(&target, 1)
            }
            Err(e) => self.report.undelivered.push(Undelivered {
                input: self.report.input.clone(),
                index,
                offset,
                target,
                reason: e.to_string(),
                kept: None,
            }),
        }
    }

    fn delivered(&mut self, folder: &str, n: u64) {
        let count = self.report.delivered.entry(folder.to_string()).or_default();
        *count += n;
        (self.progress)(FetchEvent::Filed {
            folder: folder.to_string(),
            count: *count,
        });
    }

    fn committed(&mut self, result: Result<Vec<Published>, CommitError>) {
        let (published, lost) = match result {
            Ok(published) => (published, None),
            Err(e) => (e.published, Some((e.lost, e.source))),
        };
        let mut per_folder: BTreeMap<String, u64> = BTreeMap::new();
        for p in published {
            match p.quarantined {
                Some(reason) => self.report.undelivered.push(Undelivered {
                    input: self.report.input.clone(),
                    index: p.index,
                    offset: p.offset,
                    target: p.target,
                    reason,
                    kept: Some(p.path),
                }),
                None => *per_folder.entry(p.target).or_default() += 1,
            }
        }
        for (folder, n) in per_folder {
            self.delivered(&folder, n);
        }
        if let Some((lost, source)) = lost {
            for (index, offset, target) in lost {
                let reason = if target.starts_with("mda:") || target.starts_with(MBOX_PREFIX) {
                    format!("it failed there and the {QUARANTINE_FOLDER} folder could not be written: {source}")
                } else {
                    format!("cannot make it durable: {source}")
                };
                self.report.undelivered.push(Undelivered {
                    input: self.report.input.clone(),
                    index,
                    offset,
                    target,
                    reason,
                    kept: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::deliver::StableId;
    use crate::engine::filing::filter_section;
    use crate::engine::message::Content;
    use std::path::Path;

    fn message(index: u64, text: &str) -> Message {
        let mut content = Content::new();
        content.extend(text.as_bytes()).unwrap();
        let header_end = text.find("\n\n").map_or(text.len(), |i| i + 2);
        Message {
            index,
            offset: index * 1000,
            envelope: Some(b"a@b Thu Jan  1 00:00:00 1970".to_vec()),
            header: text.as_bytes()[..header_end].to_vec(),
            content,
        }
    }

    fn messages() -> Vec<Result<Message, String>> {
        vec![
            Ok(message(1, "Subject: one\nList-Id: <mips.x>\n\nbody 1\n")),
            Ok(message(2, "Subject: two\n\nbody 2\n")),
            Ok(message(3, "Subject: three\n\nbody 3\n")),
        ]
    }

    const RULES: &str = "[[filter.rule]]\nheader = \"list-id\"\ncontains = \"mips\"\nfolder = \"lists/mips\"\n\
                         [[filter.rule]]\nheader = \"subject\"\ncontains = \"three\"\nmda = [\"false\"]\n";

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn files_counts_and_quarantines() {
        let root = tempfile::tempdir().unwrap();
        let filter = filter_section(RULES);
        let mut filer = Filer::new(&filter, root.path(), None)
            .unwrap()
            .with_batch(2);
        let mut events = Vec::new();
        let report = file_messages(messages(), "in.mbox", &mut filer, &mut |e| events.push(e));
        assert_eq!(report.messages, 3);
        assert_eq!(report.delivered.get("lists/mips"), Some(&1));
        assert_eq!(report.delivered.get("INBOX"), Some(&1));
        assert_eq!(report.undelivered.len(), 1);
        let u = &report.undelivered[0];
        assert_eq!(
            (u.index, u.offset, u.target.as_str()),
            (3, 3000, "mda:false")
        );
        let kept = u.kept.as_ref().unwrap();
        assert!(kept.starts_with(root.path().join(".mailhaul-undelivered/new")));
        assert_eq!(std::fs::read(kept).unwrap(), b"Subject: three\n\nbody 3\n");
        assert!(
            u.to_string().contains("in.mbox: message 3 at byte 3000"),
            "{u}"
        );
        assert!(!report.complete());
        assert_eq!(files_in(&root.path().join(".lists.mips/new")).len(), 1);
        assert_eq!(files_in(&root.path().join("new")).len(), 1);
        assert!(files_in(&root.path().join("tmp")).is_empty());
        assert!(events
            .iter()
            .any(|e| matches!(e, FetchEvent::Filed { folder, count: 1 } if folder == "INBOX")));
    }

    #[test]
    fn the_writers_file_every_message_once_and_mbox_keeps_input_order() {
        let root = tempfile::tempdir().unwrap();
        let rules = "[[filter.rule]]\nheader = \"subject\"\ncontains = \"list\"\nfolder = \"lists/x\"\n\
                     [[filter.rule]]\nheader = \"subject\"\ncontains = \"keep\"\nfolder = \"mbox:archive\"\n";
        let filter = filter_section(rules);
        let mut filer = Filer::new(&filter, root.path(), None)
            .unwrap()
            .with_batch(7);
        let kinds = ["list", "keep", "inbox"];
        let input: Vec<Result<Message, String>> = (1..=300)
            .map(|i| {
                let kind = kinds[i as usize % 3];
                Ok(message(i, &format!("Subject: {kind} {i}\n\nbody {i}\n")))
            })
            .collect();
        let mut last_count: BTreeMap<String, u64> = BTreeMap::new();
        let report = file_messages(input, "in", &mut filer, &mut |e| {
            if let FetchEvent::Filed { folder, count } = e {
                let last = last_count.entry(folder).or_default();
                assert!(count > *last, "counts only grow");
                *last = count;
            }
        });
        assert!(report.complete(), "{report:?}");
        assert_eq!(report.messages, 300);
        let want: BTreeMap<String, u64> = [("INBOX", 100), ("lists/x", 100), ("mbox:archive", 100)]
            .map(|(f, n)| (f.to_string(), n))
            .into();
        assert_eq!(report.delivered, want);
        assert_eq!(last_count, want, "the last progress event of each folder");
        let mut bodies = Vec::new();
        for dir in [root.path().join("new"), root.path().join(".lists.x/new")] {
            for name in files_in(&dir) {
                bodies.push(std::fs::read_to_string(dir.join(name)).unwrap());
            }
        }
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), 200, "each Maildir message once");
        assert!(files_in(&root.path().join("tmp")).is_empty());
        assert!(files_in(&root.path().join(".lists.x/tmp")).is_empty());
        let mbox = std::fs::read_to_string(root.path().join("archive")).unwrap();
        let subjects: Vec<&str> = mbox.lines().filter(|l| l.starts_with("Subject:")).collect();
        let expected: Vec<String> = (1..=300)
            .filter(|i| i % 3 == 1)
            .map(|i| format!("Subject: keep {i}"))
            .collect();
        assert_eq!(subjects, expected, "mbox appends in input order");
    }

    #[test]
    fn a_failed_mbox_append_is_quarantined_not_dropped() {
        let root = tempfile::tempdir().unwrap();
        // A directory where the mbox file should be: the append fails.
        std::fs::create_dir(root.path().join("archive")).unwrap();
        let filter = filter_section("[filter]\ndefault_folder = \"mbox:archive\"\n");
        let mut filer = Filer::new(&filter, root.path(), None).unwrap();
        let report = file_messages(messages(), "in", &mut filer, &mut |_| {});
        assert_eq!(report.delivered_total(), 0);
        assert_eq!(report.undelivered.len(), 3);
        for u in &report.undelivered {
            assert_eq!(u.target, "mbox:archive");
            assert!(u.reason.contains("mbox"), "{}", u.reason);
            assert!(u.kept.as_ref().unwrap().exists());
        }
        assert!(!root.path().join("archive.lock").exists(), "lock released");
    }

    /// A claim's first delivery does not list the folders (its names cannot
    /// be there; the cost must not grow with the folder), a resumed one
    /// does, and finds only this claim's names.
    #[test]
    fn only_a_resumed_delivery_lists_the_folders() {
        let filter = filter_section("");
        for resumed in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let stable = StableId {
                time: 1_700_000_000,
                claim: "c1".into(),
                resumed,
            };
            // Message 2 of this claim, already filed and read; and a
            // message of another claim.
            let namer = crate::engine::deliver::maildir::Namer::new(Some(&stable));
            let cur = root.path().join("cur");
            std::fs::create_dir_all(&cur).unwrap();
            std::fs::write(cur.join(format!("{},S=21:2,S", namer.base(2))), "x").unwrap();
            std::fs::write(cur.join("1700000000.Cc2I1.host,S=21:2,S"), "y").unwrap();
            let mut filer = Filer::new(&filter, root.path(), Some(stable)).unwrap();
            let report =
                file_messages(messages().into_iter().take(2), "s", &mut filer, &mut |_| {});
            let skipped = u64::from(resumed);
            assert_eq!(report.already_delivered, skipped, "resumed {resumed}");
            assert_eq!(report.delivered_total(), 2 - skipped, "resumed {resumed}");
        }
    }

    #[test]
    fn stable_names_make_a_rerun_skip_what_is_there() {
        let root = tempfile::tempdir().unwrap();
        let filter = filter_section("");
        let stable = StableId {
            time: 1_700_000_000,
            claim: "c1".into(),
            resumed: true,
        };
        let mut filer = Filer::new(&filter, root.path(), Some(stable.clone())).unwrap();
        let first = file_messages(messages().into_iter().take(2), "s", &mut filer, &mut |_| {});
        assert_eq!(first.delivered_total(), 2);
        // A reader moved message 1 to cur/ and flagged it.
        let new = root.path().join("new");
        let one = files_in(&new)
            .into_iter()
            .find(|n| n.contains("I1."))
            .unwrap();
        std::fs::rename(
            new.join(&one),
            root.path().join("cur").join(format!("{one}:2,S")),
        )
        .unwrap();
        let mut filer = Filer::new(&filter, root.path(), Some(stable)).unwrap();
        let second = file_messages(messages(), "s", &mut filer, &mut |_| {});
        assert_eq!(second.already_delivered, 2);
        assert_eq!(second.delivered_total(), 1);
        assert_eq!(
            files_in(&new).len() + files_in(&root.path().join("cur")).len(),
            3
        );
    }

    #[test]
    fn read_errors_stop_the_run_after_filing_what_came_before() {
        let root = tempfile::tempdir().unwrap();
        let filter = filter_section("");
        let mut filer = Filer::new(&filter, root.path(), None).unwrap();
        let mut input = messages();
        input.insert(1, Err("read error at byte 1234".to_string()));
        let report = file_messages(input, "x.mbox", &mut filer, &mut |_| {});
        assert_eq!(report.delivered_total(), 1);
        assert_eq!(
            report.read_error.as_deref(),
            Some("x.mbox: read error at byte 1234")
        );
        assert!(!report.complete());
    }
}
