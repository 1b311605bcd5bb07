//! `mailhaul` without a subcommand: the dashboard (`ui::run`) on the real
//! engine. [`LiveEngine`] turns the dashboard's requests into fetch workers
//! (one at a time per account), answers host-key questions through the
//! dashboard, runs one spool watcher per account (the periodic size check and
//! `auto_fetch`), and starts and stops the SMTP forwards.
//!
//! This is the one place that knows both sides: the engine never imports the
//! UI, the UI never does I/O.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::{Account, Config};
use crate::engine::event::{Event, FetchEvent, FetchSummary, HostKeyInfo, Level};
use crate::engine::fetch::{self, FetchError, FetchOptions};
use crate::engine::history;
use crate::engine::journal::Workspace;
use crate::engine::ssh::{Connection, HostKeyDecision, NoPrompts, Prompter, UnknownHost};
use crate::exit::Exit;
use crate::ui;

/// How long a fetch waits for the user to answer an unknown host key before
/// it gives up (the fetch then fails as a refused key would).
const HOST_KEY_ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the dashboard until the user quits.
pub fn run(config_path: Option<&Path>) -> Exit {
    let config = match super::fetch::load_config(config_path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            if config_path.is_none() {
                eprintln!("mailhaul: to try it on a private server first: bash assets/demo.sh");
            }
            return e;
        }
    };
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
    match ui::run(&config, history, engine, receiver) {
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
    /// Fetches waiting for the user's answer to an unknown host key.
    host_key_answers: Arc<Mutex<HashMap<String, Sender<bool>>>>,
}

impl LiveEngine {
    /// Starts the engine: one spool watcher per account.
    pub fn start(config: Arc<Config>, data_dir: PathBuf, events: Sender<Event>) -> LiveEngine {
        let shared = Arc::new(Shared {
            config: Arc::clone(&config),
            data_dir,
            events,
            fetches: Mutex::new(HashMap::new()),
            host_key_answers: Arc::new(Mutex::new(HashMap::new())),
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
        self.shared.log(
            Level::Warn,
            Some(account),
            "the SMTP forward is not available in this build".into(),
        );
    }

    fn answer_host_key(&mut self, account: &str, accept: bool) {
        let waiting = lock(&self.shared.host_key_answers).remove(account);
        if let Some(answer) = waiting {
            let _ = answer.send(accept);
        }
    }

    fn shutdown(&mut self) {
        self.stop_watchers = None;
        // A fetch waiting for a host-key answer sees the question withdrawn
        // and refuses; fetches still running are ended with the process,
        // which the journal makes safe (the next run resumes them).
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
        let options = FetchOptions {
            dry_run: false,
            data_dir: self.data_dir.clone(),
            prompter: Arc::new(DashboardPrompter {
                account: name.to_string(),
                events: self.events.clone(),
                answers: Arc::clone(&self.host_key_answers),
            }),
        };
        let handle = fetch::spawn(
            account,
            Arc::clone(&self.config),
            options,
            self.events.clone(),
        );
        fetches.insert(name.to_string(), handle);
    }
}

/// Locks a mutex, carrying on after a panic elsewhere (the maps stay valid).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Asks the dashboard about unknown host keys for one account's fetch.
struct DashboardPrompter {
    account: String,
    events: Sender<Event>,
    answers: Arc<Mutex<HashMap<String, Sender<bool>>>>,
}

impl Prompter for DashboardPrompter {
    fn unknown_host(&self, host: &UnknownHost) -> HostKeyDecision {
        let (answer, answered) = crossbeam_channel::bounded(1);
        lock(&self.answers).insert(self.account.clone(), answer);
        let asked = self.events.send(Event::Fetch {
            account: self.account.clone(),
            event: FetchEvent::HostKeyUnknown(HostKeyInfo {
                host: host.host.clone(),
                port: host.port,
                key_type: host.key_type.clone(),
                fingerprint: host.fingerprint.clone(),
            }),
        });
        let decision = match asked.map(|()| answered.recv_timeout(HOST_KEY_ANSWER_TIMEOUT)) {
            Ok(Ok(true)) => HostKeyDecision::AcceptAndRecord,
            Ok(Err(RecvTimeoutError::Timeout)) => {
                let _ = self.events.send(Event::Log {
                    level: Level::Warn,
                    account: Some(self.account.clone()),
                    message: format!(
                        "no answer about the host key of {} in {} s; not connecting",
                        host.host,
                        HOST_KEY_ANSWER_TIMEOUT.as_secs()
                    ),
                });
                HostKeyDecision::Refuse
            }
            _ => HostKeyDecision::Refuse,
        };
        lock(&self.answers).remove(&self.account);
        decision
    }
}

/// One account's spool watcher: keeps a session open (never prompting),
/// reports the spool size every `general.check_interval` seconds, starts a
/// fetch on new mail when `auto_fetch` is set, and stays quiet while the
/// server stays unreachable (one line when it goes, one when it comes back).
fn watch_spool(shared: &Shared, account: &Account, stopped: &Receiver<()>) {
    let interval = Duration::from_secs(shared.config.general.check_interval.max(1));
    let mut session: Option<Connection> = None;
    let mut failing: Option<String> = None;
    loop {
        if !shared.fetch_running(&account.name) {
            match check_spool(account, &mut session) {
                Ok(bytes) => {
                    if failing.take().is_some() {
                        shared.log(
                            Level::Info,
                            Some(&account.name),
                            "spool check works again".into(),
                        );
                    }
                    let _ = shared.events.send(Event::Fetch {
                        account: account.name.clone(),
                        event: FetchEvent::SpoolSize {
                            bytes,
                            messages: None,
                        },
                    });
                    if account.auto_fetch && bytes > 0 && !shared.fetch_running(&account.name) {
                        shared.log(
                            Level::Info,
                            Some(&account.name),
                            format!("new mail ({bytes} bytes): fetching (auto_fetch)"),
                        );
                        shared.start_fetch(&account.name);
                    }
                }
                Err(e) => {
                    if failing.as_deref() != Some(e.message.as_str()) {
                        shared.log(
                            Level::Warn,
                            Some(&account.name),
                            format!(
                                "spool check: {}; retrying every {} s",
                                e.message,
                                interval.as_secs()
                            ),
                        );
                        failing = Some(e.message);
                    }
                }
            }
        }
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The spool's size, over the open session or a new one (never prompting);
/// a session that fails is dropped and replaced once.
fn check_spool(account: &Account, session: &mut Option<Connection>) -> Result<u64, FetchError> {
    if let Some(conn) = session.as_ref() {
        match fetch::probe(conn, account) {
            Ok(probe) => return Ok(probe.spool_size.unwrap_or(0)),
            // The session dropped (server restart, idle timeout): reconnect.
            Err(_) => *session = None,
        }
    }
    let conn = fetch::connect(account, false, &NoPrompts)?;
    let probe = fetch::probe(&conn, account)?;
    *session = Some(conn);
    Ok(probe.spool_size.unwrap_or(0))
}
