//! `mailhaul` without a subcommand: the dashboard (`ui::run`) on the real
//! engine. [`LiveEngine`] turns the dashboard's requests into fetch workers
//! (one at a time per account), answers host-key questions through the
//! dashboard, runs one spool watcher per account (the periodic size check and
//! `auto_fetch`), and starts and stops the SMTP forwards (`engine::tunnel`).
//!
//! This is the one place that knows both sides: the engine never imports the
//! UI, the UI never does I/O.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::context::Context;
use crate::config::Config;

use crate::engine::account::Account;
use crate::engine::claim::Probe;
use crate::engine::event::{Event, FetchEvent, FetchSummary, Level, TunnelEvent};
use crate::engine::fetch::{self, EventPrompter, FetchError, FetchOptions};
use crate::engine::history;
use crate::engine::journal::Workspace;
use crate::engine::ssh::{Connection, NoPrompts};
use crate::engine::tunnel::{self, Tunnel, TunnelHandle, TunnelSpec};
use crate::engine::watch::{self, SpoolWatcher, WatchReport};
use crate::exit::Exit;
use crate::ui;

/// How long quitting waits for running fetches to stop at a safe point.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Runs the dashboard until the user quits.
pub fn run(config_path: Option<&Path>) -> Exit {
    let config = match Context::load(config_path) {
        Ok(c) => c.config,
        Err(e) => {
            if config_path.is_none() {
                eprintln!("mailhaul: to try it on a private server first: bash assets/demo.sh");
            }
            return e;
        }
    };
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!(
            "mailhaul: the dashboard needs a terminal; in scripts and cron use `mailhaul fetch`"
        );
        return Exit::Usage;
    }
    let Some(data_dir) = Workspace::default_data_dir() else {
        eprintln!("mailhaul: cannot find the home directory for the data dir");
        return Exit::Failure;
    };
    let (history, unreadable) = load_history(&data_dir.join(history::FILE_NAME));
    let (sender, receiver) = crossbeam_channel::unbounded();
    if let Some(message) = unreadable {
        let _ = sender.send(Event::Log {
            level: Level::Warn,
            account: None,
            message,
        });
    }
    let engine = LiveEngine::start(Arc::clone(&config), data_dir, sender);
    let shared = Arc::clone(&engine.shared);
    let result = ui::run(&config, history, engine, receiver);
    // Let cancelled fetches reach their safe point before the process ends
    // (if one does not in time, the process ends it: like a kill, which the
    // journal recovers from).
    shared.cancel.store(true, Ordering::Relaxed);
    shared.stop_forwards();
    shared.wait_for_fetches(STOP_WAIT);
    match result {
        Ok(_) => Exit::Ok,
        Err(e) => {
            eprintln!("mailhaul: {e:#}");
            Exit::Failure
        }
    }
}

/// The history file as the dashboard wants it, oldest first; an unreadable
/// file gives an empty history and the reason, for the log.
fn load_history(path: &Path) -> (Vec<ui::PastFetch>, Option<String>) {
    match history::read(path) {
        Ok(entries) => (
            entries
                .into_iter()
                .map(|e| ui::PastFetch {
                    finished_unix: e.unix_secs(),
                    account: e.account,
                    summary: e.summary,
                })
                .collect(),
            None,
        ),
        Err(e) => (
            Vec::new(),
            Some(format!("cannot read the history {}: {e}", path.display())),
        ),
    }
}

/// The engine behind the dashboard: fetch workers, spool watchers, host-key
/// answers and SMTP forwards, all reporting on one event channel.
pub struct LiveEngine {
    shared: Arc<Shared>,
    /// Dropped on shutdown: every watcher waits on it between checks and
    /// stops when it disconnects.
    stop_watchers: Option<Sender<()>>,
}

