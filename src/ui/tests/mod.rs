//! Dashboard tests: whole frames rendered into ratatui's `TestBackend` and
//! snapshotted with insta (`frames`), content assertions at every size from
//! 60x20 to 250x70 (`panels`, `charts`), and state transitions (events into
//! the model, keys and clicks into engine calls recorded by an in-memory
//! `Engine`: `events`, `keys`, `event_loop`). This module holds what they
//! share: the harness with its hand-moved clock, and the fixture states.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{
    Event as Input, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::style::Color;
use ratatui::Terminal;

use super::app::{App, Overlay};
use super::engine::Engine;
use super::keymap::{keys_label, BINDINGS};
use super::model::{Moment, PastFetch};
use super::theme::Theme;
use crate::config::Config;
use crate::engine::event::{
    Event, FetchEvent, FetchFailure, FetchSummary, HostKeyInfo, Level, LinkState, OutboxCounts,
    Stage, TransferProgress, TunnelEvent, TunnelState, TunnelStats,
};
use crate::engine::failure::Failure;
use crate::engine::watch::WatchMode;

mod charts;
mod event_loop;
mod events;
mod frames;
mod keys;
mod panels;

const CONFIG: &str = r#"
[[account]]
name = "home"
host = "mail.example.org"
user = "ann"

[[account]]
name = "work"
host = "shell.work.example"
[account.forward]
listen = "127.0.0.1:2526"
"#;

/// 2025-11-28 09:00:00 UTC.
const BASE_UNIX: u64 = 1_764_320_400;

/// Engine calls as text, in order.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
}

impl Engine for Recorder {
    fn fetch(&mut self, account: &str) {
        self.calls.push(format!("fetch {account}"));
    }
    fn fetch_all(&mut self) {
        self.calls.push("fetch_all".into());
    }
    fn toggle_forward(&mut self, account: &str) {
        self.calls.push(format!("toggle_forward {account}"));
    }
    fn flush_outbox(&mut self, account: &str) {
        self.calls.push(format!("flush_outbox {account}"));
    }
    fn answer_host_key(&mut self, account: &str, accept: bool) {
        self.calls
            .push(format!("answer_host_key {account} {accept}"));
    }
    fn shutdown(&mut self) {
        self.calls.push("shutdown".into());
    }
}

/// An app and a clock that tests move by hand.
struct Harness {
    app: App,
    t0: Instant,
    secs: f64,
    engine: Recorder,
}

fn summary(messages: u64, raw: u64, payload: u64, ms: u64) -> FetchSummary {
    FetchSummary {
        messages,
        undelivered: 0,
        raw_bytes: raw,
        payload_bytes: payload,
        socket_bytes: payload + payload / 20 + 4_000,
        method: "zstd -3".into(),
        elapsed: Duration::from_millis(ms),
        ..Default::default()
    }
}

fn history() -> Vec<PastFetch> {
    (0..14u64)
        .map(|i| PastFetch {
            // Every 5 hours until 5 hours before the dashboard starts.
            finished_unix: Some(BASE_UNIX - (14 - i) * 5 * 3600),
            account: if i % 5 == 4 { "work" } else { "home" }.into(),
            summary: summary(
                20 + i * 7,
                400_000 + i * 90_000,
                (400_000 + i * 90_000) / (3 + i % 4),
                900 + (i * 437) % 3_000,
            ),
        })
        .collect()
}

/// The dashboard's start: `t0` on the monotonic clock, [`BASE_UNIX`] on
/// the wall clock.
fn start(t0: Instant) -> Moment {
    Moment {
        instant: t0,
        unix_secs: BASE_UNIX,
    }
}

impl Harness {
    fn new(color: bool) -> Harness {
        let config = Config::parse(CONFIG, Path::new("test.toml")).expect("test config parses");
        let t0 = Instant::now();
        Harness {
            app: App::new(&config, history(), Theme::new(color), 0, start(t0))
                .with_home(Some("/home/ann".into())),
            t0,
            secs: 0.0,
            engine: Recorder::default(),
        }
    }

    fn at(&mut self, secs: f64) -> Moment {
        self.secs = secs;
        let instant = self.t0 + Duration::from_secs_f64(secs);
        self.app.set_now(instant);
        Moment {
            instant,
            unix_secs: BASE_UNIX + secs as u64,
        }
    }

    fn fetch(&mut self, secs: f64, account: &str, event: FetchEvent) -> bool {
        let at = self.at(secs);
        self.app.apply(
            Event::Fetch {
                account: account.into(),
                event,
            },
            at,
        )
    }

    fn tunnel(&mut self, secs: f64, account: &str, event: TunnelEvent) -> bool {
        let at = self.at(secs);
        self.app.apply(
            Event::Tunnel {
                account: account.into(),
                event,
            },
            at,
        )
    }

