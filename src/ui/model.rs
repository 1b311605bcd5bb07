//! What the dashboard knows, built only from the config and engine events:
//! per-account fetch, link, outbox and forward state, the log, the fetch
//! history and the pending host-key questions. Pure data; no terminal, no
//! I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Config;
pub use crate::engine::event::PastFetch;
use crate::engine::event::{
    Event, FetchEvent, FetchFailure, FetchSummary, HostKeyInfo, Level, LinkState, OutboxCounts,
    Stage, TransferProgress, TunnelEvent, TunnelState, TunnelStats,
};
use crate::exit::Exit;
use crate::ui::stats::Digest;

/// Log lines kept for the log panel; older ones are dropped.
pub const LOG_CAPACITY: usize = 1000;
/// Per-second throughput samples kept for the sparkline.
const SPARK_CAPACITY: usize = 600;
/// The window the current throughput is averaged over.
const RATE_WINDOW: Duration = Duration::from_secs(3);
/// Recent errors kept per account for the details overlay.
pub const ERRORS_KEPT: usize = 5;

/// When something happened: a monotonic instant for durations and the wall
/// clock (seconds since the Unix epoch) for the log and the history.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock seconds since the Unix epoch.
    pub unix_secs: u64,
}

impl Moment {
    /// The current moment.
    pub fn now() -> Moment {
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Moment {
            instant: Instant::now(),
            unix_secs,
        }
    }
}

/// Everything the panels draw.
#[derive(Debug)]
pub struct Model {
    /// When the dashboard started: the wall clock that ages and chart
    /// ranges are measured against (`now` is this plus monotonic time).
    pub start: Moment,
    /// The accounts, in config order.
    pub accounts: Vec<AccountView>,
    /// Recent log lines, oldest first.
    pub log: VecDeque<LogLine>,
    /// Past fetches, oldest first (the history file, then this session's).
    pub history: Vec<PastFetch>,
    /// Host-key questions and refusals waiting for the user, oldest first.
    pub host_keys: VecDeque<HostKeyPrompt>,
}

/// One account as configured and as last reported.
#[derive(Debug)]
pub struct AccountView {
    /// The account's name.
    pub name: String,
    /// Host (or ~/.ssh/config alias).
    pub host: String,
    /// Login, when configured.
    pub user: Option<String>,
    /// SSH port, when configured.
    pub port: Option<u16>,
    /// Remote spool path, when configured.
    pub spool_path: Option<String>,
    /// The fetch running now, or the last one.
    pub fetch: FetchView,
    /// When the last fetch ended and how.
    pub last: Option<LastFetch>,
    /// The last spool-size check.
    pub spool: Option<SpoolCheck>,
    /// The SMTP forward.
    pub forward: ForwardView,
    /// The latest errors (failed fetches, forward errors, error log lines),
    /// oldest first, at most [`ERRORS_KEPT`].
    pub errors: VecDeque<RecentError>,
    /// Its figures from the history (kept up to date by [`Model::apply`]
    /// and [`Model::refresh_totals`]).
    pub digest: Digest,
    /// How the engine keeps its link to the server, once it said
    /// (`Event::Link`).
    pub link: Option<LinkView>,
    /// Its outbox, once the engine counted it (`Event::Outbox`).
    pub outbox: Option<OutboxCounts>,
}

/// What keeps an account's link to its server, as the engine last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    /// The state.
    pub state: LinkState,
    /// When it began, in wall-clock seconds since the Unix epoch.
    pub since: u64,
}

/// Whether an outbox has anything to show: mail waiting, going, sent today
/// or refused.
pub fn outbox_busy(c: &OutboxCounts) -> bool {
    c.queued + c.sending + c.sent_today + c.failed > 0
}

/// An error an account met, for its details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentError {
    /// When, in wall-clock seconds since the Unix epoch.
    pub unix_secs: u64,
    /// What went wrong, as the engine said it.
    pub message: String,
}

