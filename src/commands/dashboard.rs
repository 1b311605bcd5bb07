//! `mailhaul` without a subcommand: the dashboard (`ui::run`) driving the
//! engine's supervisor (`engine::supervisor`), which owns every account's
//! session, spool watch, fetches, outbox and forward.
//!
//! This is the one place that knows both sides: the engine never imports the
//! UI, the UI never does I/O.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::context::Context;
use crate::engine::event::{Event, Level};
use crate::engine::history;
use crate::engine::journal::Workspace;
use crate::engine::supervisor::{self, Supervised, Supervisor, Timings};
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
    let history_path = data_dir.join(history::FILE_NAME);
    let history_seen = stamp(&history_path);
    let (history, unreadable) = load_history(&history_path);
    let (sender, receiver) = crossbeam_channel::unbounded();
    // Fetches another mailhaul appends to the history reach the charts.
    let (stop_history, history_stopped) = crossbeam_channel::bounded::<()>(0);
    let history_watch = {
        let events = sender.clone();
        std::thread::Builder::new()
            .name("history watch".into())
            .spawn(move || {
                watch_history(
                    &history_path,
                    history_seen,
                    HISTORY_LOOK,
                    &events,
                    &history_stopped,
                )
            })
    };
    if let Some(message) = unreadable {
        let _ = sender.send(Event::Log {
            level: Level::Warn,
            account: None,
            message,
        });
    }
    let supervised = config
        .accounts
        .iter()
        .map(|account| Supervised {
            account: account.clone(),
            destination: config.destination(account),
        })
        .collect();
    let interval = Duration::from_secs(config.general.check_interval.max(1));
    let options = supervisor::Options {
        data_dir,
        timings: Timings {
            check_every: interval,
            // A server that is down is tried again at least every interval.
            backoff_max: interval,
            ..Timings::default()
        },
        headless: false,
    };
    let supervisor = match Supervisor::start(supervised, options, sender) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("mailhaul: cannot start the workers: {e}");
            return Exit::Failure;
        }
    };
    let result = ui::run(&config, history, Driver(Arc::clone(&supervisor)), receiver);
    drop(stop_history);
    if let Ok(watch) = history_watch {
        let _ = watch.join();
    }
    // Let cancelled fetches reach their safe point before the process ends
    // (if one does not in time, the process ends it: like a kill, which the
    // journal recovers from).
    supervisor.request_stop();
    let forwards = supervisor.forwards_running();
    if !forwards.is_empty() {
        eprintln!(
            "mailhaul: closing the SMTP forward of {}...",
            forwards.join(", ")
        );
    }
    let fetches = supervisor.fetches_running();
    if !fetches.is_empty() {
        eprintln!(
            "mailhaul: stopping the fetch of {} at a safe point...",
            fetches.join(", ")
        );
    }
    if let Ok(supervisor) = Arc::try_unwrap(supervisor) {
        supervisor.shut_down(STOP_WAIT);
    }
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

/// How often the history file is looked at for fetches another mailhaul
/// appended (one `stat`).
const HISTORY_LOOK: Duration = Duration::from_secs(2);

/// What tells that a file changed: its length and modification time.
type Stamp = Option<(u64, Option<std::time::SystemTime>)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.len(), m.modified().ok()))
}

/// Looks at the history file every `every` until `stop` disconnects; when
/// it changed since `seen`, reads it again and sends it whole as
/// `Event::History` (an unreadable file is skipped until it changes again).
fn watch_history(
    path: &Path,
    mut seen: Stamp,
    every: Duration,
    events: &Sender<Event>,
    stop: &Receiver<()>,
) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let now = stamp(path);
        if now == seen {
            continue;
        }
        seen = now;
        if let (history, None) = load_history(path) {
            if events.send(Event::History(history)).is_err() {
                return;
            }
        }
    }
}

/// The dashboard's handle on the engine's supervisor: each request goes
/// straight to it.
struct Driver(Arc<Supervisor>);

impl ui::Engine for Driver {
    fn fetch(&mut self, account: &str) {
        self.0.fetch(account);
    }

    fn fetch_all(&mut self) {
        self.0.fetch_all();
    }

    fn toggle_forward(&mut self, account: &str) {
        // A failure is reported on the event channel as well.
        let _ = self.0.toggle_forward(account);
    }

    fn flush_outbox(&mut self, account: &str) {
        self.0.flush_outbox(Some(account));
    }

    fn answer_host_key(&mut self, account: &str, accept: bool) {
        self.0.answer_host_key(account, accept);
    }

    fn shutdown(&mut self) {
        // Forwards are stopped (cleanly, which may take a few seconds) by
        // `run` once the terminal is restored.
        self.0.request_stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::FetchSummary;

    /// A fetch appended to the history file by another process reaches the
    /// dashboard as the whole file, once; nothing is sent while the file
    /// stays as it is, and the watch ends when told to.
    #[test]
    fn an_appended_history_is_sent_whole_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(history::FILE_NAME);
        let summary = |messages| FetchSummary {
            messages,
            raw_bytes: 1_000,
            payload_bytes: 250,
            socket_bytes: 300,
            method: "zstd -3".into(),
            ..FetchSummary::default()
        };
        history::append(&path, "home", &summary(1)).unwrap();
        let seen = stamp(&path);
        let (events, received) = crossbeam_channel::unbounded();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let watch = {
            let path = path.clone();
            std::thread::spawn(move || {
                watch_history(&path, seen, Duration::from_millis(20), &events, &stopped)
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(received.try_recv().is_err(), "nothing changed yet");
        history::append(&path, "work", &summary(7)).unwrap();
        let event = received
            .recv_timeout(Duration::from_secs(5))
            .expect("the change is seen");
        let Event::History(history) = event else {
            panic!("not the history: {event:?}");
        };
        let fetches: Vec<(&str, u64)> = history
            .iter()
            .map(|p| (p.account.as_str(), p.summary.messages))
            .collect();
        assert_eq!(fetches, [("home", 1), ("work", 7)]);
        assert!(history.iter().all(|p| p.finished_unix.is_some()));
        std::thread::sleep(Duration::from_millis(200));
        assert!(received.try_recv().is_err(), "sent once");
        drop(stop);
        watch.join().unwrap();
    }
}
