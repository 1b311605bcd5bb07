//! Measures the dashboard in a real terminal: CPU time while idle, and frames
//! per second under a flood of progress events. Run it inside a terminal (or
//! `tmux`); it draws the dashboard, then writes its figures to FILE.
//!
//! ```text
//! cargo run --example dashboard_load -- idle 10 FILE
//! cargo run --example dashboard_load -- flood 10 FILE
//! ```
//!
//! `idle` sends no event at all for SECS seconds; `flood` sends transfer
//! progress for `home` as fast as a bounded channel takes it; `paced:N`
//! sends N progress events a second (an engine reporting every 64 kB of a
//! 64 MB/s transfer sends about 1000). Then the event
//! sender is dropped, which ends `ui::run` (its documented contract).
//! The dashboard starts with a history of 500 fetches (two accounts, one
//! every 3 hours for two months), so that the charts and totals are drawn,
//! both accounts watched (`Event::Link`) and mail in one outbox
//! (`Event::Outbox`), so that the link ages and the outbox panel are drawn.

use std::path::Path;
use std::time::{Duration, Instant};

use mailhaul::config::Config;
use mailhaul::engine::event::FetchSummary;
use mailhaul::engine::event::{
    Event, FetchEvent, LinkState, OutboxCounts, Stage, TransferProgress,
};
use mailhaul::engine::watch::WatchMode;
use mailhaul::ui::{self, Engine, PastFetch};

/// Accepts every request and does nothing: the load comes from the feeder.
struct Idle;

impl Engine for Idle {
    fn fetch(&mut self, _account: &str) {}
    fn fetch_all(&mut self) {}
    fn toggle_forward(&mut self, _account: &str) {}
    fn flush_outbox(&mut self, _account: &str) {}
    fn answer_host_key(&mut self, _account: &str, _accept: bool) {}
    fn shutdown(&mut self) {}
}

const CONFIG: &str = r#"
[[account]]
name = "home"
host = "mail.example.org"

[[account]]
name = "work"
host = "shell.work.example"
"#;

/// User plus system CPU seconds so far, from a `stat` file under /proc:
/// `/proc/self/stat` for the whole process, `/proc/self/task/PID/stat` for
/// the main thread alone (the one `ui::run` runs on).
fn cpu_seconds(stat_file: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_file).expect("read a /proc stat file");
    // Fields after the command name (which may hold spaces) start at "state".
    let after = &stat[stat.rfind(')').expect("comm ends with )") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_sec
}

/// 500 past fetches, alternating accounts, one every 3 hours until now.
fn history() -> Vec<PastFetch> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (0..500u64)
        .map(|i| {
            let raw = 200_000 + (i * 7_919) % 2_000_000;
            let payload = raw / (3 + i % 4);
            PastFetch {
                account: if i % 2 == 0 { "home" } else { "work" }.into(),
                finished_unix: Some(now - (500 - i) * 3 * 3600),
                summary: FetchSummary {
                    messages: 5 + i % 40,
                    undelivered: 0,
                    raw_bytes: raw,
                    payload_bytes: payload,
                    socket_bytes: payload + payload / 20,
                    method: "zstd -3".into(),
                    elapsed: Duration::from_millis(500 + (i * 311) % 4_000),
                    ..FetchSummary::default()
                },
            }
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, secs, out] = args.as_slice() else {
        anyhow::bail!("usage: dashboard_load idle|flood|paced:N SECONDS OUTFILE");
    };
    let secs: u64 = secs.parse()?;
    let config = Config::parse(CONFIG, Path::new("dashboard_load.toml"))?;
    let (tx, rx) = crossbeam_channel::bounded(1024);
    // Dropped when the dashboard ends, so that an idle feeder stops waiting.
    let (ended_tx, ended_rx) = crossbeam_channel::bounded::<()>(0);
    // Pause between progress events: None for idle, zero for a flood.
    let pace: Option<Duration> = match mode.as_str() {
        "idle" => None,
        "flood" => Some(Duration::ZERO),
        other => match other.strip_prefix("paced:").map(str::parse::<u32>) {
            Some(Ok(per_sec)) if per_sec > 0 => Some(Duration::from_secs(1) / per_sec),
            _ => anyhow::bail!("unknown mode {other}"),
        },
    };
    // What a supervised dashboard shows at rest: both accounts watched,
    // mail in home's outbox (the outbox panel and the links' ages drawn).
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (account, ago) in [("home", 40 * 60 + 30), ("work", 7 * 60 + 10)] {
        tx.send(Event::Link {
            account: account.into(),
            state: LinkState::Watching(WatchMode::Inotify),
            since: now_unix - ago,
        })?;
    }
    tx.send(Event::Outbox {
        account: "home".into(),
        counts: OutboxCounts {
            queued: 2,
            sent_today: 5,
            sent_bytes: 183_000,
            wire_bytes: 41_500,
            ..OutboxCounts::default()
        },
    })?;
    let feeder = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(secs);
        let Some(pace) = pace else {
            let _ = ended_rx.recv_timeout(Duration::from_secs(secs));
            return 0u64;
        };
        let send = |event| {
            tx.send(Event::Fetch {
                account: "home".into(),
                event,
            })
            .is_ok()
        };
        send(FetchEvent::Stage(Stage::Transferring));
        let total = 50_000_000_000u64;
        let mut raw = 0u64;
        let mut sent = 1u64;
        while Instant::now() < end {
            raw = (raw + 1_400) % total;
            let progress = TransferProgress {
                raw_done: raw,
                raw_total: total,
                payload_bytes: raw / 4,
                socket_bytes: raw / 4 + 1_000,
            };
            if !send(FetchEvent::Progress(progress)) {
                break;
            }
            sent += 1;
            if !pace.is_zero() {
                std::thread::sleep(pace);
            }
        }
        sent
    });
    let main_thread = format!("/proc/self/task/{}/stat", std::process::id());
    let cpu_before = cpu_seconds("/proc/self/stat");
    let ui_before = cpu_seconds(&main_thread);
    let start = Instant::now();
    let stats = ui::run(&config, history(), Idle, rx)?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds("/proc/self/stat") - cpu_before;
    let ui_cpu = cpu_seconds(&main_thread) - ui_before;
    drop(ended_tx);
    let sent = feeder.join().expect("feeder thread");
    let report = format!(
        "mode={mode} wall={wall:.2}s cpu={cpu:.3}s ({:.2}% of one core) \
         ui_thread_cpu={ui_cpu:.3}s ({:.2}%) frames={} fps={:.1} \
         events_sent={sent} events_applied={} events_per_sec={:.0}\n",
        100.0 * cpu / wall,
        100.0 * ui_cpu / wall,
        stats.frames,
        stats.frames as f64 / wall,
        stats.events,
        stats.events as f64 / wall,
    );
    std::fs::write(out, report)?;
    Ok(())
}