/// What the engine's calls and its watcher threads share.
struct Shared {
    config: Arc<Config>,
    data_dir: PathBuf,
    events: Sender<Event>,
    /// The latest fetch worker of each account (running or finished).
    fetches: Mutex<HashMap<String, JoinHandle<Result<FetchSummary, FetchError>>>>,
    /// Where to send the answer to the running fetch's host-key question,
    /// per account (dropping it refuses).
    host_key_answers: Mutex<HashMap<String, Sender<bool>>>,
    /// Set on shutdown: every fetch stops at its next safe point.
    cancel: Arc<AtomicBool>,
    /// The running SMTP forwards, per account.
    forwards: Mutex<HashMap<String, TunnelHandle>>,
}

impl LiveEngine {
    /// Starts the engine: one spool watcher per account.
    pub fn start(config: Arc<Config>, data_dir: PathBuf, events: Sender<Event>) -> LiveEngine {
        let shared = Arc::new(Shared {
            config: Arc::clone(&config),
            data_dir,
            events,
            fetches: Mutex::new(HashMap::new()),
            host_key_answers: Mutex::new(HashMap::new()),
            cancel: Arc::new(AtomicBool::new(false)),
            forwards: Mutex::new(HashMap::new()),
        });
        let (stop_watchers, stopped) = crossbeam_channel::bounded(0);
        for account in &config.accounts {
            let shared = Arc::clone(&shared);
            let account = account.clone();
            let stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("watch {}", account.name))
                .spawn(move || watch_spool(&shared, &account, &stopped))
                .expect("spawn a spool watcher thread");
        }
        LiveEngine {
            shared,
            stop_watchers: Some(stop_watchers),
        }
    }
}

impl ui::Engine for LiveEngine {
    fn fetch(&mut self, account: &str) {
        self.shared.start_fetch(account);
    }

    fn fetch_all(&mut self) {
        for account in &self.shared.config.accounts {
            if !self.shared.fetch_running(&account.name) {
                self.shared.start_fetch(&account.name);
            }
        }
    }

    fn toggle_forward(&mut self, account: &str) {
        self.shared.toggle_forward(account);
    }

    fn answer_host_key(&mut self, account: &str, accept: bool) {
        let waiting = lock(&self.shared.host_key_answers).remove(account);
        if let Some(answer) = waiting {
            let _ = answer.send(accept);
        }
    }

    fn shutdown(&mut self) {
        self.stop_watchers = None;
        // Forwards are stopped (cleanly, which may take a few seconds) by
        // `run` once the terminal is restored.
        // Fetches stop at their next safe point (the journal resumes them);
        // one waiting for a host-key answer sees the question withdrawn.
        self.shared.cancel.store(true, Ordering::Relaxed);
        lock(&self.shared.host_key_answers).clear();
    }
}

impl Shared {
    fn log(&self, level: Level, account: Option<&str>, message: String) {
        let _ = self.events.send(Event::Log {
            level,
            account: account.map(str::to_string),
            message,
        });
    }

    /// Starts the account's SMTP forward when it is off, stops it otherwise
    /// (in the background: the forward reports `Off` once its listen
    /// address is free). A forward that cannot start is reported as a
    /// tunnel error.
    fn toggle_forward(&self, name: &str) {
        let Some(account) = self.config.account(name) else {
            return;
        };
        let mut forwards = lock(&self.forwards);
        if let Some(running) = forwards.remove(name) {
            running.request_stop();
            return;
        }
        let error = |message: String| {
            self.log(Level::Error, Some(name), format!("SMTP forward: {message}"));
            let _ = self.events.send(Event::Tunnel {
                account: name.to_string(),
                event: TunnelEvent::Error(message),
            });
        };
        let spec = match TunnelSpec::from_account(account) {
            Ok(spec) => spec,
            Err(e) => return error(e.to_string()),
        };
        let listen = spec.listen;
        match Tunnel::start(spec, tunnel::connector(account), self.events.clone()) {
            Ok(handle) => {
                forwards.insert(name.to_string(), handle);
            }
            Err(e) => error(format!("cannot listen on {listen}: {e}")),
        }
    }

