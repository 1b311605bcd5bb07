//! One account's worker: a thread that keeps the account's SSH session,
//! watches the spool over it (the server watcher, else a check every
//! `check_every`), fetches over the same session (on the user's order, or
//! by itself a debounced moment after new mail), sends the outbox when the
//! link is up and it has mail, and reconnects with backoff when the link
//! drops. Everything it does goes out as events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::schedule::{Link, LinkLost, Schedule, Step};
use super::timing::Timings;
use super::{Doorbell, Order};
use crate::engine::account::{Account, Compression};
use crate::engine::claim::Probe;
use crate::engine::event::{Event, FetchEvent, Level, LinkState, OutboxCounts};
use crate::engine::failure::Failure;
use crate::engine::fetch::{self, FetchError, FetchOptions};
use crate::engine::filing::Destination;
use crate::engine::os::{self, DirWatch};
use crate::engine::outbox::flush::{self, Due};
use crate::engine::outbox::relay::Outcome;
use crate::engine::outbox::Outbox;
use crate::engine::ssh::{Connection, NoPrompts};
use crate::engine::watch::SpoolWatcher;

/// Failures no reconnect can cure: a headless worker ends with them.
pub(super) fn is_permanent(e: &FetchError) -> bool {
    matches!(
        e.failure(),
        Failure::HostKey | Failure::Auth | Failure::Config | Failure::ServerUnsupported
    )
}

/// The link state as last reported, so that only changes go out.
struct Reported {
    state: Option<LinkState>,
}

/// What one worker owns.
pub(super) struct Worker {
    pub account: Account,
    pub destination: Destination,
    pub options: FetchOptions,
    pub timings: Timings,
    /// Fetch by itself on new mail (every account under `watch`; those with
    /// `auto_fetch` in the dashboard).
    pub auto_fetch: bool,
    /// `watch`: end the worker on a failure no reconnect can cure, rather
    /// than keep trying (the dashboard, where the user may fix it, say by
    /// accepting a host key), and log no line per automatic fetch.
    pub headless: bool,
    pub events: Sender<Event>,
    pub orders: Receiver<Order>,
    pub doorbell: Arc<Doorbell>,
    /// Set while a fetch of this account runs, read by the supervisor.
    pub fetching: Arc<AtomicBool>,
}

/// The worker's changing state.
struct Live {
    session: Option<Connection>,
    watcher: Option<SpoolWatcher>,
    /// The timers and what they wait for: the decisions, apart from I/O.
    schedule: Schedule,
    /// The failure logged last, so that a server that stays down is logged
    /// once, not at every attempt.
    failing: Option<String>,
    /// The spool's size as last seen.
    spool_bytes: u64,
    reported: Reported,
    outbox: Option<OutboxWork>,
}

/// Which queued messages a flush is wanted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// All of them (the link just came back, or the user asked).
    All,
    /// Those whose backoff has run out.
    Due,
}

/// The account's outbox as the worker sends it.
struct OutboxWork {
    outbox: Outbox,
    /// Wakes the worker when `send` queues a message.
    watch: Option<DirWatch>,
    counts: OutboxCounts,
    /// A flush is wanted: `All` after a (re)connect or the user's order.
    wanted: Option<Which>,
    /// The earliest next try of a deferred message.
    next_try: Option<u64>,
}

impl Worker {
    /// Runs until stopped; returns early only when `give_up` is set and a
    /// failure no reconnect can cure happened.
    pub fn run(self) -> Result<(), FetchError> {
        let mut live = Live {
            session: None,
            watcher: None,
            schedule: Schedule::new(self.timings.clone(), self.auto_fetch, Instant::now()),
            failing: None,
            spool_bytes: 0,
            reported: Reported { state: None },
            outbox: self.open_outbox(),
        };
        self.refresh_outbox(&mut live);
        let result = self.supervise(&mut live);
        if let (Some(conn), Some(w)) = (&live.session, live.watcher.take()) {
            w.close(conn);
        }
        let reason = result.as_ref().err().map(|e| e.to_string());
        if let Some(reason) = &reason {
            self.log(Level::Error, format!("{reason}; giving up on this account"));
        } else {
            self.log(Level::Info, "stopped".into());
        }
        self.set_state(&mut live, LinkState::Stopped(reason));
        result
    }