    fn log(&mut self, secs: f64, level: Level, account: Option<&str>, message: &str) {
        let at = self.at(secs);
        self.app.apply(
            Event::Log {
                level,
                account: account.map(Into::into),
                message: message.into(),
            },
            at,
        );
    }

    /// The engine says how it keeps `account`'s link, begun `ago` seconds
    /// before `secs`.
    fn link(&mut self, secs: f64, account: &str, state: LinkState, ago: u64) -> bool {
        let at = self.at(secs);
        self.app.apply(
            Event::Link {
                account: account.into(),
                state,
                since: at.unix_secs.saturating_sub(ago),
            },
            at,
        )
    }

    /// The engine counted `account`'s outbox.
    fn outbox(&mut self, secs: f64, account: &str, counts: OutboxCounts) -> bool {
        let at = self.at(secs);
        self.app.apply(
            Event::Outbox {
                account: account.into(),
                counts,
            },
            at,
        )
    }

    fn key(&mut self, code: KeyCode) -> bool {
        self.app.handle_input(
            &Input::Key(KeyEvent::new(code, KeyModifiers::NONE)),
            &mut self.engine,
        )
    }

    fn render(&mut self, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
        terminal
            .draw(|frame| self.app.draw(frame))
            .expect("draw into the test backend");
        terminal
    }
}

fn text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// The idle screen: one fetch finished five minutes ago, new mail on `work`.
fn idle() -> Harness {
    let mut h = Harness::new(true);
    h.log(0.0, Level::Info, None, "dashboard started; 2 accounts");
    h.fetch(1.0, "home", FetchEvent::Stage(Stage::Connecting));
    h.fetch(2.0, "home", FetchEvent::Stage(Stage::Transferring));
    h.fetch(
        3.0,
        "home",
        FetchEvent::Progress(TransferProgress {
            raw_done: 1_250_000,
            raw_total: 1_250_000,
            payload_bytes: 266_000,
            socket_bytes: 281_000,
        }),
    );
    h.fetch(
        3.5,
        "home",
        FetchEvent::Filed {
            folder: "INBOX".into(),
            count: 41,
        },
    );
    h.fetch(
        3.5,
        "home",
        FetchEvent::Filed {
            folder: "lists".into(),
            count: 9,
        },
    );
    h.fetch(
        3.6,
        "home",
        FetchEvent::Ended {
            summary: Some(summary(50, 1_250_000, 266_000, 2_600)),
            failure: None,
        },
    );
    h.log(
        3.6,
        Level::Info,
        Some("home"),
        "50 messages filed (INBOX 41, lists 9)",
    );
    h.fetch(
        60.0,
        "work",
        FetchEvent::SpoolSize {
            bytes: 12_400,
            messages: Some(3),
        },
    );
    h.at(303.6);
    h
}

/// `home` in the middle of a transfer, six seconds of progress.
fn transferring() -> Harness {
    let mut h = idle();
    h.fetch(400.0, "home", FetchEvent::Stage(Stage::Connecting));
    h.fetch(400.8, "home", FetchEvent::Stage(Stage::Claiming));
    h.log(
        401.0,
        Level::Info,
        Some("home"),
        "claimed 4.97 MB by rename; zstd -3",
    );
    h.fetch(401.0, "home", FetchEvent::Stage(Stage::Transferring));
    for step in 0..=24u64 {
        let raw = step * 95_000 + (step % 3) * 20_000;
        h.fetch(
            401.0 + step as f64 * 0.25,
            "home",
            FetchEvent::Progress(TransferProgress {
                raw_done: raw,
                raw_total: 4_970_000,
                payload_bytes: raw * 10 / 47,
                socket_bytes: raw * 10 / 47 + 3_000 + step * 120,
            }),
        );
    }
    h
}

fn failed() -> Harness {
    let mut h = transferring();
    h.fetch(
        407.5,
        "home",
        FetchEvent::Ended {
            summary: None,
            failure: Some(FetchFailure {
                class: Failure::Transfer,
                message: "connection reset by peer during the transfer; the claim stays on the \
                      server and is fetched first next time"
                    .into(),
            }),
        },
    );
    h.log(
        407.5,
        Level::Error,
        Some("home"),
        "transfer failed: connection reset by peer",
    );
    h.at(420.0);
    h
}

fn forward_on() -> Harness {
    let mut h = idle();
    let addr: SocketAddr = "127.0.0.1:2525".parse().expect("socket address");
    h.tunnel(310.0, "home", TunnelEvent::State(TunnelState::Connecting));
    h.tunnel(
        311.0,
        "home",
        TunnelEvent::State(TunnelState::Listening(addr)),
    );
    h.tunnel(
        330.0,
        "home",
        TunnelEvent::Stats(TunnelStats {
            live: 1,
            total: 12,
            bytes_up: 48_200,
            bytes_down: 3_100,
            socket_sent: 17_800,
            socket_received: 5_200,
            errors: 0,
        }),
    );
    h.log(
        311.0,
        Level::Info,
        Some("home"),
        "SMTP forward listening on 127.0.0.1:2525",
    );
    h
}

