//! `mailhaul tunnel [ACCOUNT]`: runs one account's SMTP forward headless
//! until SIGINT or SIGTERM, printing state changes and periodic stats lines.

use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::config::Config;

use crate::engine::account::Account;
use crate::engine::event::{Event, TunnelEvent, TunnelState, TunnelStats};
use crate::engine::tunnel::{connector, Tunnel, TunnelSpec};
use crate::exit::Exit;

/// Runs the forward of `account` (the config's first account when `None`),
/// printing a stats line at most every `interval` when they changed.
pub fn run(config_path: Option<&Path>, account: Option<String>, interval: Duration) -> Exit {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("mailhaul: {message}");
            return Exit::Config;
        }
    };
    let account = match pick_account(&config, account.as_deref()) {
        Ok(a) => a.clone(),
        Err(message) => {
            eprintln!("mailhaul: {message}");
            return Exit::Usage;
        }
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

fn load_config(path: Option<&Path>) -> Result<Config, String> {
    let path = path
        .map(Path::to_path_buf)
        .or_else(Config::default_path)
        .ok_or("no config path: pass --config FILE")?;
    Config::load(&path).map_err(|e| e.to_string())
}

fn pick_account<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a Account, String> {
    match name {
        Some(name) => config.account(name).ok_or_else(|| {
            let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
            format!(
                "no account `{name}` in the config (accounts: {})",
                names.join(", ")
            )
        }),
        None => config
            .accounts
            .first()
            .ok_or_else(|| "the config has no [[account]]".to_string()),
    }
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
            human_bytes(s.bytes_up),
            human_bytes(s.bytes_down),
            human_bytes(s.socket_sent),
            human_bytes(s.socket_received),
            s.errors
        );
        self.printed = s;
    }
}

/// `1.5 MB`-style sizes (decimal units, as the dashboard shows them).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in threads it
/// starts later) and returns a channel that receives one of them when it
/// arrives.
fn termination_signals() -> Receiver<libc::c_int> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(20_971_520), "21.0 MB");
    }

    #[test]
    fn account_is_picked_by_name_or_first() {
        let config = Config::parse(
            "[[account]]\nname = \"a\"\nhost = \"h\"\n[[account]]\nname = \"b\"\nhost = \"h\"\n",
            std::path::Path::new("c"),
        )
        .unwrap();
        assert_eq!(pick_account(&config, None).unwrap().name, "a");
        assert_eq!(pick_account(&config, Some("b")).unwrap().name, "b");
        let e = pick_account(&config, Some("x")).unwrap_err();
        assert!(e.contains("accounts: a, b"), "{e}");
    }
}