    fn stopped(&self) -> bool {
        self.options.cancel.load(Ordering::SeqCst)
    }

    fn supervise(&self, live: &mut Live) -> Result<(), FetchError> {
        loop {
            if self.stopped() {
                return Ok(());
            }
            self.take_orders(live);
            // The next steps, readied while the link is idle, before the
            // watcher is read (which leaves nothing of its own waiting in
            // libssh2): a channel opened ahead, and on it the claim script
            // started ahead, so that a fetch on the watcher's report starts
            // with its command line, with neither a round trip for a
            // channel nor the script's start. Turn by turn: a channel is
            // asked for, taken for the claim script once it is open, the
            // script's answer read; the next channel is then kept for any
            // other step.
            if let Some(conn) = &live.session {
                conn.request_channel();
                fetch::keep_ready(conn, &self.account);
            }
            // The user's fetch goes before the watcher's reports, which it
            // makes stale.
            if live.session.is_some() && !live.schedule.fetch_ordered() {
                if let Err(reason) = self.follow(live, false) {
                    self.lost(live, reason.to_string());
                    continue;
                }
            }
            let flush_wanted = self.flush_due(live);
            let next_send = self.next_send(live);
            let link = Self::link(live);
            match live
                .schedule
                .next(Instant::now(), link, flush_wanted, next_send)
            {
                Step::Fetch { auto } => self.fetch(live, auto)?,
                Step::Connect => self.connect(live)?,
                Step::Check => self.check(live),
                Step::Flush => self.flush(live),
                Step::Wait(until) => self.wait(live, until),
            }
        }
    }

    /// What the worker holds of the link.
    fn link(live: &Live) -> Link {
        match (&live.session, &live.watcher) {
            (None, _) => Link::Down,
            (Some(_), Some(_)) => Link::Watched,
            (Some(_), None) => Link::Checked,
        }
    }

    fn log(&self, level: Level, message: String) {
        let _ = self.events.send(Event::Log {
            level,
            account: Some(self.account.name.clone()),
            message,
        });
    }

    fn set_state(&self, live: &mut Live, state: LinkState) {
        if live.reported.state.as_ref() == Some(&state) {
            return;
        }
        live.reported.state = Some(state.clone());
        let _ = self.events.send(Event::Link {
            account: self.account.name.clone(),
            state,
            since: crate::engine::outbox::now(),
        });
    }

    /// The state of a connected worker that is not busy.
    fn idle_state(&self, live: &Live) -> LinkState {
        match (&live.session, &live.watcher, live.schedule.ready()) {
            (None, ..) => LinkState::Connecting,
            (Some(_), Some(_), Some(mode)) => LinkState::Watching(mode),
            (Some(_), Some(_), None) => LinkState::Connecting,
            (Some(_), None, _) => LinkState::Polling {
                every: self.timings.check_every,
            },
        }
    }

    fn take_orders(&self, live: &mut Live) {
        self.doorbell.drain();
        for order in self.orders.try_iter() {
            match order {
                Order::Fetch => live.schedule.order_fetch(),
                Order::Flush => self.flush_ordered(live),
            }
        }
        if let Some(o) = &mut live.outbox {
            if o.watch.as_ref().is_some_and(|w| w.drain()) {
                self.refresh_outbox(live);
            }
        }
    }

    /// Opens the session (never prompting), probes the spool and starts the
    /// server watcher, or the spool checks where it cannot run.
    fn connect(&self, live: &mut Live) -> Result<(), FetchError> {
        self.set_state(live, LinkState::Connecting);
        let compress = self.account.compression == Compression::Ssh;
        let opened = fetch::connect(&self.account, compress, &NoPrompts).and_then(|conn| {
            let probe = fetch::probe(&conn, &self.account)?;
            Ok((conn, probe))
        });
        match opened {
            Ok((conn, probe)) => {
                live.session = Some(conn);
                self.connected(live, &probe);
                Ok(())
            }
            Err(e) if self.headless && is_permanent(&e) => Err(e),
            Err(e) => {
                self.lost(live, format!("spool check: {e}"));
                Ok(())
            }
        }
    }