    /// Stops every forward, closing their connections cleanly, all at once.
    fn stop_forwards(&self) {
        let forwards = std::mem::take(&mut *lock(&self.forwards));
        if forwards.is_empty() {
            return;
        }
        let mut names: Vec<&str> = forwards.keys().map(String::as_str).collect();
        names.sort_unstable();
        eprintln!(
            "mailhaul: closing the SMTP forward of {}...",
            names.join(", ")
        );
        let stopping: Vec<_> = forwards
            .into_values()
            .map(|handle| std::thread::spawn(move || handle.stop()))
            .collect();
        for thread in stopping {
            let _ = thread.join();
        }
    }

    /// Waits up to `limit` for every fetch worker to end, saying on stderr
    /// which ones it waits for.
    fn wait_for_fetches(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let fetches = std::mem::take(&mut *lock(&self.fetches));
        let running: Vec<&str> = fetches
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(name, _)| name.as_str())
            .collect();
        if running.is_empty() {
            return;
        }
        eprintln!(
            "mailhaul: stopping the fetch of {} at a safe point...",
            running.join(", ")
        );
        while fetches.values().any(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fetch_running(&self, account: &str) -> bool {
        lock(&self.fetches)
            .get(account)
            .is_some_and(|h| !h.is_finished())
    }

    /// Starts a fetch of `account` unless one runs already.
    fn start_fetch(&self, name: &str) {
        let Some(account) = self.config.account(name).cloned() else {
            return;
        };
        let mut fetches = lock(&self.fetches);
        if fetches.get(name).is_some_and(|h| !h.is_finished()) {
            self.log(
                Level::Info,
                Some(name),
                "a fetch is already running; request ignored".into(),
            );
            return;
        }
        if let Some(finished) = fetches.remove(name) {
            // Its outcome was reported as events; a panic is worth a line.
            if finished.join().is_err() {
                self.log(
                    Level::Error,
                    Some(name),
                    "the previous fetch worker crashed".into(),
                );
            }
        }
        let (answer, answers) = crossbeam_channel::bounded(1);
        lock(&self.host_key_answers).insert(name.to_string(), answer);
        let options = FetchOptions {
            dry_run: false,
            data_dir: self.data_dir.clone(),
            prompter: Arc::new(EventPrompter::new(name, self.events.clone(), answers)),
            cancel: Arc::clone(&self.cancel),
            adopt_claims: false,
        };
        let destination = self.config.destination(&account);
        let handle = fetch::spawn(account, destination, options, self.events.clone());
        fetches.insert(name.to_string(), handle);
    }
}

/// Locks a mutex, carrying on after a panic elsewhere (the maps stay valid).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One account's spool watcher: keeps a session open (never prompting),
/// runs the server-side watcher (`engine::watch`) on it and checks the spool
/// as soon as that reports a change, else every `general.check_interval`
/// seconds (the fallback where the watcher cannot run), starts a
/// fetch on new mail when `auto_fetch` is set (not again for the same spool
/// size, so a fetch that fails is not retried every interval until more mail
/// comes), and stays quiet while the server stays unreachable (one line when
/// it goes, one when it comes back).
fn watch_spool(shared: &Shared, account: &Account, stopped: &Receiver<()>) {
    let interval = Duration::from_secs(shared.config.general.check_interval.max(1));
    let mut session: Option<Connection> = None;
    let mut watcher: Option<SpoolWatcher> = None;
    let mut probe: Option<Probe> = None;
    let mut failing: Option<String> = None;
    // The spool size the last automatic fetch started at.
    let mut auto_fetched_at: Option<u64> = None;
    loop {
        if !shared.fetch_running(&account.name) {
            match check_spool(account, &mut session, &mut watcher) {
                Ok(checked) => {
                    let (bytes, messages) =
                        (checked.spool_size.unwrap_or(0), checked.spool_messages);
                    probe = Some(checked);
                    if failing.take().is_some() {
                        shared.log(
                            Level::Info,
                            Some(&account.name),
                            "spool check works again".into(),
                        );
                    }
                    let _ = shared.events.send(Event::Fetch {
                        account: account.name.clone(),
                        event: FetchEvent::SpoolSize { bytes, messages },
                    });
                    if bytes == 0 {
                        auto_fetched_at = None;
                    }
                    if account.auto_fetch
                        && bytes > 0
                        && auto_fetched_at != Some(bytes)
                        && !shared.fetch_running(&account.name)
                    {
                        auto_fetched_at = Some(bytes);
                        shared.log(
                            Level::Info,
                            Some(&account.name),
                            format!("new mail ({bytes} bytes): fetching (auto_fetch)"),
                        );
                        shared.start_fetch(&account.name);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    if failing.as_deref() != Some(message.as_str()) {
                        shared.log(
                            Level::Warn,
                            Some(&account.name),
                            format!(
                                "spool check: {message}; retrying every {} s",
                                interval.as_secs()
                            ),
                        );
                        failing = Some(message);
                    }
                }
            }
        }
        let watching = match (&session, &mut watcher, &probe) {
            (Some(conn), slot @ None, Some(p)) => {
                let claims = format!("{}/.mailhaul/claims", p.home.trim_end_matches('/'));
                match SpoolWatcher::start(
                    conn,
                    &p.spool,
                    &claims,
                    watch::DEFAULT_POLL,
                    watch::DEFAULT_HEARTBEAT,
                ) {
                    Ok(w) => {
                        *slot = Some(w);
                        true
                    }
                    Err(e) => {
                        shared.log(
                            Level::Info,
                            Some(&account.name),
                            format!(
                                "no spool watcher ({e}); checking every {} s",
                                interval.as_secs()
                            ),
                        );
                        false
                    }
                }
            }
            (Some(_), Some(_), _) => true,
            _ => false,
        };
        let wait = if watching {
            wait_for_change(&mut session, &mut watcher, interval, stopped)
        } else {
            match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => Wake::Check,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => Wake::Stop,
            }
        };
        if wait == Wake::Stop {
            if let (Some(conn), Some(w)) = (&session, watcher.take()) {
                w.close(conn);
            }
            return;
        }
    }
}

/// Why a spool watcher's wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// Check the spool now (a change was reported, the interval passed, or
    /// the session broke).
    Check,
    /// The dashboard is quitting.
    Stop,
}