impl AccountView {
    fn note_error(&mut self, unix_secs: u64, message: String) {
        // The engine often says one failure twice (event and log line).
        if self.errors.back().is_some_and(|e| e.message == message) {
            return;
        }
        if self.errors.len() == ERRORS_KEPT {
            self.errors.pop_front();
        }
        self.errors.push_back(RecentError { unix_secs, message });
    }
}

/// The outcome of the last finished fetch of an account.
#[derive(Debug, Clone)]
pub struct LastFetch {
    /// When it ended, or when the dashboard started for a fetch read from
    /// the history file (`age_then` holds its age at that moment).
    pub at: Instant,
    /// Age at `at`: zero for fetches of this session; for a fetch from the
    /// history file, how long before the start it ended (an `Instant` cannot
    /// reach back before the machine booted).
    pub age_then: Duration,
    /// When it ended, in wall-clock seconds since the Unix epoch.
    pub unix_secs: u64,
    /// How it ended.
    pub outcome: Outcome,
}

impl LastFetch {
    /// How long ago it ended.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.at) + self.age_then
    }
}

/// How a fetch ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Mail was fetched and filed.
    Done(FetchSummary),
    /// It failed; the message says why and where the mail is.
    Failed {
        /// The error class.
        exit: Exit,
        /// The engine's message.
        message: String,
    },
}

/// A spool-size check of the server.
#[derive(Debug, Clone, Copy)]
pub struct SpoolCheck {
    /// Bytes waiting in the spool.
    pub bytes: u64,
    /// Messages waiting, when counted.
    pub messages: Option<u64>,
}

/// The state of the fetch running now or of the last one.
#[derive(Debug, Default)]
pub struct FetchView {
    /// Current stage; `None` before the first fetch.
    pub stage: Option<Stage>,
    /// The last working stage entered (not `Done`/`Failed`): where a failed
    /// fetch stopped.
    pub reached: Option<Stage>,
    /// When the fetch started.
    pub started: Option<Instant>,
    /// Each working stage entered, with when, in order: the stage track
    /// shows how long each took.
    pub stages: Vec<(Stage, Instant)>,
    /// When it ended.
    pub ended: Option<Instant>,
    /// Latest transfer counters.
    pub progress: TransferProgress,
    /// Throughput history of the transfer.
    pub rate: RateTracker,
    /// Messages filed per folder, in the order folders first appeared.
    pub filed: Vec<(String, u64)>,
    /// The error that ended the fetch.
    pub error: Option<(Exit, String)>,
    /// The summary of a finished fetch.
    pub summary: Option<FetchSummary>,
}

impl FetchView {
    /// Whether a fetch is running (started and not ended).
    pub fn is_active(&self) -> bool {
        matches!(self.stage, Some(s) if s != Stage::Done && s != Stage::Failed)
    }
}

/// Raw-byte throughput: a short window for the current rate and per-second
/// totals for the sparkline.
#[derive(Debug, Default)]
pub struct RateTracker {
    samples: VecDeque<(Instant, u64)>,
    start: Option<Instant>,
    /// Raw bytes received in each whole second since the transfer began
    /// (the last `SPARK_CAPACITY` seconds).
    pub per_second: VecDeque<u64>,
    first_second: u64,
}

impl RateTracker {
    fn record(&mut self, at: Instant, raw_done: u64) {
        let start = *self.start.get_or_insert(at);
        let previous = self.samples.back().map_or(0, |&(_, raw)| raw);
        let delta = raw_done.saturating_sub(previous);
        self.samples.push_back((at, raw_done));
        while self.samples.len() > 2
            && at.duration_since(self.samples[0].0) > RATE_WINDOW
            && at.duration_since(self.samples[1].0) >= RATE_WINDOW
        {
            self.samples.pop_front();
        }
        let second = at.duration_since(start).as_secs();
        while self.first_second + (self.per_second.len() as u64) <= second {
            self.per_second.push_back(0);
        }
        let index = (second - self.first_second) as usize;
        self.per_second[index] += delta;
        while self.per_second.len() > SPARK_CAPACITY {
            self.per_second.pop_front();
            self.first_second += 1;
        }
    }