    /// A session is up (opened here or by a fetch the user asked for):
    /// report the spool, start watching it, and send what the outbox holds.
    fn connected(&self, live: &mut Live, probe: &Probe) {
        self.report_spool(live, probe);
        live.schedule.connected();
        if let Some(o) = &mut live.outbox {
            o.wanted = Some(Which::All);
        }
        let Some(conn) = &live.session else { return };
        let host = conn.host().to_string();
        let claims = format!("{}/.mailhaul/claims", probe.home.trim_end_matches('/'));
        let now = Instant::now();
        let started = SpoolWatcher::start(
            conn,
            &probe.spool,
            &claims,
            self.timings.poll,
            self.timings.heartbeat,
        );
        match started {
            Ok(w) => {
                self.set_state(live, LinkState::Connecting);
                live.watcher = Some(w);
                live.schedule.watching(now);
            }
            Err(e) => {
                live.watcher = None;
                live.schedule.checking(now, probe.spool_size.unwrap_or(0));
                self.recovered(live);
                self.log(
                    Level::Info,
                    format!(
                        "connected to {host}; no spool watcher ({e}): checking every {} s",
                        self.timings.check_every.as_secs()
                    ),
                );
                self.set_state(live, self.idle_state(live));
            }
        }
    }

    fn recovered(&self, live: &mut Live) {
        live.failing = None;
    }

    fn report_spool(&self, live: &mut Live, probe: &Probe) {
        live.spool_bytes = probe.spool_size.unwrap_or(0);
        let _ = self.events.send(Event::Fetch {
            account: self.account.name.clone(),
            event: FetchEvent::SpoolSize {
                bytes: probe.spool_size.unwrap_or(0),
                messages: probe.spool_messages,
            },
        });
    }

    /// The session is gone (or could not be made): drop it, say why once
    /// per outage, and back off before the next attempt.
    fn lost(&self, live: &mut Live, reason: String) {
        if let (Some(conn), Some(w)) = (&live.session, live.watcher.take()) {
            w.close(conn);
        }
        live.session = None;
        live.watcher = None;
        let wait = live.schedule.lost(Instant::now());
        if live.failing.as_deref() != Some(reason.as_str()) {
            self.log(
                Level::Warn,
                format!("{reason}; reconnecting in {:.1} s", wait.as_secs_f64()),
            );
            live.failing = Some(reason.clone());
        }
        let until = crate::engine::outbox::now() + wait.as_secs_f64().ceil() as u64;
        self.set_state(live, LinkState::BackingOff { until, reason });
    }

    /// Reads what the watcher said; an error is the reason the link is
    /// taken as lost. `stale`: the spool reports are from before a fetch
    /// of ours ended (its own claim coming and going), and are dropped.
    fn follow(&self, live: &mut Live, stale: bool) -> Result<(), LinkLost> {
        let (Some(conn), Some(watcher)) = (&live.session, &mut live.watcher) else {
            return Ok(());
        };
        let host = conn.host().to_string();
        let reports = watcher.read_available(conn)?;
        let now = Instant::now();
        let heard = live.schedule.heard(reports, stale, now);
        for note in heard.notes {
            self.log(Level::Warn, format!("spool watcher: {note}"));
        }
        if let Some(mode) = heard.ready {
            self.recovered(live);
            self.log(
                Level::Info,
                format!(
                    "connected to {host}; watching the spool ({})",
                    mode.as_str()
                ),
            );
            // Forces the state out even when it was `Watching` before.
            live.reported.state = None;
            self.set_state(live, LinkState::Watching(mode));
        }
        if let Some(bytes) = heard.spool_bytes {
            live.spool_bytes = bytes;
            if self.auto_fetch {
                let _ = self.events.send(Event::Fetch {
                    account: self.account.name.clone(),
                    event: FetchEvent::SpoolSize {
                        bytes,
                        messages: None,
                    },
                });
            }
        }
        live.schedule.alive(now)
    }

    /// One spool check over the session (the fallback, or to count the
    /// messages after a change).
    fn check(&self, live: &mut Live) {
        let Some(conn) = &live.session else { return };
        match fetch::probe(conn, &self.account) {
            Ok(probe) => {
                self.report_spool(live, &probe);
                let link = Self::link(live);
                live.schedule
                    .checked(Instant::now(), probe.spool_size.unwrap_or(0), link);
            }
            Err(e) => self.lost(live, format!("spool check: {e}")),
        }
    }