/// Waits for the server-side watcher to report a change of the spool, at
/// most `interval`; a watcher (or session) that fails is dropped, and the
/// next check reconnects. Looks for a stop four times a second.
fn wait_for_change(
    session: &mut Option<Connection>,
    watcher: &mut Option<SpoolWatcher>,
    interval: Duration,
    stopped: &Receiver<()>,
) -> Wake {
    let deadline = Instant::now() + interval;
    loop {
        match stopped.try_recv() {
            Ok(()) | Err(crossbeam_channel::TryRecvError::Disconnected) => return Wake::Stop,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        let (Some(conn), Some(w)) = (session.as_ref(), watcher.as_mut()) else {
            return Wake::Check;
        };
        match w.read_available(conn) {
            Ok(reports) => {
                if reports
                    .iter()
                    .any(|r| matches!(r, WatchReport::Spool { .. }))
                {
                    return Wake::Check;
                }
            }
            Err(_) => {
                *watcher = None;
                *session = None;
                return Wake::Check;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Wake::Check;
        }
        watch::wait_readable(conn.raw_fd(), None, left.min(Duration::from_millis(250)));
    }
}

/// The spool probe (path, size, message count), over the open session or a new one
/// (never prompting); a session that fails is dropped and replaced once.
fn check_spool(
    account: &Account,
    session: &mut Option<Connection>,
    watcher: &mut Option<SpoolWatcher>,
) -> Result<Probe, FetchError> {
    if let Some(conn) = session.as_ref() {
        match fetch::probe(conn, account) {
            Ok(probe) => return Ok(probe),
            // The session dropped (server restart, idle timeout): reconnect;
            // its watcher went with it.
            Err(_) => {
                *watcher = None;
                *session = None;
            }
        }
    }
    *watcher = None;
    let conn = fetch::connect(account, false, &NoPrompts)?;
    let probe = fetch::probe(&conn, account)?;
    *session = Some(conn);
    Ok(probe)
}