/// The ssh layer's message for a changed key (`SshError::HostKeyChanged`).
const CHANGED_DETAIL: &str = "HOST KEY CHANGED for mail.example.org port 22: known_hosts \
    expects ssh-ed25519 SHA256:3TMh1nYAbZ1oGw3rCv0Jq7Tq9m3HqV2nQbYlO0P4hJk \
    (/home/ann/.ssh/known_hosts line 7) but the server sent \
    SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s. This can be a man-in-the-middle \
    attack, or the server was reinstalled. Only if you verified the new key: remove line 7 \
    of /home/ann/.ssh/known_hosts (`ssh-keygen -R 'mail.example.org' -f \
    /home/ann/.ssh/known_hosts`) and connect again";

fn host_key_unknown() -> HostKeyInfo {
    HostKeyInfo {
        host: "mail.example.org".into(),
        port: 22,
        key_type: "ssh-ed25519".into(),
        fingerprint: "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s".into(),
    }
}

fn asking_host_key() -> Harness {
    let mut h = idle();
    h.fetch(400.0, "home", FetchEvent::Stage(Stage::Connecting));
    h.fetch(
        400.3,
        "home",
        FetchEvent::HostKeyUnknown(host_key_unknown()),
    );
    h
}

/// `home`'s transfer finished: the throughput chart stays, the stages
/// show their durations.
fn done() -> Harness {
    let mut h = transferring();
    h.fetch(407.2, "home", FetchEvent::Stage(Stage::Verifying));
    h.fetch(407.6, "home", FetchEvent::Stage(Stage::Delivering));
    for (folder, count) in [("INBOX", 262), ("lists", 48), ("spam", 5)] {
        h.fetch(
            408.0,
            "home",
            FetchEvent::Filed {
                folder: folder.into(),
                count,
            },
        );
    }
    h.fetch(
        408.4,
        "home",
        FetchEvent::Ended {
            summary: Some(summary(315, 4_970_000, 1_057_000, 8_400)),
            failure: None,
        },
    );
    h.log(408.4, Level::Info, Some("home"), FILED_LINE);
    h.at(412.0);
    h
}

/// A config of 20 accounts, `acct01` to `acct20`, on hosts of varied length.
fn many_config() -> String {
    (1..=20)
        .map(|i| {
            let host = match i % 4 {
                0 => format!("mx{i}.example.org"),
                1 => format!("shell.department-{i}.university.example.edu"),
                2 => format!("m{i}.example"),
                _ => format!("mail.host{i}.example.net"),
            };
            format!("[[account]]\nname = \"acct{i:02}\"\nhost = \"{host}\"\n")
        })
        .collect()
}

/// 20 accounts: a history for each, two fetching, one failed, some with
/// mail waiting, one forward on; `acct07` selected.
fn many() -> Harness {
    let config = Config::parse(&many_config(), Path::new("many.toml")).expect("config parses");
    let history: Vec<PastFetch> = (0..120u64)
        .map(|i| {
            let raw = 200_000 + (i * 7_919) % 900_000;
            PastFetch {
                account: format!("acct{:02}", i % 20 + 1),
                finished_unix: Some(BASE_UNIX - (120 - i) * 2 * 3600),
                summary: summary(
                    5 + i % 30,
                    raw,
                    raw / (2 + (i * 7 + i / 20) % 5),
                    700 + (i * 311) % 4_000,
                ),
            }
        })
        .collect();
    let mut h = Harness::new(true);
    h.app = App::new(&config, history, Theme::new(true), 0, start(h.t0));
    h.log(0.0, Level::Info, None, "dashboard started; 20 accounts");
    for (i, name) in ["acct03", "acct11", "acct17"].iter().enumerate() {
        h.fetch(
            5.0 + i as f64,
            name,
            FetchEvent::SpoolSize {
                bytes: 40_000 * (i as u64 + 1),
                messages: Some(3 + i as u64),
            },
        );
    }
    h.fetch(20.0, "acct05", FetchEvent::Stage(Stage::Connecting));
    h.fetch(
        21.0,
        "acct05",
        FetchEvent::Ended {
            summary: None,
            failure: Some(FetchFailure {
                class: Failure::Local,
                message: "cannot connect to m5.example port 22: connection refused".into(),
            }),
        },
    );
    h.log(
        21.0,
        Level::Error,
        Some("acct05"),
        "cannot connect to m5.example port 22: connection refused",
    );
    for name in ["acct07", "acct12"] {
        h.fetch(30.0, name, FetchEvent::Stage(Stage::Connecting));
        h.fetch(30.5, name, FetchEvent::Stage(Stage::Transferring));
        for step in 0..=8u64 {
            h.fetch(
                30.5 + step as f64 * 0.5,
                name,
                FetchEvent::Progress(TransferProgress {
                    raw_done: step * 180_000,
                    raw_total: 3_000_000,
                    payload_bytes: step * 40_000,
                    socket_bytes: step * 42_000,
                }),
            );
        }
    }
    let addr: SocketAddr = "127.0.0.1:2525".parse().expect("socket address");
    h.tunnel(
        31.0,
        "acct02",
        TunnelEvent::State(TunnelState::Listening(addr)),
    );
    h.key(KeyCode::Char('G'));
    for _ in 0..13 {
        h.key(KeyCode::Up);
    }
    h.at(35.0);
    h
}

