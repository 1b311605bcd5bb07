//! The protocol's steps for one account, in order: recover what earlier
//! runs left, claim the spool, download each claim into a verified staging
//! file, deliver it, release it on the server; each step journalled first
//! (durable-before-release, exactly-once in docs/design.md).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use crate::engine::account::{Account, Compression};
use crate::engine::claim::{
    self, choose_method, choose_strategy, parse_claims, parse_reply, ClaimReply, Method,
    RemoteClaim, ScriptError, ScriptErrorKind,
};
use crate::engine::deliver::{Filer, StableId};
use crate::engine::event::{
    Event, FetchEvent, FetchSummary, HostKeyInfo, Level, Stage, TransferProgress,
};
use crate::engine::filing::Destination;
use crate::engine::journal::{self, Journal, JournalClaim, Workspace, WorkspaceError};
use crate::engine::mbox::MboxSplitter;
use crate::engine::pipeline::{file_messages, file_messages_behind, FilingReport, PublishGate};
use crate::engine::ssh::{unhex, Connection, OpenChannel, ScriptStream, SshError};
use crate::engine::transfer::{self, TransferError};

use super::dictionary::{self, Dictionary};
use super::prefile::{self, Tee, TeeInput};
use super::{
    claim_time, connect_ssh, crash_point, describe, facts, inspect, link, script, script_on,
    spool_arg, survey, survey_records, DownloadError, FetchError, FetchOptions, CRASH_ENV,
};

/// How often transfer progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The state of one fetch in progress.
pub(super) struct Run<'a> {
    pub(super) account: &'a Account,
    /// Where the claims' messages are filed.
    pub(super) destination: &'a Destination,
    pub(super) options: &'a FetchOptions,
    pub(super) events: &'a Sender<Event>,
    pub(super) summary: FetchSummary,
    /// Raw bytes of every claim known to need downloading in this run.
    pub(super) raw_total: u64,
    /// Raw bytes of claims already downloaded in this run.
    pub(super) raw_before: u64,
    /// Payload bytes of claims already downloaded in this run.
    pub(super) payload_before: u64,
    pub(super) socket_bytes: u64,
    /// Bytes the session had received before this fetch (a reused session).
    pub(super) socket_base: u64,
    /// What this fetch did with the account's dictionary.
    pub(super) dictionary: DictionaryRun,
    /// The connection is dropped after this fetch (a one-shot fetch, not
    /// one over the watcher's session): its last release is sent without
    /// waiting for the answer (see [`Run::release`]).
    pub(super) closes_after: bool,
    /// The server spool this fetch claims from (its facts' `spool`), which
    /// a release sent without its answer is journalled with.
    pub(super) spool: String,
}

/// What a fetch did with the account's dictionary (engine::fetch::dictionary).
#[derive(Debug, Default)]
pub(super) struct DictionaryRun {
    /// The server's copy is missing or differs, or a stream made with it
    /// did not verify: it is sent up after the fetch.
    upload: bool,
    /// The transfers that used it compress worse than its first ones did:
    /// it is made again after the fetch.
    retrain: bool,
    /// A transfer used it.
    used: bool,
    /// The zstd level of transfers with it (`dictionary::level`).
    level: i32,
}

/// What the claim step's `send` line said about the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DictionaryAnswer {
    /// None was asked for, or the claim is too large for it.
    NotUsed,
    /// The stream is compressed with it.
    Used,
    /// The server's copy is missing or differs: the stream is without it.
    Missing,
}

