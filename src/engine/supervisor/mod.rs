//! The supervisor: the one owner of the long-running per-account work that
//! the dashboard and `mailhaul watch` share. Per account, one worker thread
//! ([`worker`]) keeps the SSH session, watches the spool over it (the
//! server watcher, else periodic checks), fetches over the same session (on
//! order, or by itself on new mail), sends the outbox when the link is up,
//! and reconnects with backoff. Beside them, the supervisor keeps the SMTP
//! forwards (`engine::tunnel`) and routes host-key answers to the fetch
//! waiting for one. Everything is reported on the one event channel
//! ([`Event::Link`], [`Event::Outbox`], and the fetches' and forwards' own
//! events); see docs/design.md, "The supervisor".

mod schedule;
mod timing;
mod worker;

pub use timing::{Backoff, Debounce, Timings};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::engine::account::Account;
use crate::engine::event::{Event, Level, TunnelEvent};
use crate::engine::failure::Failure;
use crate::engine::fetch::{EventPrompter, FetchError, FetchOptions};
use crate::engine::filing::Destination;
use crate::engine::ssh::{NoPrompts, Prompter};
use crate::engine::tunnel::{self, Tunnel, TunnelHandle, TunnelSpec};

/// One account to supervise: the account and where its mail is filed.
#[derive(Clone)]
pub struct Supervised {
    /// The account.
    pub account: Account,
    /// Where its fetches file.
    pub destination: Destination,
}

/// How the supervisor runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where journals, staging files, the history and the outbox live.
    pub data_dir: PathBuf,
    /// Backoff, debounce and check intervals.
    pub timings: Timings,
    /// `mailhaul watch`: every account fetches by itself on new mail, an
    /// account whose failure no reconnect can cure is given up, and nobody
    /// is asked about host keys. Otherwise (the dashboard) only accounts
    /// with `auto_fetch` fetch by themselves, workers keep trying, and an
    /// unknown host key of a fetch the user asked for is asked about with
    /// [`FetchEvent::HostKeyUnknown`](crate::engine::event::FetchEvent).
    pub headless: bool,
}

/// What a worker is told to do.
pub(crate) enum Order {
    /// Fetch now.
    Fetch,
    /// Send the whole outbox now (backoff ignored).
    Flush,
}

/// A socket pair that wakes a worker's poll(2): ringing writes a byte,
/// the worker drains it and then reads its orders.
pub(crate) struct Doorbell {
    read: UnixStream,
    write: UnixStream,
}

impl Doorbell {
    fn new() -> std::io::Result<Doorbell> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Doorbell { read, write })
    }

    fn ring(&self) {
        let _ = (&self.write).write(&[1]);
    }

    fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// The supervisor's side of one worker.
struct Handle {
    name: String,
    orders: Sender<Order>,
    doorbell: Arc<Doorbell>,
    fetching: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), FetchError>>>,
}

/// The running supervisor. Its methods take `&self`: the dashboard's key
/// handler and the code that ends the program share it.
pub struct Supervisor {
    workers: Vec<Handle>,
    events: Sender<Event>,
    /// Set on shutdown: every worker ends, every fetch stops at its next
    /// safe point.
    cancel: Arc<AtomicBool>,
    /// Where to send the user's answer to a fetch's host-key question, per
    /// account (dropping them refuses).
    host_key_answers: Mutex<HashMap<String, Sender<bool>>>,
    /// The running SMTP forwards, per account.
    forwards: Mutex<HashMap<String, TunnelHandle>>,
    /// The accounts, for the forwards.
    accounts: Vec<Account>,
}