    /// One fetch over the session (or a new one, asking about host keys as
    /// the options say); `auto` when the worker started it by itself.
    fn fetch(&self, live: &mut Live, auto: bool) -> Result<(), FetchError> {
        let had_session = live.session.is_some();
        if auto && !self.headless && live.spool_bytes > 0 {
            self.log(
                Level::Info,
                format!(
                    "new mail ({} bytes): fetching (auto_fetch)",
                    live.spool_bytes
                ),
            );
        }
        self.fetching.store(true, Ordering::SeqCst);
        self.set_state(live, LinkState::Fetching);
        let result = fetch::fetch_over(
            &mut live.session,
            &self.account,
            &self.destination,
            &self.options,
            &self.events,
        );
        self.fetching.store(false, Ordering::SeqCst);
        match &result {
            Err(e) if self.headless && is_permanent(e) => return result.map(|_| ()),
            Err(_) if self.stopped() => return Ok(()),
            _ => live.schedule.fetched(Instant::now(), result.is_ok(), auto),
        }
        // The watcher's reports so far are from before the fetch ended (its
        // own claim coming and going): dropped before the probe, so that a
        // delivery that ends after the probe looked is still reported.
        if had_session && live.session.is_some() {
            if let Err(reason) = self.follow(live, true) {
                self.lost(live, reason.to_string());
                return Ok(());
            }
        }
        // The session the fetch used (or opened) is checked with a probe,
        // which also shows what is left in the spool.
        match &live.session {
            Some(conn) => match fetch::probe(conn, &self.account) {
                Ok(probe) if !had_session => self.connected(live, &probe),
                Ok(probe) => {
                    self.report_spool(live, &probe);
                    live.schedule
                        .left_after_fetch(Instant::now(), probe.spool_size.unwrap_or(0));
                    self.set_state(live, self.idle_state(live));
                }
                Err(e) => self.lost(live, format!("spool check: {e}")),
            },
            None if had_session => {
                let why = result.err().map_or_else(String::new, |e| e.to_string());
                self.lost(live, format!("the session broke: {why}"));
            }
            None => {
                let state = live.reported.state.clone();
                live.reported.state = None;
                self.set_state(live, state.unwrap_or(LinkState::Connecting));
            }
        }
        Ok(())
    }

    fn open_outbox(&self) -> Option<OutboxWork> {
        let outbox = match Outbox::open(&self.options.data_dir, &self.account.name) {
            Ok(o) => o,
            Err(e) => {
                self.log(Level::Warn, format!("outbox: cannot open it: {e}"));
                return None;
            }
        };
        let watch = DirWatch::new(&outbox.queue_dir()).ok();
        Some(OutboxWork {
            outbox,
            watch,
            counts: OutboxCounts::default(),
            wanted: None,
            next_try: None,
        })
    }

    /// Reads the outbox again: its counts (reported when they change), and
    /// whether a message is due.
    fn refresh_outbox(&self, live: &mut Live) {
        let Some(o) = &mut live.outbox else { return };
        let queued = match o.outbox.queued() {
            Ok(q) => q,
            Err(e) => {
                self.log(Level::Warn, format!("outbox: cannot read it: {e}"));
                return;
            }
        };
        let now = crate::engine::outbox::now();
        if queued.iter().any(|m| m.next_try <= now) && o.wanted.is_none() {
            o.wanted = Some(Which::Due);
        }
        o.next_try = queued.iter().map(|m| m.next_try).filter(|t| *t > now).min();
        if let Ok(counts) = o.outbox.counts() {
            self.report_outbox(o, counts);
        }
    }

    fn report_outbox(&self, o: &mut OutboxWork, counts: OutboxCounts) {
        if counts != o.counts {
            o.counts = counts;
            let _ = self.events.send(Event::Outbox {
                account: self.account.name.clone(),
                counts,
            });
        }
    }

    /// The user asked for the outbox to go now: every queued message, once
    /// the link is up; an answer in the log when nothing happens at once.
    fn flush_ordered(&self, live: &mut Live) {
        self.refresh_outbox(live);
        let Some(o) = &mut live.outbox else { return };
        if o.counts.queued == 0 {
            self.log(Level::Info, "outbox: nothing queued".into());
            return;
        }
        o.wanted = Some(Which::All);
        if live.session.is_none() {
            self.log(
                Level::Info,
                format!(
                    "outbox: {} queued; sending once the link is up",
                    o.counts.queued
                ),
            );
        }
    }