impl Run<'_> {
    pub(super) fn emit(&self, event: FetchEvent) {
        let _ = self.events.send(Event::Fetch {
            account: self.account.name.clone(),
            event,
        });
    }

    pub(super) fn log(&self, level: Level, message: String) {
        let _ = self.events.send(Event::Log {
            level,
            account: Some(self.account.name.clone()),
            message,
        });
    }

    /// Stops here if the watcher asked to stop; every caller sits at a
    /// point a later run resumes from.
    fn check_cancel(&self) -> Result<(), FetchError> {
        if self.options.cancel.load(Ordering::Relaxed) {
            Err(FetchError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Bytes received on `conn` during this fetch.
    fn socket_received(&self, conn: &Connection) -> u64 {
        conn.socket_bytes_received()
            .unwrap_or(0)
            .saturating_sub(self.socket_base)
    }

    pub(super) fn fetch(&mut self, session: &mut Option<Connection>) -> Result<(), FetchError> {
        self.emit(FetchEvent::Stage(Stage::Connecting));
        let ws = match Workspace::open(&self.options.data_dir, &self.account.name) {
            Ok(ws) => ws,
            Err(WorkspaceError::Busy(b)) => return Err(FetchError::Busy(b)),
            Err(e) => return Err(FetchError::local("data dir", e)),
        };
        let mut journal =
            Journal::open(&ws.journal_path()).map_err(|e| FetchError::local("journal", e))?;
        self.drop_partials(&ws, &journal)?;

        // Claims released but not delivered (by a version that released
        // before delivering) need no server.
        if !self.options.dry_run {
            for c in journal.pending().into_iter().filter(|c| c.released) {
                self.emit(FetchEvent::Stage(Stage::Recovering));
                self.deliver(&ws, &mut journal, &c, true)?;
            }
        }

        self.check_cancel()?;
        let compress_first = self.account.compression == Compression::Ssh;
        let reused = match session {
            Some(conn) => conn,
            None => session.insert(self.connect(compress_first)?),
        };
        self.socket_base = reused.socket_bytes_received().unwrap_or(0);
        // The facts kept from the last fetch spare the survey's remote
        // step: the claim step checks that they still hold (their key).
        // Facts nothing can be claimed by are asked again (the server may
        // have got the missing tool since).
        let kept = if self.options.dry_run {
            None
        } else {
            facts::load(ws.dir()).filter(|p| {
                self.choose_method(&ws, p).is_ok() && choose_strategy(p, self.account.claim).is_ok()
            })
        };
        let surveyed = kept.is_none();
        let (mut probe, mut leftovers) = match kept {
            Some(probe) => (probe, ClaimReply::default()),
            None => {
                let (probe, leftovers, records) = survey_records(reused, self.account)?;
                self.keep_facts(&ws, &records);
                (probe, leftovers)
            }
        };
        self.report_ignored(&leftovers.ignored, &probe.user);
        if surveyed {
            self.report_spool(&probe);
        }
        let mut method = self.choose_method(&ws, &probe)?;
        let compressed;
        let conn: &Connection = if method.method.needs_transport_compression() && !compress_first {
            let own = self.connect(true)?;
            self.socket_base = 0;
            if surveyed {
                (probe, leftovers) = survey(&own, self.account)?;
            }
            compressed = own;
            &compressed
        } else {
            reused
        };
        self.summary.method = method.method.label();
        let strategy = choose_strategy(&probe, self.account.claim);

        if self.options.dry_run {
            let inspection = inspect(conn, self.account)?;
            self.log(Level::Info, describe(&inspection));
            self.socket_bytes = self.socket_received(conn);
            self.summary.socket_bytes = self.socket_bytes;
            return Ok(());
        }
        let mut strategy = strategy?;
        self.log_choice(&probe, &strategy, &method);

        // Staged but not yet released: the server copy may still be there.
        // Delivered (unless the journal says it is: names already filed are
        // skipped) and released now, it is no leftover any more.
        let mut done = std::collections::HashSet::new();
        // Deletions an earlier fetch sent without their answer go again
        // with the claim step, and are settled against its list of the
        // server's claims (below).
        let mut sent_releases = Vec::new();
        for c in journal.pending() {
            if c.delivered && c.release_sent.is_some() {
                done.insert(c.remote.path.clone());
                sent_releases.push(c);
                continue;
            }
            self.emit(FetchEvent::Stage(Stage::Recovering));
            if !c.delivered {
                self.deliver(&ws, &mut journal, &c, true)?;
            }
            self.release(conn, &mut journal, &c.remote, None)?;
            done.insert(c.remote.path.clone());
        }

        // Claims left on the server by an interrupted run come first.
        self.emit(FetchEvent::Stage(Stage::Recovering));
        let me = journal::installation_id(&self.options.data_dir)
            .map_err(|e| FetchError::local("installation id", e))?;
        leftovers.claims.retain(|c| !done.contains(&c.path));
        let (mine, theirs): (Vec<RemoteClaim>, Vec<RemoteClaim>) = leftovers
            .claims
            .into_iter()
            .partition(|c| self.may_take(c, &me));
        leftovers.claims = mine;
        // Left to the installation that made them; not warned about twice.
        let left: std::collections::HashSet<String> = theirs.into_iter().map(|c| c.path).collect();
        self.raw_total += leftovers.claims.iter().map(|c| c.size).sum::<u64>();
        for c in &leftovers.claims {
            self.log(
                Level::Info,
                format!(
                    "recovering claim {} ({} bytes) left by an earlier run",
                    c.shown(),
                    c.size
                ),
            );
            self.process(conn, &ws, &mut journal, c, method.method, None, None, false)?;
            done.insert(c.path.clone());
        }

        self.check_cancel()?;
        self.emit(FetchEvent::Stage(Stage::Claiming));
        let wait = self.account.lock_timeout.to_string();
        let stale = self.account.stale_lock_time.to_string();
        // Claim and transfer in one step: the script streams what it just
        // claimed right after its reply (claim.sh `claim ... METHOD LEVEL
        // FACTS`), unless claims of ours are waiting there (they go first).
        // Taking other installations' claims too, it streams nothing.
        let mut chosen_again = false;
        let mut dict: Option<Dictionary>;
        let (records, mut sent) = loop {
            let (send_name, send_level) = if self.options.adopt_claims {
                ("", String::new())
            } else {
                method.method.send_args()
            };
            let key = if probe.facts.is_empty() {
                "-"
            } else {
                probe.facts.as_str()
            };
            let mut args: Vec<Vec<u8>> = vec![
                b"claim".to_vec(),
                spool_arg(self.account).to_vec(),
                strategy.strategy.as_str().into(),
                wait.as_str().into(),
                me.as_str().into(),
                stale.as_str().into(),
                send_name.into(),
                send_level.into(),
                key.into(),
            ];
            // A small claim goes with the dictionary, if the server has it.
            dict = self.dictionary_for(&ws, method.method);
            if let Some(d) = &dict {
                let rate = link::recorded_rate(ws.dir(), SystemTime::now());
                self.dictionary.level = dictionary::level(self.account.zstd_level, rate);
                args.extend([
                    d.sha256().into(),
                    dictionary::MAX_CLAIM.to_string().into(),
                    self.dictionary.level.to_string().into(),
                ]);
            }
            // Claims whose release an earlier fetch sent without waiting:
            // the claim step deletes them first (they may still be there if
            // that request has not run yet), so they hold back no stream.
            if !sent_releases.is_empty() {
                args.resize(12, Vec::new());
                args.extend(
                    sent_releases
                        .iter()
                        .map(|c| c.remote.path.as_bytes().to_vec()),
                );
            }
            let stream = conn.start_script(claim::remote_script(), &args)?;
            // The release's channel, asked for now: its round trip passes
            // while the claim streams, not after the last message is filed.
            // Asked again after a resurvey, it is the same request.
            conn.request_channel();
            let (records, sent) = read_reply(conn, BufReader::new(stream))?;
            let new = claim::parse_probe(&records)?;
            self.keep_facts(&ws, &records);
            if !records.iter().any(|(k, _)| k == "resurvey") {
                if !surveyed || chosen_again {
                    self.report_spool(&new);
                }
                break (records, sent);
            }
            // The server changed since the facts were kept: nothing was
            // claimed; choose again from the facts it just sent.
            if chosen_again {
                return Err(ScriptError {
                    kind: ScriptErrorKind::Failed,
                    message: "the server's facts changed twice during one fetch".into(),
                }
                .into());
            }
            chosen_again = true;
            probe = new;
            method = self.choose_method(&ws, &probe)?;
            if method.method.needs_transport_compression() && conn.compression().1 == "none" {
                return Err(ScriptError {
                    kind: ScriptErrorKind::Failed,
                    message: "the server's compressors changed since the last fetch; \
                              the next fetch uses SSH compression"
                        .into(),
                }
                .into());
            }
            strategy = choose_strategy(&probe, self.account.claim)?;
            self.summary.method = method.method.label();
            self.log_choice(&probe, &strategy, &method);
        };
        let reply: ClaimReply = parse_claims(&records)?;
        if !surveyed {
            self.report_ignored(&reply.ignored, &probe.user);
        }
        for note in &reply.stale_locks {
            self.log(
                Level::Warn,
                format!(
                    "removed the stale lock {note} (stale_lock_time = {} s, as Postfix's local does)",
                    self.account.stale_lock_time
                ),
            );
        }
        for note in &reply.repaired {
            self.log(
                Level::Warn,
                format!("repaired an interrupted claim: {note}"),
            );
        }
        crash_point("claimed");
        self.spool.clone_from(&probe.spool);
        self.settle_sent_releases(
            conn,
            &mut journal,
            &mut sent_releases,
            &probe.spool,
            &reply.claims,
        )?;
        // Claims left by an earlier run (listed here when no survey ran)
        // before the one just made.
        let mut fresh: Vec<&RemoteClaim> = reply
            .claims
            .iter()
            .filter(|c| !done.contains(&c.path) && !left.contains(&c.path))
            .filter(|c| self.may_take(c, &me))
            .collect();
        fresh.sort_by_key(|c| reply.claimed.as_deref() == Some(c.shown().as_str()));
        for c in fresh
            .iter()
            .filter(|c| reply.claimed.as_deref() != Some(c.shown().as_str()))
        {
            self.log(
                Level::Info,
                format!(
                    "recovering claim {} ({} bytes) left by an earlier run",
                    c.shown(),
                    c.size
                ),
            );
        }
        self.raw_total += fresh.iter().map(|c| c.size).sum::<u64>();
        if fresh.is_empty() {
            self.log(Level::Info, "no new mail".into());
        }
        let streamed = match sent.take() {
            Some((path, answer, reader)) => match fresh.iter().find(|c| c.path == path) {
                Some(c) => {
                    self.dictionary.upload |= answer == DictionaryAnswer::Missing;
                    let with = dict.as_ref().filter(|_| answer == DictionaryAnswer::Used);
                    let last = fresh.iter().all(|other| other.path == path);
                    self.process(
                        conn,
                        &ws,
                        &mut journal,
                        c,
                        method.method,
                        Some(reader),
                        with,
                        last,
                    )?;
                    Some(path)
                }
                // Not one to take here: abandoning the stream leaves it on
                // the server (fetched below, or left to its owner).
                None => None,
            },
            None => None,
        };
        let rest: Vec<&RemoteClaim> = fresh
            .into_iter()
            .filter(|c| Some(&c.path) != streamed.as_ref())
            .collect();
        for (i, c) in rest.iter().enumerate() {
            let last = i + 1 == rest.len();
            self.process(conn, &ws, &mut journal, c, method.method, None, None, last)?;
        }
        if self.dictionary.used {
            self.summary.method = format!("zstd -{} + dictionary", self.dictionary.level);
        }
        self.keep_dictionary(conn, &ws, method.method, dict);
        self.summary.socket_bytes = conn
            .socket_bytes_received()
            .map_or(self.socket_bytes, |n| n.saturating_sub(self.socket_base));
        journal
            .compact()
            .map_err(|e| FetchError::local("journal", e))?;
        Ok(())
    }

    /// Keeps the facts of a survey or claim reply for the next fetch (a
    /// failure only costs that fetch a survey).
    fn keep_facts(&self, ws: &Workspace, records: &[(String, String)]) {
        if let Err(e) = facts::store(ws.dir(), records) {
            self.log(Level::Warn, format!("cannot keep the server's facts: {e}"));
        }
    }

    /// Warns about files named like claims that are not ours.
    fn report_ignored(&self, ignored: &[String], user: &str) {
        for name in ignored {
            self.log(
                Level::Warn,
                format!(
                    "ignored {name} on the server: named like a claim, but not a regular file \
                     of {user} with one link (another user may have planted it); left alone"
                ),
            );
        }
    }

    fn report_spool(&self, probe: &claim::Probe) {
        if let Some(bytes) = probe.spool_size {
            self.emit(FetchEvent::SpoolSize {
                bytes,
                messages: probe.spool_messages,
            });
        }
    }

    /// The compression for `probe`; with no level configured, the one that
    /// fits the link the last large transfer measured (engine::fetch::link).
    fn choose_method(
        &self,
        ws: &Workspace,
        probe: &claim::Probe,
    ) -> Result<claim::MethodChoice, FetchError> {
        let rate = link::recorded_rate(ws.dir(), SystemTime::now());
        let level = self.account.zstd_level.or_else(|| link::level_for(rate));
        let mut method = choose_method(probe, self.account.compression, level)?;
        if self.account.zstd_level.is_none() && level.is_some() {
            method.reason.push_str(&format!(
                "; level {} for a slow link ({:.0} kB/s measured)",
                link::SLOW_LINK_LEVEL,
                rate.unwrap_or(0.0) / 1000.0
            ));
        }
        Ok(method)
    }

    fn log_choice(
        &self,
        probe: &claim::Probe,
        strategy: &claim::StrategyChoice,
        method: &claim::MethodChoice,
    ) {
        self.log(
            Level::Info,
            format!(
                "{}: {} ({}); compression {} ({})",
                probe.spool,
                strategy.strategy.as_str(),
                strategy.reason,
                method.method.label(),
                method.reason
            ),
        );
    }

    /// The account's dictionary, when it has one and the transfer is zstd
    /// (`dictionary = false` turns it off).
    fn dictionary_for(&self, ws: &Workspace, method: Method) -> Option<Dictionary> {
        if !self.account.dictionary || !matches!(method, Method::Zstd(_)) {
            return None;
        }
        dictionary::load(ws.dir()).map(|(d, _)| d)
    }

    /// After the fetch: makes the dictionary from the newest filed mail
    /// when there is none yet or its transfers got worse, and sends it up
    /// when the server lacks it (once, compressed). Neither ever fails the
    /// fetch: without a dictionary on the server claims go without one.
    fn keep_dictionary(
        &mut self,
        conn: &Connection,
        ws: &Workspace,
        method: Method,
        mut current: Option<Dictionary>,
    ) {
        if !self.account.dictionary || !matches!(method, Method::Zstd(_)) {
            return;
        }
        if current.is_none() || self.dictionary.retrain {
            match dictionary::train(ws.dir(), &self.destination.maildir, SystemTime::now()) {
                Ok(Some(d)) => {
                    self.log(
                        Level::Info,
                        format!(
                            "made a dictionary of {} bytes from the newest filed mail{}",
                            d.bytes().len(),
                            if self.dictionary.retrain {
                                " (the last transfers with the old one compressed worse)"
                            } else {
                                ""
                            }
                        ),
                    );
                    current = Some(d);
                }
                Ok(None) => {}
                Err(e) => self.log(Level::Warn, format!("cannot make a dictionary: {e}")),
            }
        }
        let Some(d) = current.filter(|_| self.dictionary.upload) else {
            return;
        };
        let packed = d.compressed();
        let sent = conn
            .run_script_with_input(
                claim::remote_script(),
                &[b"dict-put".as_slice(), d.sha256().as_bytes()],
                &packed,
            )
            .map_err(FetchError::from)
            .and_then(|out| Ok(parse_reply(&out.stdout, out.stderr.as_bytes(), out.status)?));
        match sent {
            Ok(_) => self.log(
                Level::Info,
                format!(
                    "sent the dictionary to the server ({} bytes as {})",
                    d.bytes().len(),
                    packed.len()
                ),
            ),
            Err(e) => self.log(
                Level::Warn,
                format!("cannot send the dictionary to the server: {e}"),
            ),
        }
    }

    /// Whether this run takes claim `c` (made by installation `me` or by
    /// none, or any with `adopt_claims`); says why it leaves one alone.
    fn may_take(&self, c: &RemoteClaim, me: &str) -> bool {
        if self.options.adopt_claims || c.belongs_to(me) {
            return true;
        }
        self.log(
            Level::Warn,
            format!(
                "claim {} ({} bytes) was made by another mailhaul installation ({}) \
                 and is left on the server for it to deliver; if that installation is \
                 gone for good, `mailhaul fetch --adopt-claims` takes it over",
                c.shown(),
                c.size,
                c.owner().unwrap_or_default()
            ),
        );
        false
    }

    /// Connects, telling the watcher about a changed or revoked host key.
    fn connect(&self, compress: bool) -> Result<Connection, FetchError> {
        connect_ssh(self.account, compress, &*self.options.prompter).map_err(|e| {
            let key = match &e {
                SshError::HostKeyChanged(c) => Some(HostKeyInfo {
                    host: c.host.clone(),
                    port: c.port,
                    key_type: c.key_type.clone(),
                    fingerprint: c.got.clone(),
                }),
                SshError::HostKeyRevoked {
                    host,
                    port,
                    fingerprint,
                    ..
                } => Some(HostKeyInfo {
                    host: host.clone(),
                    port: *port,
                    key_type: String::new(),
                    fingerprint: fingerprint.clone(),
                }),
                _ => None,
            };
            if let Some(key) = key {
                self.emit(FetchEvent::HostKeyChanged {
                    key,
                    detail: e.to_string(),
                });
            }
            FetchError::from(e)
        })
    }

    /// Removes downloads cut short by an earlier run that the journal does
    /// not know (their claims are still on the server, since nothing is
    /// released before it is verified); those it knows are resumed.
    fn drop_partials(&self, ws: &Workspace, journal: &Journal) -> Result<(), FetchError> {
        let dir = ws.staging_dir();
        let entries = std::fs::read_dir(&dir).map_err(|e| FetchError::local("staging", e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "part")
                && !path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|id| journal.has_partial(id))
            {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }

    /// Download (unless already staged; from `sent` when the claim step
    /// is already streaming it, compressed with `dictionary` if that is
    /// given; filed while it arrives, see `download_filing`), deliver,
    /// release one claim. Delivered before the release, so that its messages reach the Maildir one
    /// remote step sooner (docs/push.md): the server copy still goes only
    /// once they are durable there and the journal says `delivered`
    /// (durable-before-release), and a run stopped between the two only
    /// releases it next time (exactly-once). `last`: no other claim follows
    /// in this fetch.
    #[allow(clippy::too_many_arguments)]
    fn process(
        &mut self,
        conn: &Connection,
        ws: &Workspace,
        journal: &mut Journal,
        remote: &RemoteClaim,
        method: Method,
        sent: Option<BufReader<ScriptStream<'_>>>,
        dictionary: Option<&Dictionary>,
        last: bool,
    ) -> Result<(), FetchError> {
        self.check_cancel()?;
        let id = remote.id();
        let staged = ws.staged_path(&id);
        let already = journal
            .get(&id)
            .is_some_and(|c| c.remote.sha256 == remote.sha256)
            && transfer::verify_staged(&staged, remote).unwrap_or(false);
        let filed = if already {
            None
        } else {
            self.download_filing(conn, ws, journal, remote, method, sent, dictionary)?
        };
        let c = journal.get(&id).cloned().expect("journalled above");
        let channel = match filed {
            Some(Prefiled { report, channel }) => {
                self.delivered(journal, &c, ws.staged_path(&id), report)?;
                channel
            }
            None => {
                self.deliver(ws, journal, &c, already)?;
                None
            }
        };
        // The connection's last step when it closes after this fetch (no
        // dictionary to send up after it): sent without its answer.
        if last && self.closes_after && !self.dictionary.upload {
            self.send_release(conn, journal, &c, channel)
        } else {
            self.release(conn, journal, remote, channel)
        }
    }

    /// Downloads a claim into a verified, journalled staging file while a
    /// delivery beside it files the messages as they arrive, publishing
    /// none until the staged file is verified, durable and journalled
    /// (the gate). While the messages are published, the release's channel
    /// is opened (its round trip hidden; the release itself still follows
    /// the delivery). The delivery's report once the gate opened; `None` when
    /// the download that fed it was not the one verified (a retry, a
    /// resume) or the delivery could not be set up: the caller then files
    /// the staged claim as before, since nothing was published.
    #[allow(clippy::too_many_arguments)]
    fn download_filing(
        &mut self,
        conn: &Connection,
        ws: &Workspace,
        journal: &mut Journal,
        remote: &RemoteClaim,
        method: Method,
        sent: Option<BufReader<ScriptStream<'_>>>,
        dictionary: Option<&Dictionary>,
    ) -> Result<Option<Prefiled>, FetchError> {
        let id = remote.id();
        let gate = PublishGate::default();
        let (to_delivery, pieces) = crossbeam_channel::bounded(prefile::TEE_PIECES);
        let tee = Tee::new(to_delivery);
        let (destination, events, account) = (self.destination, self.events, &self.account.name);
        let stable = StableId {
            time: claim_time(&id),
            claim: id.clone(),
            resumed: false,
        };
        let input = ws.staged_path(&id).display().to_string();
        std::thread::scope(|scope| {
            let filing = scope.spawn(|| {
                let mut filer =
                    Filer::new(&destination.filter, &destination.maildir, Some(stable)).ok()?;
                let messages =
                    MboxSplitter::new(TeeInput::new(pieces, &gate), destination.filter.format);
                Some(file_messages_behind(
                    messages,
                    &input,
                    &mut filer,
                    &mut filing_progress(events, account),
                    Some(&gate),
                ))
            });
            let staged = self
                .download(
                    conn,
                    ws,
                    journal,
                    remote,
                    method,
                    sent,
                    dictionary,
                    Some(&tee),
                )
                .and_then(|()| {
                    journal
                        .staged(remote)
                        .map_err(|e| FetchError::local("journal", e))
                });
            tee.end();
            let open = staged.is_ok() && tee.verified() && self.check_cancel().is_ok();
            let opening = if open {
                crash_point("verified");
                self.emit(FetchEvent::Stage(Stage::Delivering));
                gate.open(ws.staged_path(&id));
                Some(scope.spawn(|| conn.open_channel()))
            } else {
                gate.shut();
                None
            };
            let report = filing
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let channel = opening.and_then(|o| {
                o.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    .ok()
            });
            staged.map(|()| {
                report
                    .filter(|_| open)
                    .map(|report| Prefiled { report, channel })
            })
        })
    }

    /// Downloads one claim into a verified staging file: from the start, or
    /// from where an interrupted download left off (the journal's partial
    /// record of this very claim; the server sends only the rest after it
    /// checked the kept prefix's sha256, and the whole file is verified).
    #[allow(clippy::too_many_arguments)]
    fn download(
        &mut self,
        conn: &Connection,
        ws: &Workspace,
        journal: &mut Journal,
        remote: &RemoteClaim,
        method: Method,
        sent: Option<BufReader<ScriptStream<'_>>>,
        dictionary: Option<&Dictionary>,
        tee: Option<&Tee>,
    ) -> Result<(), FetchError> {
        self.emit(FetchEvent::Stage(Stage::Transferring));
        let id = remote.id();
        let partial = ws.partial_path(&id);
        let prefix = match journal.resumable(remote) {
            Some(len) if len > 0 && len < remote.size => transfer::Prefix::read(&partial, len)
                .map_err(|e| FetchError::local(&format!("staging {}", partial.display()), e))?,
            _ => None,
        };
        let offset = prefix.as_ref().map_or(0, |p| p.len());
        // A resumed stream is not the claim's beginning: its claim is filed
        // once it is staged.
        let tee = tee.filter(|_| prefix.is_none());
        let feed = |piece: &[u8]| {
            if let Some(tee) = tee {
                tee.feed(piece);
            }
        };
        let prefix_sha = prefix.as_ref().map(|p| p.sha256()).unwrap_or_default();
        if let Some(p) = &prefix {
            self.log(
                Level::Info,
                format!(
                    "resuming the download of {} at byte {} of {} (kept from an interrupted run)",
                    remote.shown(),
                    p.len(),
                    remote.size
                ),
            );
        } else {
            let _ = std::fs::remove_file(&partial);
        }
        // The claim step's own stream, unless a kept prefix asks for a
        // resumed one (a claim made in this run has none).
        let mut with = None;
        let mut stream = match sent {
            Some(stream) if prefix.is_none() => {
                with = dictionary;
                stream
            }
            _ => {
                let (name, level) = method.send_args();
                let offset_arg = offset.to_string();
                BufReader::new(conn.start_script(
                    claim::remote_script(),
                    &[
                        b"send".as_slice(),
                        remote.path.as_bytes(),
                        name.as_bytes(),
                        level.as_bytes(),
                        offset_arg.as_bytes(),
                        prefix_sha.as_bytes(),
                    ],
                )?)
            }
        };
        // A server that stalls mid-stream with the link up must not hold
        // a stop (a quit, SIGTERM of `watch`) for the whole idle limit.
        stream
            .get_mut()
            .stop_on(std::sync::Arc::clone(&self.options.cancel));
        let started = Instant::now();
        let (raw_before, payload_before, raw_total, socket_base) = (
            self.raw_before,
            self.payload_before,
            self.raw_total,
            self.socket_base,
        );
        let mut halfway_crash = false;
        let mut report = |raw: u64, payload: u64| {
            let progress = TransferProgress {
                raw_done: raw_before + raw,
                raw_total,
                payload_bytes: payload_before + payload,
                socket_bytes: conn
                    .socket_bytes_received()
                    .unwrap_or(0)
                    .saturating_sub(socket_base),
            };
            let _ = self.events.send(Event::Fetch {
                account: self.account.name.clone(),
                event: FetchEvent::Progress(progress),
            });
            if !halfway_crash && raw * 2 >= remote.size && raw < remote.size {
                halfway_crash = true;
                crash_point("mid-transfer");
            }
        };
        let staged = transfer::stage(
            Cancellable {
                inner: &mut stream,
                cancel: &self.options.cancel,
            },
            transfer::Download {
                method,
                claim: remote,
                partial: &partial,
                staged: &ws.staged_path(&id),
                resume: prefix,
                dictionary: with.map(Dictionary::bytes),
                tee: tee.is_some().then_some(&feed as &transfer::Tee),
            },
            // A crash test needs the mid-transfer point reached at any speed.
            if std::env::var_os(CRASH_ENV).is_some() {
                Duration::ZERO
            } else {
                PROGRESS_EVERY
            },
            &mut report,
            &mut |len| journal.partial(remote, len),
        );
        // On a stop or a local failure, dropping the channel abandons the
        // rest of the stream; the claim stays on the server, and what
        // arrived stays in staging for the next run to continue from.
        if staged.is_err() && self.options.cancel.load(Ordering::Relaxed) {
            stream.into_inner().abandon();
            return Err(FetchError::Cancelled);
        }
        if let Err(e @ TransferError::Local { .. }) = staged {
            return Err(FetchError::Staging { source: e });
        }
        let elapsed = started.elapsed();
        let status = stream.into_inner().finish();
        // The claim on the server is not the one whose prefix was kept:
        // nothing was sent, and the download starts over from byte 0.
        if offset > 0 {
            if let Ok(s) = &status {
                if !s.success() && s.stderr.contains("error prefix-changed") {
                    self.log(
                        Level::Warn,
                        format!(
                            "the server's {} does not begin with the {offset} bytes kept from an \
                             interrupted download ({}); downloading it from the start",
                            remote.shown(),
                            claim::escape_server_text(s.stderr.trim().as_bytes())
                        ),
                    );
                    let _ = std::fs::remove_file(&partial);
                    journal
                        .partial(remote, 0)
                        .map_err(|e| FetchError::local("journal", e))?;
                    return self.download(conn, ws, journal, remote, method, None, None, None);
                }
            }
        }
        // Made with the dictionary and not right: the server's copy is
        // not the client's (or the stream broke); the claim is still on
        // the server, and is fetched again without it.
        if let Some(d) = with {
            let failure = match (&staged, &status) {
                (Ok(_), Ok(s)) if s.success() => None,
                (Err(e), _) => Some(e.to_string()),
                (_, Ok(s)) => Some(claim::escape_server_text(s.stderr.trim().as_bytes())),
                (_, Err(e)) => Some(e.to_string()),
            };
            match failure {
                Some(why) => {
                    self.log(
                        Level::Warn,
                        format!(
                            "the transfer of {} with the dictionary failed ({why}); fetching it \
                             without, and sending the dictionary again",
                            remote.shown()
                        ),
                    );
                    self.dictionary.upload = true;
                    return self.download(conn, ws, journal, remote, method, None, None, None);
                }
                None => {
                    self.dictionary.used = true;
                    if let Ok(t) = &staged {
                        match dictionary::record(ws.dir(), d.sha256(), t.raw, t.payload) {
                            Ok(due) => self.dictionary.retrain |= due,
                            Err(e) => self.log(
                                Level::Warn,
                                format!("cannot record the dictionary's ratio: {e}"),
                            ),
                        }
                    }
                }
            }
        }
        let transferred = match (staged, status) {
            (Ok(t), Ok(s)) if s.success() => t,
            (Ok(_), Ok(s)) => {
                let _ = std::fs::remove_file(ws.staged_path(&id));
                return Err(FetchError::ServerSend {
                    path: remote.shown(),
                    stderr: claim::escape_server_text(s.stderr.trim().as_bytes()),
                });
            }
            (Err(e), status) => {
                let server = match status {
                    Ok(s) if !s.success() => format!(
                        " (server: {})",
                        claim::escape_server_text(s.stderr.trim().as_bytes())
                    ),
                    _ => String::new(),
                };
                let source = match e {
                    TransferError::Io(e) => DownloadError::BrokeOff {
                        path: remote.shown(),
                        host: conn.host().to_string(),
                        source: e,
                    },
                    other => DownloadError::Transfer(other),
                };
                return Err(FetchError::Download { server, source });
            }
            (Ok(_), Err(e)) => return Err(e.into()),
        };
        self.emit(FetchEvent::Stage(Stage::Verifying));
        let level = match method {
            _ if with.is_some() => Some(self.dictionary.level),
            Method::Zstd(l) | Method::ZstdAdapt(l) => Some(l),
            _ => None,
        };
        if let Err(e) = link::record(
            ws.dir(),
            level,
            transferred.payload,
            elapsed,
            SystemTime::now(),
        ) {
            self.log(Level::Warn, format!("cannot record the link's rate: {e}"));
        }
        if let Some(tee) = tee {
            tee.mark_verified();
        }
        self.raw_before += transferred.resumed_from + transferred.raw;
        self.payload_before += transferred.payload;
        self.summary.raw_bytes += transferred.raw;
        self.summary.payload_bytes += transferred.payload;
        self.socket_bytes = self.socket_received(conn);
        self.summary.socket_bytes = self.socket_bytes;
        Ok(())
    }

    /// Deletes the server copy of a verified, journalled claim (on
    /// `channel` when one was opened for it).
    fn release(
        &mut self,
        conn: &Connection,
        journal: &mut Journal,
        remote: &RemoteClaim,
        channel: Option<OpenChannel>,
    ) -> Result<(), FetchError> {
        let id = remote.id();
        if journal.get(&id).is_some_and(|c| c.released) {
            return Ok(());
        }
        let args: [&[u8]; 2] = [b"release", remote.path.as_bytes()];
        match channel {
            Some(channel) => script_on(conn, channel, &args)?,
            None => script(conn, &args)?,
        };
        journal
            .released(&id)
            .map_err(|e| FetchError::local("journal", e))?;
        crash_point("released");
        Ok(())
    }

    /// Sends the deletion of the server copy of a delivered claim and closes
    /// the connection without waiting for the answer: the round trip and the
    /// server's removal and directory sync are off the fetch's time. The
    /// journal says `release-sent` first; the next fetch settles it against
    /// its list of the server's claims ([`Run::settle_sent_releases`]), so a
    /// request that never arrived costs one release step then, and the
    /// claim is never fetched again. `conn` is closed afterwards.
    fn send_release(
        &mut self,
        conn: &Connection,
        journal: &mut Journal,
        claim: &JournalClaim,
        channel: Option<OpenChannel>,
    ) -> Result<(), FetchError> {
        journal
            .release_sent(&claim.id, &self.spool)
            .map_err(|e| FetchError::local("journal", e))?;
        crash_point("release-sent");
        let args: [&[u8]; 2] = [b"release", claim.remote.path.as_bytes()];
        let sent = match channel {
            Some(c) => Ok(c),
            None => conn.open_channel(),
        }
        .and_then(|c| conn.run_script_detached(c, claim::remote_script(), &args));
        // Filed either way: a release that did not go out is the next
        // fetch's to send, not this fetch's failure.
        match sent {
            Ok(()) => self.log(
                Level::Info,
                format!(
                    "sent the release of claim {} (the next fetch sees it done)",
                    claim.remote.shown()
                ),
            ),
            Err(e) => self.log(
                Level::Warn,
                format!(
                    "could not send the release of claim {} ({e}); its messages are filed, \
                     and the next fetch releases it",
                    claim.remote.shown()
                ),
            ),
        }
        crash_point("released");
        Ok(())
    }

    /// Settles the releases an earlier fetch sent without their answer
    /// (`sent`, emptied here) against `listed`, the server's claims of
    /// `spool` just listed: one still listed is released now (its request
    /// was lost), one not listed is gone. A claim of another spool (the
    /// account's spool changed since) is released now, which is harmless
    /// when it is gone. Either way it is done: none is fetched again.
    fn settle_sent_releases(
        &mut self,
        conn: &Connection,
        journal: &mut Journal,
        sent: &mut Vec<JournalClaim>,
        spool: &str,
        listed: &[RemoteClaim],
    ) -> Result<(), FetchError> {
        for c in sent.drain(..) {
            let listed_here = c.release_sent.as_deref() == Some(spool);
            if listed_here && !listed.iter().any(|l| l.path == c.remote.path) {
                journal
                    .released(&c.id)
                    .map_err(|e| FetchError::local("journal", e))?;
            } else {
                self.emit(FetchEvent::Stage(Stage::Recovering));
                self.release(conn, journal, &c.remote, None)?;
            }
        }
        Ok(())
    }

    /// Splits, filters and files a staged claim; names are stable per
    /// (claim, index), so a delivery `resumed` after a crash skips what is
    /// already filed. A claim downloaded in this run was never delivered
    /// (a claim whose delivery began stays in the journal until it is
    /// released, and the journal's claims are finished before anything is
    /// downloaded): its delivery lists no folder.
    fn deliver(
        &mut self,
        ws: &Workspace,
        journal: &mut Journal,
        c: &JournalClaim,
        resumed: bool,
    ) -> Result<(), FetchError> {
        self.check_cancel()?;
        self.emit(FetchEvent::Stage(Stage::Delivering));
        let staged = ws.staged_path(&c.id);
        let file = std::fs::File::open(&staged)
            .map_err(|e| FetchError::local(&format!("staged claim {}", staged.display()), e))?;
        let stable = StableId {
            time: claim_time(&c.id),
            claim: c.id.clone(),
            resumed,
        };
        let mut filer = Filer::new(
            &self.destination.filter,
            &self.destination.maildir,
            Some(stable),
        )?;
        let report = file_messages(
            MboxSplitter::new(
                std::io::BufReader::new(file),
                self.destination.filter.format,
            ),
            &staged.display().to_string(),
            &mut filer,
            &mut filing_progress(self.events, &self.account.name),
        );
        self.delivered(journal, c, staged, report)
    }

    /// Counts a staged claim's filing, keeps the claim undelivered while
    /// a message of it is only in the staged file, else journals it
    /// delivered and removes the staged file.
    fn delivered(
        &mut self,
        journal: &mut Journal,
        c: &JournalClaim,
        staged: PathBuf,
        report: FilingReport,
    ) -> Result<(), FetchError> {
        self.summary.messages += report.delivered_total();
        for (folder, n) in &report.delivered {
            *self.summary.folders.entry(folder.clone()).or_default() += n;
        }
        self.summary.undelivered += report.undelivered.len() as u64;
        for u in &report.undelivered {
            self.log(Level::Warn, u.to_string());
        }
        if let Some(e) = report.read_error {
            return Err(FetchError::ReadStaged { staged, reason: e });
        }
        // A message neither filed nor quarantined exists only in the staged
        // claim: keep it (and leave the claim undelivered in the journal) so
        // that the next fetch delivers it; stable names skip the rest.
        let unkept = report
            .undelivered
            .iter()
            .filter(|u| u.kept.is_none())
            .count();
        if unkept > 0 {
            return Err(FetchError::Unkept {
                count: unkept,
                staged,
            });
        }
        journal
            .delivered(&c.id, report.messages)
            .map_err(|e| FetchError::local("journal", e))?;
        std::fs::remove_file(&staged).map_err(|e| FetchError::local("staging", e))?;
        crash_point("delivered");
        Ok(())
    }
}

/// A claim filed while it downloaded, and the channel opened for its
/// release meanwhile (if that worked).
struct Prefiled {
    report: FilingReport,
    channel: Option<OpenChannel>,
}

/// What filing a claim reports: each event on the channel, and the crash
/// tests' `mid-delivery` point at the first one (a message published).
fn filing_progress<'a>(events: &'a Sender<Event>, account: &'a str) -> impl FnMut(FetchEvent) + 'a {
    let mut filed_events = 0u64;
    move |event| {
        let _ = events.send(Event::Fetch {
            account: account.to_string(),
            event,
        });
        filed_events += 1;
        if filed_events == 1 {
            crash_point("mid-delivery");
        }
    }
}

/// A claim stream whose `send` line named this path (and said whether it
/// uses the dictionary): the rest of the stream is that claim's compressed
/// bytes.
type Sent<'c> = Option<(String, DictionaryAnswer, BufReader<ScriptStream<'c>>)>;

/// Reads the claim step's records up to its `ok` line; then, if the script
/// goes on with `send HEXPATH`, returns that claim's path with the stream
/// positioned at its bytes. An `error` line, or output that ends without
/// `ok`, is the script's failure (with its stderr and exit status).
fn read_reply<'c>(
    conn: &Connection,
    mut reader: BufReader<ScriptStream<'c>>,
) -> Result<(Vec<(String, String)>, Sent<'c>), FetchError> {
    let io = |source| SshError::Io {
        action: "reading the claim's reply",
        host: conn.host().to_string(),
        source,
    };
    let mut text = Vec::new();
    let finished = loop {
        let start = text.len();
        if reader.read_until(b'\n', &mut text).map_err(io)? == 0 {
            break false;
        }
        let line = text[start..].trim_ascii_end();
        if line == b"ok" {
            break true;
        }
        if line.starts_with(b"error ") {
            break false;
        }
    };
    if !finished {
        let end = reader.into_inner().finish()?;
        parse_reply(&text, end.stderr.as_bytes(), end.status)?;
        return Err(ScriptError {
            kind: ScriptErrorKind::Failed,
            message: "the claim step ended without a result".into(),
        }
        .into());
    }
    let records = parse_reply(&text, b"", 0)?;
    let mut next = Vec::new();
    reader.read_until(b'\n', &mut next).map_err(io)?;
    let send = next
        .strip_prefix(b"send ")
        .and_then(|rest| std::str::from_utf8(rest.trim_ascii_end()).ok())
        .and_then(|rest| {
            let (hex, word) = rest.split_once(' ').unwrap_or((rest, ""));
            let answer = match word {
                "" => DictionaryAnswer::NotUsed,
                "dict" => DictionaryAnswer::Used,
                "dict-missing" => DictionaryAnswer::Missing,
                _ => return None,
            };
            Some((String::from_utf8(unhex(hex)?).ok()?, answer))
        });
    match send {
        Some((path, answer)) => Ok((records, Some((path, answer, reader)))),
        None if next.is_empty() => {
            let end = reader.into_inner().finish()?;
            if end.success() {
                Ok((records, None))
            } else {
                Err(ScriptError {
                    kind: ScriptErrorKind::Failed,
                    message: format!(
                        "the claim step said ok but exited with {}: {}",
                        end.status,
                        claim::escape_server_text(end.stderr.trim().as_bytes())
                    ),
                }
                .into())
            }
        }
        None => Err(ScriptError {
            kind: ScriptErrorKind::Failed,
            message: format!(
                "unexpected line after the claim's reply: {}",
                claim::escape_server_text(next.trim_ascii_end())
            ),
        }
        .into()),
    }
}

/// A reader that fails once the fetch is asked to stop, so a long download
/// ends promptly (the claim stays on the server).
struct Cancellable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped on request"));
        }
        self.inner.read(buf)
    }
}