    /// The fastest whole second so far (the second under way is left out
    /// while there are whole ones), in raw bytes.
    pub fn peak_per_sec(&self) -> Option<u64> {
        let whole = self.per_second.len().saturating_sub(1).max(1);
        self.per_second.iter().take(whole).copied().max()
    }

    /// Raw bytes per second from the first counters to the last.
    pub fn average_per_sec(&self) -> Option<f64> {
        let start = self.start?;
        let &(last, raw) = self.samples.back()?;
        let secs = last.duration_since(start).as_secs_f64();
        (secs > 0.0).then(|| raw as f64 / secs)
    }

    /// The second since the transfer began that `per_second[0]` counts.
    pub fn first_second(&self) -> u64 {
        self.first_second
    }

    /// When the last counters arrived.
    pub fn last_sample(&self) -> Option<Instant> {
        self.samples.back().map(|&(at, _)| at)
    }

    /// Raw bytes per second over the last few seconds; `None` until two
    /// samples are apart in time.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        let (t0, r0) = *self.samples.front()?;
        let (t1, r1) = *self.samples.back()?;
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs > 0.0).then(|| r1.saturating_sub(r0) as f64 / secs)
    }
}

/// The SMTP forward of one account.
#[derive(Debug)]
pub struct ForwardView {
    /// Configured listen address.
    pub listen: String,
    /// Configured target, if not the default (mail host port 25).
    pub target: Option<String>,
    /// Reported state.
    pub state: TunnelState,
    /// Reported counters.
    pub stats: TunnelStats,
    /// The last error reported.
    pub last_error: Option<String>,
}

/// A log line.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Wall-clock seconds since the Unix epoch.
    pub unix_secs: u64,
    /// Severity.
    pub level: Level,
    /// The account it concerns.
    pub account: Option<String>,
    /// The text.
    pub message: String,
}

/// A host-key question or refusal for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyPrompt {
    /// The account whose fetch met the key.
    pub account: String,
    /// The key.
    pub key: HostKeyInfo,
    /// For a changed or revoked key, the engine's explanation: a refusal,
    /// not a question.
    pub refusal: Option<String>,
}

/// How long before its `Ended` event a fetch found in the history file may
/// have ended and still be taken for that fetch.
const SAME_FETCH_SECS: u64 = 60;

/// Whether two summaries are of one fetch, as far as the history file
/// keeps it.
fn same_fetch(a: &FetchSummary, b: &FetchSummary) -> bool {
    (a.messages, a.raw_bytes, a.payload_bytes, a.socket_bytes)
        == (b.messages, b.raw_bytes, b.payload_bytes, b.socket_bytes)
}

/// An account's last fetch as the history file tells it, if it has a time.
fn last_from_history(history: &[PastFetch], account: &str, start: Moment) -> Option<LastFetch> {
    let past = history
        .iter()
        .rev()
        .find(|p| p.account == account && p.finished_unix.is_some())?;
    let unix_secs = past.finished_unix?;
    Some(LastFetch {
        at: start.instant,
        age_then: Duration::from_secs(start.unix_secs.saturating_sub(unix_secs)),
        unix_secs,
        outcome: Outcome::Done(past.summary.clone()),
    })
}

impl Model {
    /// The model for a config's accounts, with the history read at
    /// `start`.
    pub fn new(config: &Config, history: Vec<PastFetch>, start: Moment) -> Model {
        let accounts = config
            .accounts
            .iter()
            .map(|a| AccountView {
                name: a.name.clone(),
                host: a.host.clone(),
                user: a.user.clone(),
                port: a.port,
                spool_path: a.spool.clone(),
                fetch: FetchView::default(),
                last: last_from_history(&history, &a.name, start),
                spool: None,
                forward: ForwardView {
                    listen: a.forward.listen.get_ref().clone(),
                    target: a.forward.target.clone(),
                    state: TunnelState::Off,
                    stats: TunnelStats::default(),
                    last_error: None,
                },
                errors: VecDeque::new(),
                digest: Digest::of(&history, &a.name),
                link: None,
                outbox: None,
            })
            .collect();
        Model {
            start,
            accounts,
            log: VecDeque::new(),
            history,
            host_keys: VecDeque::new(),
        }
    }

