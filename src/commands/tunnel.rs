//! `mailhaul tunnel [ACCOUNT]`: runs one account's SMTP forward headless
//! until SIGINT or SIGTERM, printing state changes and periodic stats lines.

use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::context::Context;
use crate::engine::event::{Event, TunnelEvent, TunnelState, TunnelStats};
use crate::engine::tunnel::{connector, Tunnel, TunnelSpec};
use crate::exit::Exit;
use crate::ui::format::bytes;

/// Runs the forward of `account` (the config's first account when `None`),
/// printing a stats line at most every `interval` when they changed.
pub fn run(config_path: Option<&Path>, account: Option<String>, interval: Duration) -> Exit {
    let account =
        match Context::load(config_path).and_then(|c| c.account_or_first(account.as_deref())) {
            Ok(a) => a,
            Err(e) => return e,
        };
    let spec = match TunnelSpec::from_account(&account) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailhaul: account {}: {e}", account.name);
            return Exit::Config;
        }
    };
    // Block the termination signals in every thread (the worker inherits the
    // mask), and take them synchronously on a thread of their own.
    let signals = termination_signals();
    let (events_tx, events) = crossbeam_channel::unbounded();
    let target = format!("{}:{}", spec.target_host, spec.target_port);
    let handle = match Tunnel::start(spec.clone(), connector(&account), events_tx) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mailhaul: cannot listen on {}: {e}", spec.listen);
            return Exit::Failure;
        }
    };
    let name = account.name.clone();
    let via = account.host.clone();
    let mut printer = Printer {
        name: &name,
        target: &target,
        via: &via,
        stats: TunnelStats::default(),
        printed: TunnelStats::default(),
    };
    let mut next_stats = Instant::now() + interval;
    loop {
        let wait = next_stats.saturating_duration_since(Instant::now());
        select! {
            recv(events) -> event => match event {
                Ok(Event::Tunnel { event, .. }) => printer.event(event),
                Ok(_) => {}
                Err(_) => break,
            },
            recv(signals) -> _ => break,
            default(wait) => {
                printer.stats_line(false);
                next_stats = Instant::now() + interval;
            }
        }
    }
    handle.stop();
    for event in events.try_iter() {
        if let Event::Tunnel { event, .. } = event {
            printer.event(event);
        }
    }
    printer.stats_line(true);
    Exit::Ok
}

/// Turns events into lines on stdout (errors on stderr).
struct Printer<'a> {
    name: &'a str,
    target: &'a str,
    via: &'a str,
    stats: TunnelStats,
    printed: TunnelStats,
}

impl Printer<'_> {
    fn event(&mut self, event: TunnelEvent) {
        let name = self.name;
        match event {
            TunnelEvent::State(TunnelState::Connecting) => {
                println!("{name}: connecting to {}", self.via)
            }
            TunnelEvent::State(TunnelState::Listening(addr)) => println!(
                "{name}: forwarding {addr} -> {} (as seen from {})",
                self.target, self.via
            ),
            TunnelEvent::State(TunnelState::Reconnecting { in_secs }) => {
                println!("{name}: reconnecting in {in_secs} s")
            }
            TunnelEvent::State(TunnelState::Off) => println!("{name}: stopped"),
            TunnelEvent::Error(message) => eprintln!("{name}: error: {message}"),
            TunnelEvent::Stats(stats) => self.stats = stats,
        }
    }

    /// Prints the counters if they changed since the last line (or `always`).
    fn stats_line(&mut self, always: bool) {
        if !always && self.stats == self.printed {
            return;
        }
        let s = self.stats;
        println!(
            "{}: {} live, {} total; up {}, down {}; on the wire {} out, {} in; {} errors",
            self.name,
            s.live,
            s.total,
            bytes(s.bytes_up),
            bytes(s.bytes_down),
            bytes(s.socket_sent),
            bytes(s.socket_received),
            s.errors
        );
        self.printed = s;
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in threads it
/// starts later) and returns a channel that receives one of them when it
/// arrives.
pub(super) fn termination_signals() -> Receiver<libc::c_int> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls
    // only change this thread's signal mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: `set` is a valid signal set; `signal` a valid out pointer.
        if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
            let _ = tx.send(signal);
        }
    });
    rx
}