/// The idle screen with mail in the outboxes: `home` has two messages
/// queued, one going up, five sent today and one refused; `work` one
/// queued. Both accounts are watched.
fn outbox_mail() -> Harness {
    let mut h = watched(idle());
    h.outbox(
        300.0,
        "home",
        OutboxCounts {
            queued: 2,
            sending: 1,
            sent_today: 5,
            failed: 1,
            sent_bytes: 183_000,
            wire_bytes: 41_500,
        },
    );
    h.outbox(
        300.0,
        "work",
        OutboxCounts {
            queued: 1,
            ..OutboxCounts::default()
        },
    );
    h.log(
        300.0,
        Level::Error,
        Some("home"),
        "outbox: 3f2a… refused for good by the server's sendmail (67 EX_NOUSER): \
         <nobody@example.org>: unknown user; kept in the failed folder",
    );
    h.at(303.6);
    h
}

/// `home` watched by the server's watcher for 42 minutes, `work` backing
/// off after its server went away.
fn watched(mut h: Harness) -> Harness {
    h.link(
        200.0,
        "home",
        LinkState::Watching(WatchMode::Inotify),
        42 * 60,
    );
    h.link(
        250.0,
        "work",
        LinkState::BackingOff {
            until: BASE_UNIX + 250 + 160,
            reason: "cannot connect to shell.work.example port 22: connection refused".into(),
        },
        0,
    );
    h
}

/// 20 accounts in every link state: most watched (inotify or the stat
/// loop) for various times, some polling, one connecting, one backing
/// off, one stopped; a few with mail in the outbox; `acct07` selected.
fn many_watching() -> Harness {
    let mut h = many();
    for i in 1..=20u64 {
        let name = format!("acct{i:02}");
        let state = match i {
            4 => LinkState::Connecting,
            9 => LinkState::BackingOff {
                until: BASE_UNIX + 35 + 300,
                reason: "connection timed out".into(),
            },
            13 => LinkState::Stopped(Some("authentication failed".into())),
            _ if i % 6 == 0 => LinkState::Polling {
                every: Duration::from_secs(60),
            },
            _ if i % 5 == 0 => LinkState::Watching(WatchMode::Poll),
            _ => LinkState::Watching(WatchMode::Inotify),
        };
        h.link(34.0, &name, state, i * i * 97);
    }
    for (name, queued, failed) in [("acct02", 4, 0), ("acct07", 1, 0), ("acct15", 0, 2)] {
        h.outbox(
            34.0,
            name,
            OutboxCounts {
                queued,
                failed,
                sent_today: 3,
                sent_bytes: 52_000,
                wire_bytes: 14_100,
                ..OutboxCounts::default()
            },
        );
    }
    h.at(35.0);
    h
}

/// The rows of the panel whose top border carries `title`, inside its
/// borders, as text.
fn panel_rows(screen: &str, title: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let top = lines
        .iter()
        .position(|l| l.contains(&format!("╭{title}")))
        .unwrap_or_else(|| panic!("no panel {title:?}:\n{screen}"));
    let top_chars: Vec<char> = lines[top].chars().collect();
    let start = top_chars.iter().position(|&c| c == '╭').expect("corner");
    let end = start
        + top_chars[start..]
            .iter()
            .position(|&c| c == '╮')
            .expect("right corner");
    let mut rows = Vec::new();
    for line in &lines[top + 1..] {
        let chars: Vec<char> = line.chars().collect();
        if chars.get(start) != Some(&'│') || chars.get(end) != Some(&'│') {
            break;
        }
        rows.push(chars[start + 1..end].iter().collect());
    }
    rows
}

/// The long log line of [`done`].
const FILED_LINE: &str = "315 messages filed (INBOX 262, lists 48, spam 5) into /home/ann/Mail; \
     journal /home/ann/.local/share/mailhaul/journal/home/1764320801.staged removed";