    /// The wall clock at monotonic `now`, in seconds since the Unix epoch.
    pub fn unix_at(&self, now: Instant) -> u64 {
        self.start.unix_secs + now.saturating_duration_since(self.start.instant).as_secs()
    }

    /// The index of an account by name.
    pub fn account_index(&self, name: &str) -> Option<usize> {
        self.accounts.iter().position(|a| a.name == name)
    }

    /// Brings every account's time-bound totals up to `now_unix` (a no-op
    /// within the minute they were computed in): called before a frame.
    pub fn refresh_totals(&mut self, now_unix: u64, utc_offset: i64) {
        for account in &mut self.accounts {
            account
                .digest
                .refresh_totals(&self.history, now_unix, utc_offset);
        }
    }

    /// Records how the engine keeps an account's link (since `since`,
    /// seconds since the epoch); returns whether anything shown changed.
    fn set_link(&mut self, account: &str, state: LinkState, since: u64) -> bool {
        let Some(i) = self.account_index(account) else {
            return false;
        };
        let link = Some(LinkView { state, since });
        if self.accounts[i].link == link {
            return false;
        }
        self.accounts[i].link = link;
        true
    }

    /// The history file as it is now (another mailhaul appended to it):
    /// it replaces the history, the digests are rebuilt, and an account
    /// whose newest fetch there is newer than its last one takes it as its
    /// last. Returns whether anything changed.
    fn replace_history(&mut self, history: Vec<PastFetch>, at: Moment) -> bool {
        if history == self.history {
            return false;
        }
        self.history = history;
        for account in &mut self.accounts {
            account.digest = Digest::of(&self.history, &account.name);
            if let Some(newer) = last_from_history(&self.history, &account.name, at) {
                if account
                    .last
                    .as_ref()
                    .is_none_or(|l| newer.unix_secs > l.unix_secs)
                {
                    account.last = Some(newer);
                }
            }
        }
        true
    }

    /// Records an account's outbox counts; returns whether they changed.
    fn set_outbox(&mut self, account: &str, counts: OutboxCounts) -> bool {
        let Some(i) = self.account_index(account) else {
            return false;
        };
        if self.accounts[i].outbox == Some(counts) {
            return false;
        }
        self.accounts[i].outbox = Some(counts);
        true
    }

    /// Whether any account is fetching.
    pub fn any_fetch_active(&self) -> bool {
        self.accounts.iter().any(|a| a.fetch.is_active())
    }

    /// Applies one engine event; returns whether anything shown changed.
    /// Events about accounts that are not configured are ignored.
    pub fn apply(&mut self, event: Event, at: Moment) -> bool {
        match event {
            // Debug detail would drown what a user watches for.
            Event::Log {
                level: Level::Debug,
                ..
            } => false,
            Event::Log {
                level,
                account,
                message,
            } => {
                if level == Level::Error {
                    if let Some(i) = account.as_deref().and_then(|a| self.account_index(a)) {
                        self.accounts[i].note_error(at.unix_secs, message.clone());
                    }
                }
                if self.log.len() == LOG_CAPACITY {
                    self.log.pop_front();
                }
                self.log.push_back(LogLine {
                    unix_secs: at.unix_secs,
                    level,
                    account,
                    message,
                });
                true
            }
            Event::Fetch { account, event } => self.apply_fetch(&account, event, at),
            Event::Link {
                account,
                state,
                since,
            } => self.set_link(&account, state, since),
            Event::Outbox { account, counts } => self.set_outbox(&account, counts),
            Event::History(history) => self.replace_history(history, at),
            Event::Tunnel { account, event } => {
                let Some(i) = self.account_index(&account) else {
                    return false;
                };
                let view = &mut self.accounts[i];
                let forward = &mut view.forward;
                match event {
                    TunnelEvent::State(state) => {
                        if state == forward.state {
                            return false;
                        }
                        if matches!(state, TunnelState::Listening(_)) {
                            forward.last_error = None;
                        }
                        forward.state = state;
                    }
                    TunnelEvent::Stats(stats) => {
                        if stats == forward.stats {
                            return false;
                        }
                        forward.stats = stats;
                    }
                    TunnelEvent::Error(message) => {
                        forward.last_error = Some(message.clone());
                        view.note_error(at.unix_secs, format!("forward: {message}"));
                    }
                }
                true
            }
        }
    }