/// Locks a mutex, carrying on after a panic elsewhere (the maps stay valid).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Supervisor {
    /// Starts one worker per account, reporting on `events`.
    pub fn start(
        accounts: Vec<Supervised>,
        options: Options,
        events: Sender<Event>,
    ) -> std::io::Result<Supervisor> {
        let cancel = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut answers = HashMap::new();
        for Supervised {
            account,
            destination,
        } in accounts.iter().cloned()
        {
            let prompter: Arc<dyn Prompter + Send + Sync> = if options.headless {
                Arc::new(NoPrompts)
            } else {
                let (answer, answered) = crossbeam_channel::bounded(1);
                answers.insert(account.name.clone(), answer);
                Arc::new(EventPrompter::new(&account.name, events.clone(), answered))
            };
            let (orders, taken) = crossbeam_channel::unbounded();
            let doorbell = Arc::new(Doorbell::new()?);
            let fetching = Arc::new(AtomicBool::new(false));
            let name = account.name.clone();
            let worker = worker::Worker {
                auto_fetch: options.headless || account.auto_fetch,
                headless: options.headless,
                options: FetchOptions {
                    dry_run: false,
                    data_dir: options.data_dir.clone(),
                    prompter,
                    cancel: Arc::clone(&cancel),
                    adopt_claims: false,
                },
                account,
                destination,
                timings: options.timings.clone(),
                events: events.clone(),
                orders: taken,
                doorbell: Arc::clone(&doorbell),
                fetching: Arc::clone(&fetching),
            };
            let thread = std::thread::Builder::new()
                .name(format!("account {name}"))
                .spawn(move || worker.run())?;
            workers.push(Handle {
                name,
                orders,
                doorbell,
                fetching,
                thread: Some(thread),
            });
        }
        Ok(Supervisor {
            workers,
            events,
            cancel,
            host_key_answers: Mutex::new(answers),
            forwards: Mutex::new(HashMap::new()),
            accounts: accounts.into_iter().map(|s| s.account).collect(),
        })
    }

    fn log(&self, level: Level, account: &str, message: String) {
        let _ = self.events.send(Event::Log {
            level,
            account: Some(account.to_string()),
            message,
        });
    }

    fn order(&self, account: &str, order: Order) {
        if let Some(w) = self.workers.iter().find(|w| w.name == account) {
            let _ = w.orders.send(order);
            w.doorbell.ring();
        }
    }

    /// Fetches `account` now, unless a fetch of it runs already (then the
    /// request is logged as ignored).
    pub fn fetch(&self, account: &str) {
        if self.is_fetching(account) {
            self.log(
                Level::Info,
                account,
                "a fetch is already running; request ignored".into(),
            );
            return;
        }
        self.order(account, Order::Fetch);
    }

    /// Fetches every account that is not fetching already.
    pub fn fetch_all(&self) {
        for w in &self.workers {
            if !w.fetching.load(Ordering::SeqCst) {
                self.order(&w.name, Order::Fetch);
            }
        }
    }

    /// Whether a fetch of `account` runs now.
    pub fn is_fetching(&self, account: &str) -> bool {
        self.workers
            .iter()
            .any(|w| w.name == account && w.fetching.load(Ordering::SeqCst))
    }

    /// Sends the whole outbox of `account` (every account: `None`) as soon
    /// as its link is up, backoff ignored.
    pub fn flush_outbox(&self, account: Option<&str>) {
        for w in &self.workers {
            if account.is_none_or(|a| a == w.name) {
                self.order(&w.name, Order::Flush);
            }
        }
    }

    /// The user's answer to a fetch's unknown host key: `true` records it
    /// and lets the fetch go on.
    pub fn answer_host_key(&self, account: &str, accept: bool) {
        if let Some(answer) = lock(&self.host_key_answers).get(account) {
            let _ = answer.try_send(accept);
        }
    }

    /// Starts the account's SMTP forward when it is off, stops it otherwise
    /// (in the background: the forward reports `Off` once its listen
    /// address is free). A forward that cannot start is reported as a
    /// tunnel error and returned with its class (`Config` for a bad
    /// `forward` section, `Local` for an address that cannot be listened on).
    pub fn toggle_forward(&self, name: &str) -> Result<(), (Failure, String)> {
        let mut forwards = lock(&self.forwards);
        if let Some(running) = forwards.remove(name) {
            running.request_stop();
            return Ok(());
        }
        let Some(account) = self.accounts.iter().find(|a| a.name == name) else {
            return Err((Failure::Config, format!("no account named `{name}`")));
        };
        let started = TunnelSpec::from_account(account)
            .map_err(|e| (Failure::Config, e.to_string()))
            .and_then(|spec| {
                let listen = spec.listen;
                Tunnel::start(spec, tunnel::connector(account), self.events.clone())
                    .map_err(|e| (Failure::Local, format!("cannot listen on {listen}: {e}")))
            });
        match started {
            Ok(handle) => {
                forwards.insert(name.to_string(), handle);
                Ok(())
            }
            Err((class, message)) => {
                self.log(Level::Error, name, format!("SMTP forward: {message}"));
                let _ = self.events.send(Event::Tunnel {
                    account: name.to_string(),
                    event: TunnelEvent::Error(message.clone()),
                });
                Err((class, message))
            }
        }
    }

    /// Asks everything to stop and returns at once: workers end, fetches
    /// stop at their next safe point (the journal completes them next
    /// time), a host-key question is withdrawn (refused).
    pub fn request_stop(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        lock(&self.host_key_answers).clear();
        for w in &self.workers {
            w.doorbell.ring();
        }
    }

    /// The accounts whose forward runs, sorted.
    pub fn forwards_running(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.forwards).keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// The accounts whose fetch runs, in order.
    pub fn fetches_running(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter(|w| w.fetching.load(Ordering::SeqCst))
            .map(|w| w.name.clone())
            .collect()
    }

    /// Whether every worker has ended (each gave up on its account).
    pub fn all_ended(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.thread.as_ref().is_none_or(|t| t.is_finished()))
    }

    /// Shuts down: [`request_stop`](Self::request_stop), then stops every
    /// forward (closing their connections cleanly, all at once) and waits
    /// up to `limit` for the workers. Returns the failure each ended worker
    /// gave up with; a worker still running at the limit is left (its
    /// fetch, if any, is completed by the journal next time).
    pub fn shut_down(mut self, limit: Duration) -> Vec<(String, FetchError)> {
        self.request_stop();
        let forwards = std::mem::take(&mut *lock(&self.forwards));
        let stopping: Vec<_> = forwards
            .into_values()
            .map(|handle| std::thread::spawn(move || handle.stop()))
            .collect();
        for thread in stopping {
            let _ = thread.join();
        }
        let deadline = Instant::now() + limit;
        while !self.all_ended() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut failures = Vec::new();
        for w in &mut self.workers {
            let Some(thread) = w.thread.take_if(|t| t.is_finished()) else {
                continue;
            };
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push((w.name.clone(), e)),
                Err(_) => failures.push((
                    w.name.clone(),
                    FetchError::Local {
                        what: format!("the worker of {}", w.name),
                        source: "it panicked".into(),
                    },
                )),
            }
        }
        failures
    }
}