    fn flush_due(&self, live: &mut Live) -> bool {
        let Some(o) = &mut live.outbox else {
            return false;
        };
        if o.next_try
            .is_some_and(|t| t <= crate::engine::outbox::now())
        {
            o.next_try = None;
            o.wanted.get_or_insert(Which::Due);
        }
        live.session.is_some() && o.wanted.is_some()
    }

    /// Sends the outbox's wanted messages while the link is up
    /// (`outbox::flush`, the call `mailhaul queue flush` makes), over the
    /// worker's session unless the messages rely on a transport
    /// compression it lacks (`outbox::flush::flush_over`).
    fn flush(&self, live: &mut Live) {
        let Some(o) = &mut live.outbox else { return };
        let Some(which) = o.wanted.take() else { return };
        let now = crate::engine::outbox::now();
        let due = match which {
            Which::All => Due::All,
            Which::Due => Due::At(now),
        };
        let going = o.outbox.queued().map_or(0, |q| {
            q.iter()
                .filter(|m| which == Which::All || m.next_try <= now)
                .count() as u64
        });
        if going == 0 {
            self.refresh_outbox(live);
            return;
        }
        self.set_state(live, LinkState::Sending);
        let Some(o) = &mut live.outbox else { return };
        let counts = OutboxCounts {
            sending: going,
            queued: o.counts.queued.saturating_sub(going),
            ..o.counts
        };
        self.report_outbox(o, counts);
        match flush::flush_over(
            live.session.as_ref(),
            &self.account,
            &o.outbox,
            &NoPrompts,
            due,
        ) {
            Ok(report) => {
                for (id, outcome) in &report.outcomes {
                    match outcome {
                        Outcome::Refused { .. } | Outcome::Unsure => self.log(
                            Level::Error,
                            format!(
                                "outbox: message {id} was not sent and never will be as it is; \
                                 kept in the failed folder (`mailhaul queue` shows why)"
                            ),
                        ),
                        Outcome::Deferred(why) => {
                            self.log(Level::Warn, format!("outbox: {id} not sent yet: {why}"))
                        }
                        Outcome::Sent | Outcome::AlreadySent => {}
                    }
                }
                let sent = report
                    .outcomes
                    .iter()
                    .filter(|(_, o)| matches!(o, Outcome::Sent | Outcome::AlreadySent))
                    .count();
                if sent > 0 {
                    self.log(
                        Level::Info,
                        format!(
                            "outbox: sent {sent} message(s), {} bytes, {} bytes on the wire{}",
                            report.sent_bytes,
                            report.wire_bytes,
                            report.method.map(|m| format!(" ({m})")).unwrap_or_default()
                        ),
                    );
                }
            }
            // Every message stays queued with its own backoff.
            Err(e) => self.log(Level::Warn, format!("outbox: not sent: {e}")),
        }
        self.refresh_outbox(live);
        self.set_state(live, self.idle_state(live));
    }

    /// A deferred message's next try, on the monotonic clock.
    fn next_send(&self, live: &Live) -> Option<Instant> {
        let at = live.outbox.as_ref()?.next_try?;
        let left = at.saturating_sub(crate::engine::outbox::now());
        Some(Instant::now() + Duration::from_secs(left))
    }

    /// Waits for whatever comes first: the watcher's next line, an order,
    /// a new message in the outbox, or `until` (the schedule's next timer:
    /// reconnect, debounced fetch, spool check, heartbeat, a deferred
    /// message's next try).
    fn wait(&self, live: &Live, until: Option<Instant>) {
        let timeout = until.map(|at| {
            at.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        let mut fds = vec![os::pollfd(self.doorbell.fd(), libc::POLLIN)];
        if let (Some(conn), Some(_)) = (&live.session, &live.watcher) {
            fds.push(os::pollfd(conn.raw_fd(), libc::POLLIN));
        }
        if let Some(w) = live.outbox.as_ref().and_then(|o| o.watch.as_ref()) {
            fds.push(os::pollfd(w.fd(), libc::POLLIN));
        }
        os::poll(&mut fds, timeout);
    }
}