    fn apply_fetch(&mut self, account: &str, event: FetchEvent, at: Moment) -> bool {
        let Some(i) = self.account_index(account) else {
            return false;
        };
        let view = &mut self.accounts[i];
        match event {
            FetchEvent::Stage(stage) => {
                if view.fetch.stage == Some(stage) {
                    return false;
                }
                if !view.fetch.is_active() {
                    view.fetch = FetchView {
                        started: Some(at.instant),
                        ..FetchView::default()
                    };
                }
                view.fetch.stage = Some(stage);
                if matches!(stage, Stage::Done | Stage::Failed) {
                    view.fetch.ended = Some(at.instant);
                } else {
                    view.fetch.reached = Some(stage);
                    view.fetch.stages.push((stage, at.instant));
                }
            }
            FetchEvent::SpoolSize { bytes, messages } => {
                view.spool = Some(SpoolCheck { bytes, messages });
            }
            FetchEvent::Progress(progress) => {
                if progress == view.fetch.progress {
                    return false;
                }
                view.fetch.progress = progress;
                view.fetch.rate.record(at.instant, progress.raw_done);
            }
            FetchEvent::Filed { folder, count } => {
                match view.fetch.filed.iter_mut().find(|(f, _)| *f == folder) {
                    Some(entry) => entry.1 = count,
                    None => view.fetch.filed.push((folder, count)),
                }
            }
            FetchEvent::Ended { summary, failure } => {
                if let Some(summary) = summary {
                    view.fetch.stage = Some(Stage::Done);
                    view.fetch.ended = Some(at.instant);
                    view.fetch.summary = Some(summary.clone());
                    view.last = Some(LastFetch {
                        at: at.instant,
                        age_then: Duration::ZERO,
                        unix_secs: at.unix_secs,
                        outcome: Outcome::Done(summary.clone()),
                    });
                    // The spool was claimed: what was counted before is gone.
                    view.spool = None;
                    let name = view.name.clone();
                    self.host_keys
                        .retain(|p| p.refusal.is_some() || p.account != name);
                    // The history file, read again after the fetch wrote
                    // to it, may have brought this fetch already.
                    let known = view.digest.entries.iter().rev().any(|&e| {
                        let p = &self.history[e];
                        p.finished_unix
                            .is_some_and(|t| t + SAME_FETCH_SECS >= at.unix_secs)
                            && same_fetch(&p.summary, &summary)
                    });
                    if !known {
                        self.history.push(PastFetch {
                            account: name.clone(),
                            finished_unix: Some(at.unix_secs),
                            summary,
                        });
                        view.digest = Digest::of(&self.history, &name);
                    }
                }
                if let Some(FetchFailure { class, message }) = failure {
                    let exit = Exit::from(class);
                    view.fetch.stage = Some(Stage::Failed);
                    view.fetch.ended = Some(at.instant);
                    view.fetch.error = Some((exit, message.clone()));
                    view.note_error(at.unix_secs, message.clone());
                    view.last = Some(LastFetch {
                        at: at.instant,
                        age_then: Duration::ZERO,
                        unix_secs: at.unix_secs,
                        outcome: Outcome::Failed { exit, message },
                    });
                    let name = view.name.clone();
                    self.host_keys
                        .retain(|p| p.refusal.is_some() || p.account != name);
                }
            }
            FetchEvent::HostKeyUnknown(key) => self.host_keys.push_back(HostKeyPrompt {
                account: account.to_string(),
                key,
                refusal: None,
            }),
            FetchEvent::HostKeyChanged { key, detail } => self.host_keys.push_back(HostKeyPrompt {
                account: account.to_string(),
                key,
                refusal: Some(detail),
            }),
        }
        true
    }
}
