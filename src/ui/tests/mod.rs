//! Dashboard tests: whole frames rendered into ratatui's `TestBackend` and
//! snapshotted with insta (idle, transferring, error, forward on, help, host
//! key prompt; at 100x30 and 60x20), content assertions at every size from
//! 60x20 to 250x70, and state transitions (events into the model, keys and
//! clicks into engine calls, recorded by an in-memory `Engine`).

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
    Event, FetchEvent, FetchFailure, FetchSummary, HostKeyInfo, Level, Stage, TransferProgress,
    TunnelEvent, TunnelState, TunnelStats,
};
use crate::engine::failure::Failure;

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

/// Snapshots of the main states at the three sizes the dashboard is made
/// for, and of prompts and errors at the smallest supported size and one
/// in between.
#[test]
fn whole_frames_match_their_snapshots() {
    type Make = fn() -> Harness;
    let help: Make = || {
        let mut h = idle();
        h.key(KeyCode::Char('?'));
        h
    };
    let changed: Make = || {
        let mut h = idle();
        h.fetch(400.0, "home", FetchEvent::Stage(Stage::Connecting));
        h.fetch(
            400.3,
            "home",
            FetchEvent::HostKeyChanged {
                key: host_key_unknown(),
                detail: CHANGED_DETAIL.into(),
            },
        );
        h
    };
    let main: [(&str, Make); 5] = [
        ("idle", idle),
        ("transferring", transferring),
        ("done", done),
        ("many", many),
        ("help", help),
    ];
    for (name, make) in main {
        for (w, h) in [(80, 24), (120, 40), (200, 60)] {
            let terminal = make().render(w, h);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
        }
    }
    let others: [(&str, Make); 4] = [
        ("error", failed),
        ("forward_on", forward_on),
        ("host_key_prompt", asking_host_key),
        ("host_key_changed", changed),
    ];
    for (name, make) in others {
        for (w, h) in [(100, 30), (60, 20)] {
            let terminal = make().render(w, h);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
        }
    }
}

#[test]
fn every_panel_stays_legible_from_60x20_to_250x70() {
    for (w, h) in [(60, 20), (80, 24), (100, 30), (160, 45), (250, 70)] {
        let mut harness = transferring();
        let screen = text(harness.render(w, h).backend().buffer());
        for needle in [
            "Accounts",
            "Transfer",
            "History",
            "Log",
            "home",
            if w >= 80 { "mail.example" } else { "…" },
            "transferring",
            "ratio 4.",
            "ETA",
            "raw 2.28 MB",
            "? help",
        ] {
            assert!(
                screen.contains(needle),
                "{w}x{h}: {needle:?} missing:\n{screen}"
            );
        }
        // A forward that is on gets its panel at every size.
        let screen = text(forward_on().render(w, h).backend().buffer());
        for needle in ["SMTP forward", "on 127.0.0.1:2525", "History"] {
            assert!(
                screen.contains(needle),
                "{w}x{h}: {needle:?} missing:\n{screen}"
            );
        }
    }
}

#[test]
fn transfer_panel_shows_gauge_bytes_ratio_rate_and_eta() {
    let mut h = transferring();
    let screen = text(h.render(100, 30).backend().buffer());
    // 24 steps of 95 kB in 6 s: 2.28 MB of 4.97 MB, 45 %, about 380 kB/s.
    assert!(screen.contains(" 45% 2.28 MB of 4.97 MB"), "{screen}");
    assert!(screen.contains("█"), "gauge fill missing:\n{screen}");
    assert!(
        screen.contains("raw 2.28 MB  payload 485 kB  socket 491 kB"),
        "{screen}"
    );
    assert!(screen.contains("ratio 4.70x"), "{screen}");
    assert!(screen.contains("380 kB/s"), "{screen}");
    assert!(screen.contains("ETA 7.1s"), "{screen}");
}

#[test]
fn no_color_theme_draws_without_any_colour() {
    for make in [transferring as fn() -> Harness, failed, forward_on] {
        let mut h = make();
        h.app = {
            let config = Config::parse(CONFIG, Path::new("t.toml")).expect("parses");
            let mut app = App::new(&config, history(), Theme::new(false), 0, start(h.t0));
            // Replay the same model into a colourless app.
            std::mem::swap(&mut app.model, &mut h.app.model);
            app.set_now(h.t0 + Duration::from_secs_f64(h.secs));
            app
        };
        let terminal = h.render(100, 30);
        for cell in terminal.backend().buffer().content() {
            assert_eq!(cell.fg, Color::Reset, "{cell:?}");
            assert_eq!(cell.bg, Color::Reset, "{cell:?}");
        }
    }
    let mut coloured = failed();
    let terminal = coloured.render(100, 30);
    assert!(
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.fg == Color::Red),
        "the colour theme shows errors in red"
    );
}

#[test]
fn help_lists_every_key_of_the_keymap() {
    let mut h = idle();
    assert!(h.key(KeyCode::Char('?')));
    assert_eq!(h.app.overlay(), Some(Overlay::Help));
    let screen = text(h.render(100, 30).backend().buffer());
    for binding in BINDINGS {
        assert!(screen.contains(&keys_label(binding)), "{binding:?}");
        assert!(screen.contains(binding.description), "{binding:?}");
    }
    // The overlay swallows main-screen keys, and Esc closes it.
    h.key(KeyCode::Char('f'));
    assert!(h.engine.calls.is_empty());
    assert!(h.key(KeyCode::Esc));
    assert_eq!(h.app.overlay(), None);
}

#[test]
fn keys_become_engine_calls_for_the_selected_account() {
    let mut h = idle();
    h.key(KeyCode::Char('f'));
    h.key(KeyCode::Char('t'));
    assert!(h.key(KeyCode::Char('j')));
    assert_eq!(h.app.selected(), 1);
    assert!(!h.key(KeyCode::Down), "already on the last account");
    h.key(KeyCode::Char('f'));
    h.key(KeyCode::Char('F'));
    assert!(h.key(KeyCode::Up));
    h.key(KeyCode::Char('t'));
    assert_eq!(
        h.engine.calls,
        [
            "fetch home",
            "toggle_forward home",
            "fetch work",
            "fetch_all",
            "toggle_forward home"
        ]
    );
}

#[test]
fn enter_toggles_the_details_of_the_selected_account() {
    let mut h = failed();
    assert!(h.key(KeyCode::Enter));
    assert_eq!(h.app.overlay(), Some(Overlay::Details));
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("failed at 09:06:47 (just now), exit 7 Transfer"),
        "{screen}"
    );
    assert!(
        screen.contains("fetched first next time"),
        "full error shown:\n{screen}"
    );
    assert!(h.key(KeyCode::Enter));
    assert_eq!(h.app.overlay(), None);
}

#[test]
fn quitting_when_idle_shuts_the_engine_down_at_once() {
    let mut h = idle();
    h.key(KeyCode::Char('q'));
    assert!(h.app.should_quit());
    assert_eq!(h.engine.calls, ["shutdown"]);
}

#[test]
fn quitting_during_a_fetch_asks_first() {
    let mut h = transferring();
    h.key(KeyCode::Char('q'));
    assert!(!h.app.should_quit());
    assert_eq!(h.app.overlay(), Some(Overlay::ConfirmQuit));
    let screen = text(h.render(60, 20).backend().buffer());
    assert!(screen.contains("Fetching now: home."), "{screen}");
    h.key(KeyCode::Char('n'));
    assert_eq!(h.app.overlay(), None);
    assert!(!h.app.should_quit());
    assert!(h.engine.calls.is_empty());

    h.key(KeyCode::Char('q'));
    h.fetch(
        409.0,
        "home",
        FetchEvent::Ended {
            summary: Some(summary(3, 4_970_000, 1_000_000, 8_000)),
            failure: None,
        },
    );
    let screen = text(h.render(60, 20).backend().buffer());
    assert!(screen.contains("No fetch runs any more."), "{screen}");
    h.key(KeyCode::Char('y'));
    assert!(h.app.should_quit());
    assert_eq!(h.engine.calls, ["shutdown"]);
}

#[test]
fn an_unknown_host_key_is_asked_about_and_answered() {
    let mut h = asking_host_key();
    let screen = text(h.render(60, 20).backend().buffer());
    assert!(
        screen.contains("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"),
        "{screen}"
    );
    assert!(
        screen.contains("host key?"),
        "accounts row shows the question:\n{screen}"
    );
    // Main-screen keys wait until it is answered.
    h.key(KeyCode::Char('f'));
    assert!(h.engine.calls.is_empty());
    assert!(h.key(KeyCode::Char('y')));
    assert_eq!(h.engine.calls, ["answer_host_key home true"]);
    assert!(h.app.model.host_keys.is_empty());

    let mut h = asking_host_key();
    h.key(KeyCode::Esc);
    assert_eq!(h.engine.calls, ["answer_host_key home false"]);
}

#[test]
fn a_changed_host_key_cannot_be_accepted_only_dismissed() {
    let mut h = idle();
    h.fetch(
        400.0,
        "home",
        FetchEvent::HostKeyChanged {
            key: host_key_unknown(),
            detail: CHANGED_DETAIL.into(),
        },
    );
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(screen.contains("HOST KEY CHANGED: refused"), "{screen}");
    assert!(!screen.contains("Accept"), "{screen}");
    h.key(KeyCode::Char('y'));
    assert_eq!(h.app.model.host_keys.len(), 1, "y does not accept");
    h.key(KeyCode::Esc);
    assert!(h.app.model.host_keys.is_empty());
    assert!(h.engine.calls.is_empty(), "nothing is sent to the engine");
}

#[test]
fn a_failed_fetch_withdraws_its_unanswered_question() {
    let mut h = asking_host_key();
    h.fetch(
        460.0,
        "home",
        FetchEvent::Ended {
            summary: None,
            failure: Some(FetchFailure {
                class: Failure::HostKey,
                message: "no answer".into(),
            }),
        },
    );
    assert!(h.app.model.host_keys.is_empty());
}

fn home(h: &Harness) -> &super::model::AccountView {
    &h.app.model.accounts[0]
}

#[test]
fn fetch_events_drive_the_account_through_a_fetch() {
    let mut h = idle();
    let history_before = h.app.model.history.len();
    assert!(!home(&h).fetch.is_active());
    assert!(h.fetch(400.0, "home", FetchEvent::Stage(Stage::Connecting)));
    assert!(home(&h).fetch.is_active());
    assert!(home(&h).fetch.filed.is_empty(), "a new fetch starts clean");
    assert!(
        !h.fetch(400.1, "home", FetchEvent::Stage(Stage::Connecting)),
        "no change"
    );
    let progress = TransferProgress {
        raw_done: 1_000,
        raw_total: 2_000,
        payload_bytes: 250,
        socket_bytes: 400,
    };
    assert!(h.fetch(401.0, "home", FetchEvent::Progress(progress)));
    assert!(
        !h.fetch(401.5, "home", FetchEvent::Progress(progress)),
        "same counters"
    );
    h.fetch(
        402.0,
        "home",
        FetchEvent::Progress(TransferProgress {
            raw_done: 2_000,
            ..progress
        }),
    );
    let rate = home(&h).fetch.rate.bytes_per_sec().expect("two samples");
    assert!((rate - 1_000.0).abs() < 1e-6, "{rate}");
    h.fetch(
        402.5,
        "home",
        FetchEvent::Filed {
            folder: "INBOX".into(),
            count: 1,
        },
    );
    h.fetch(
        402.6,
        "home",
        FetchEvent::Filed {
            folder: "INBOX".into(),
            count: 2,
        },
    );
    assert_eq!(home(&h).fetch.filed, [("INBOX".to_string(), 2)]);
    h.fetch(
        402.7,
        "home",
        FetchEvent::Ended {
            summary: Some(summary(2, 2_000, 500, 2_700)),
            failure: None,
        },
    );
    assert!(!home(&h).fetch.is_active());
    assert_eq!(h.app.model.history.len(), history_before + 1);
    let last = h.app.model.history.last().expect("appended");
    assert_eq!(last.account, "home");
    assert_eq!(last.summary.raw_bytes, 2_000);
    assert!(home(&h).spool.is_none());
    assert!(!h.fetch(403.0, "nobody", FetchEvent::Stage(Stage::Connecting)));
}

#[test]
fn the_stage_track_marks_done_current_and_failed_stages() {
    let mut h = transferring();
    let screen = text(h.render(200, 60).backend().buffer());
    assert!(
        screen.contains("✓connect 800ms ✓claim 200ms ▶transfer 6.0s ·verify ·deliver"),
        "{screen}"
    );
    let mut h = failed();
    let screen = text(h.render(200, 60).backend().buffer());
    assert!(
        screen.contains("✓connect 800ms ✓claim 200ms ✗transfer 6.5s ·verify ·deliver"),
        "{screen}"
    );
    let mut h = asking_host_key();
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(screen.contains("▶connect 300ms ·claim"), "{screen}");
    assert!(
        !screen.contains("0 B of 0 B"),
        "no zeros before the transfer:
{screen}"
    );
}

#[test]
fn a_transfer_without_counters_for_five_seconds_shows_as_stalled() {
    let mut h = transferring();
    h.at(409.0);
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("ETA") && !screen.contains("stalled"),
        "{screen}"
    );
    h.at(412.5);
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("stalled 5s") && !screen.contains("ETA"),
        "{screen}"
    );
}

#[test]
fn new_mail_waiting_shows_on_the_account_and_the_footer() {
    let mut h = idle();
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("new: 3 msgs 12.4 kB"), "{screen}");
    assert!(screen.contains("new mail waiting: work"), "{screen}");
}

#[test]
fn forward_panel_shows_state_connections_bytes_and_errors() {
    let mut h = forward_on();
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(screen.contains("on 127.0.0.1:2525"), "{screen}");
    assert!(screen.contains("→ mail.example.org:25"), "{screen}");
    assert!(screen.contains("conn 1 live/12 total"), "{screen}");
    assert!(screen.contains("up 48.2 kB  down 3.10 kB"), "{screen}");
    h.tunnel(
        340.0,
        "home",
        TunnelEvent::Error("channel open refused by server".into()),
    );
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("error: channel open refused by server"),
        "{screen}"
    );
    assert!(!h.tunnel(
        341.0,
        "home",
        TunnelEvent::State(TunnelState::Listening("127.0.0.1:2525".parse().unwrap()))
    ));
}

#[test]
fn clicking_an_account_selects_it() {
    let mut h = idle();
    h.render(100, 30);
    // Wide layout: border row 0, header row 1, `home` row 2, `work` row 3.
    let click = |row| {
        Input::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 10,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    assert!(h.app.handle_input(&click(3), &mut h.engine));
    assert_eq!(h.app.selected(), 1);
    assert!(h.app.handle_input(&click(2), &mut h.engine));
    assert_eq!(h.app.selected(), 0);
    assert!(
        !h.app.handle_input(&click(25), &mut h.engine),
        "outside the list"
    );
    assert_eq!(h.app.selected(), 0);
}

#[test]
fn the_screen_only_needs_timed_redraws_for_time_labels() {
    let mut h = Harness::new(true);
    let config = Config::parse(CONFIG, Path::new("test.toml")).expect("test config parses");
    h.app = App::new(&config, Vec::new(), Theme::new(true), 0, start(h.t0));
    assert_eq!(h.app.next_timed_redraw(), None, "nothing time-dependent");
    h.fetch(10.0, "home", FetchEvent::Stage(Stage::Connecting));
    let now = h.t0 + Duration::from_secs(10);
    assert_eq!(
        h.app.next_timed_redraw(),
        Some(now + Duration::from_secs(1))
    );
    h.fetch(
        12.0,
        "home",
        FetchEvent::Ended {
            summary: Some(summary(1, 10, 5, 2_000)),
            failure: None,
        },
    );
    h.at(50.0);
    // "just now" turns into "1m ago" a minute after the fetch ended.
    assert_eq!(
        h.app.next_timed_redraw(),
        Some(h.t0 + Duration::from_secs(72))
    );
}

#[test]
fn log_keeps_newest_lines_and_scrolls_back() {
    let mut h = Harness::new(true);
    for i in 0..40 {
        h.log(i as f64, Level::Info, None, &format!("line {i:02}"));
    }
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("line 39") && !screen.contains("line 20"),
        "{screen}"
    );
    assert!(h.key(KeyCode::PageUp));
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(!screen.contains("line 39"), "{screen}");
    assert!(screen.contains("newer below"), "{screen}");
    assert!(h.key(KeyCode::PageDown));
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(screen.contains("line 39"), "{screen}");
}

fn loop_app() -> App {
    let config = Config::parse(CONFIG, Path::new("test.toml")).expect("test config parses");
    App::new(
        &config,
        history(),
        Theme::new(true),
        0,
        start(Instant::now()),
    )
}

#[test]
fn the_loop_caps_frames_at_30_a_second_under_a_flood_of_events() {
    let mut app = loop_app();
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("test backend");
    let (_input_tx, input_rx) = crossbeam_channel::unbounded();
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let feeder = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(1);
        let mut sent = 0u64;
        let mut raw = 0;
        while Instant::now() < end {
            raw += 1_000;
            let event = Event::Fetch {
                account: "home".into(),
                event: FetchEvent::Progress(TransferProgress {
                    raw_done: raw,
                    raw_total: u64::MAX,
                    payload_bytes: raw / 4,
                    socket_bytes: raw / 4,
                }),
            };
            tx.send(event)
                .expect("the loop runs until the sender is dropped");
            sent += 1;
        }
        sent
    });
    let mut engine = Recorder::default();
    let start = Instant::now();
    let stats = super::event_loop(&mut terminal, &mut app, &mut engine, &input_rx, &rx)
        .expect("the loop ends cleanly");
    let secs = start.elapsed().as_secs_f64();
    let sent = feeder.join().expect("feeder");
    assert_eq!(stats.events, sent, "every event is applied");
    assert!(sent > 1_000, "a flood: {sent} events");
    assert!(
        (stats.frames as f64) <= secs * f64::from(super::FRAME_RATE) + 2.0,
        "{} frames in {secs:.2}s",
        stats.frames
    );
    assert!(
        stats.frames >= 3,
        "frames keep coming under a flood: {stats:?}"
    );
    assert!(engine.calls.is_empty());
}

#[test]
fn the_loop_draws_nothing_while_no_event_comes() {
    let mut app = loop_app();
    let mut terminal = Terminal::new(TestBackend::new(60, 20)).expect("test backend");
    let (_input_tx, input_rx) = crossbeam_channel::unbounded();
    let (tx, rx) = crossbeam_channel::bounded::<Event>(1);
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1_500));
        drop(tx);
    });
    let stats = super::event_loop(
        &mut terminal,
        &mut app,
        &mut Recorder::default(),
        &input_rx,
        &rx,
    )
    .expect("the loop ends cleanly");
    holder.join().expect("holder");
    assert_eq!(stats.frames, 1, "only the first frame: {stats:?}");
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("Accounts (2)"), "{screen}");
}

#[test]
fn the_loop_ends_when_the_user_quits_and_tells_the_engine() {
    let mut app = loop_app();
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("test backend");
    let (input_tx, input_rx) = crossbeam_channel::unbounded();
    let (_tx, rx) = crossbeam_channel::bounded::<Event>(1);
    input_tx
        .send(Input::Key(KeyEvent::new(
            KeyCode::Char('q'),
            KeyModifiers::NONE,
        )))
        .expect("queue a key");
    let mut engine = Recorder::default();
    let stats = super::event_loop(&mut terminal, &mut app, &mut engine, &input_rx, &rx)
        .expect("the loop ends cleanly");
    assert_eq!(stats.inputs, 1);
    assert_eq!(engine.calls, ["shutdown"]);
}

#[test]
fn tiny_and_odd_sizes_draw_without_panicking() {
    type Make = fn() -> Harness;
    let states: [Make; 5] = [idle, transferring, failed, forward_on, asking_host_key];
    for make in states {
        for (w, h) in [
            (1, 1),
            (10, 3),
            (20, 5),
            (40, 10),
            (59, 19),
            (99, 23),
            (300, 90),
        ] {
            let mut harness = make();
            harness.key(KeyCode::Char('?'));
            harness.render(w, h);
            harness.key(KeyCode::Esc);
            harness.key(KeyCode::Enter);
            harness.render(w, h);
        }
    }
}

#[test]
fn a_config_without_accounts_still_draws_and_ignores_account_keys() {
    let config = Config::parse("", Path::new("empty.toml")).expect("an empty config parses");
    let mut h = Harness::new(true);
    h.app = App::new(&config, Vec::new(), Theme::new(true), 0, start(h.t0));
    for key in ['f', 't', 'j', 'k', 'G'] {
        h.key(KeyCode::Char(key));
    }
    h.key(KeyCode::Enter);
    assert_eq!(h.app.overlay(), None, "no details without an account");
    let screen = text(h.render(60, 20).backend().buffer());
    assert!(screen.contains("no accounts: add [[account]]"), "{screen}");
    h.key(KeyCode::Char('F'));
    assert_eq!(h.engine.calls, ["fetch_all"]);
}

#[test]
fn debug_lines_stay_out_of_the_log_panel() {
    let mut h = Harness::new(true);
    h.log(1.0, Level::Debug, None, "channel window 2097152");
    h.log(2.0, Level::Warn, Some("home"), "lock busy, waiting");
    assert_eq!(h.app.model.log.len(), 1);
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("WARN  home: lock busy, waiting"),
        "{screen}"
    );
}

#[test]
fn each_account_shows_its_last_fetch_from_the_history_file_with_its_age() {
    let config = Config::parse(CONFIG, Path::new("test.toml")).expect("test config parses");
    let now = Moment::now();
    let history = vec![
        PastFetch {
            account: "home".into(),
            finished_unix: Some(now.unix_secs - 3 * 86_400),
            summary: summary(7, 1_000, 250, 900),
        },
        PastFetch {
            account: "home".into(),
            finished_unix: Some(now.unix_secs - 3 * 3_600 - 30),
            summary: summary(42, 40_000, 9_000, 1_200),
        },
        PastFetch {
            account: "work".into(),
            finished_unix: None,
            summary: summary(5, 1_000, 250, 900),
        },
    ];
    let model = super::model::Model::new(&config, history, now);
    let home = model.accounts.iter().find(|a| a.name == "home").unwrap();
    let last = home
        .last
        .as_ref()
        .expect("home's last fetch comes from the history");
    assert_eq!(super::format::ago(last.age(Instant::now())), "3h ago");
    assert!(
        matches!(&last.outcome, super::model::Outcome::Done(s) if s.messages == 42),
        "the latest entry wins"
    );
    let work = model.accounts.iter().find(|a| a.name == "work").unwrap();
    assert!(work.last.is_none(), "an entry without a time seeds nothing");
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

#[test]
fn history_chart_has_axes_with_times_and_units_and_the_totals() {
    let mut h = idle();
    let screen = text(h.render(120, 40).backend().buffer());
    let history = panel_rows(&screen, "History").join("\n");
    // 13 fetches of `home` from the file, every 5 h until 5 h before the
    // start (Tuesday 11:00 UTC on; the axis starts a twentieth earlier), and the one of this session.
    assert!(screen.contains("History · all (13 fetches)"), "{screen}");
    for needle in [
        "saved today 2.12 MB · 7 days 9.79 MB · all 9.79 MB",
        "compression ratio per fetch",
        "6.0x",
        "bytes on the wire per fetch",
        "522 kB",
        "0 B",
        "Tue 07h",
        "Fri 09h",
        "last 4.70x  wire 283 kB  of 1.25 MB  in 2.6s",
    ] {
        assert!(history.contains(needle), "{needle:?} missing:\n{history}");
    }
    let wide = text(h.render(200, 60).backend().buffer());
    assert!(
        wide.contains(
            "saved today 2.12 MB · 7 days 9.79 MB · all 9.79 MB · 836 msgs in 13 fetches"
        ),
        "{wide}"
    );
    // `r` narrows to the last day: times of day on the axis.
    assert!(h.key(KeyCode::Char('r')));
    let screen = text(h.render(120, 40).backend().buffer());
    let history = panel_rows(&screen, "History").join("\n");
    assert!(
        screen.contains("History · last day (5 fetches)"),
        "{screen}"
    );
    assert!(
        history.contains("09:05") && history.contains("21:05") && !history.contains("Tue"),
        "{history}"
    );
    h.key(KeyCode::Char('r'));
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(
        screen.contains("History · last week (13 fetches)"),
        "{screen}"
    );
    h.key(KeyCode::Char('r'));
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("History · all"), "{screen}");
}

#[test]
fn the_history_of_an_account_without_fetches_in_range_says_so() {
    let mut h = idle();
    h.key(KeyCode::Char('j'));
    h.key(KeyCode::Char('r'));
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(
        screen.contains("no fetches in the last day (r: range)"),
        "work's fetches are older than a day:\n{screen}"
    );
}

#[test]
fn throughput_chart_is_labelled_with_now_peak_average_and_axes() {
    let mut h = transferring();
    let screen = text(h.render(120, 40).backend().buffer());
    let transfer = panel_rows(&screen, "Transfer").join("\n");
    for needle in [
        "throughput  now 380 kB/s  peak 400 kB/s  avg 380 kB/s",
        "400 kB/s│",
        "0 B/s",
        "0s",
        "6s",
    ] {
        assert!(transfer.contains(needle), "{needle:?} missing:\n{transfer}");
    }
    // A narrower panel drops the word, never a figure's end.
    let screen = text(h.render(100, 30).backend().buffer());
    let transfer = panel_rows(&screen, "Transfer").join("\n");
    assert!(
        transfer.contains("now 380 kB/s  peak 400 kB/s  avg 380 kB/s")
            && !transfer.contains("throughput"),
        "{transfer}"
    );
    // Once done, "now" goes; peak and average stay.
    let mut h = done();
    let screen = text(h.render(120, 40).backend().buffer());
    let transfer = panel_rows(&screen, "Transfer").join("\n");
    assert!(
        transfer.contains("throughput  peak 400 kB/s  avg 380 kB/s"),
        "{transfer}"
    );
    let screen = text(h.render(200, 60).backend().buffer());
    assert!(
        screen.contains("✓verify 400ms ✓deliver 800ms"),
        "{transfer}"
    );
}

/// The long log line of [`done`].
const FILED_LINE: &str = "315 messages filed (INBOX 262, lists 48, spam 5) into /home/ann/Mail; \
     journal /home/ann/.local/share/mailhaul/journal/home/1764320801.staged removed";

#[test]
fn long_log_lines_wrap_at_spaces_with_home_as_tilde_and_short_paths() {
    let mut h = done();
    for (w, height) in [(80, 24), (120, 40), (200, 60)] {
        let screen = text(h.render(w, height).backend().buffer());
        let log = panel_rows(&screen, "Log");
        let first = log
            .iter()
            .position(|r| r.starts_with("09:06:48"))
            .unwrap_or_else(|| panic!("{w}x{height}: the newest line is missing:\n{screen}"));
        // Rows joined again at single spaces give the line back exactly:
        // it was broken only at spaces, and nothing was cut.
        let rejoined: Vec<&str> = log[first..].iter().map(|r| r.trim()).collect();
        let max_path = (usize::from(w - 2) * 2 / 3).max(24);
        let expected = format!(
            "09:06:48 info  home: {}",
            super::format::tidy_paths(FILED_LINE, Some("/home/ann"), max_path)
        );
        assert_eq!(
            rejoined.join(" "),
            expected,
            "{w}x{height}:\n{}",
            log.join("\n")
        );
        assert!(expected.contains("~/Mail;") && !expected.contains("/home/ann"));
        let rows = log.len() - first;
        match w {
            80 => {
                assert_eq!(rows, 3, "{}", log.join("\n"));
                assert!(
                    expected.contains("…"),
                    "the long path is elided: {expected}"
                );
            }
            120 => assert_eq!(rows, 2, "{}", log.join("\n")),
            _ => assert_eq!(rows, 1, "{}", log.join("\n")),
        }
    }
}

#[test]
fn twenty_accounts_sort_filter_and_keep_the_selection() {
    let mut h = many();
    assert_eq!(h.app.model.accounts[h.app.selected()].name, "acct07");
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("Accounts (20)"), "{screen}");
    let table = panel_rows(&screen, "Accounts (20)").join("\n");
    for needle in [
        "▶ acct07",
        "transfer 48%",
        "error just now",
        "new: 3 msgs 40.0 kB",
        " on ",
    ] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }
    // Sort by activity: the two fetching accounts first, then the failed
    // one, then those with mail waiting.
    assert!(h.key(KeyCode::Char('s')));
    assert!(h.key(KeyCode::Char('s')));
    let order: Vec<String> = h
        .app
        .order()
        .iter()
        .map(|&i| h.app.model.accounts[i].name.clone())
        .collect();
    assert_eq!(
        order[..6],
        ["acct07", "acct12", "acct05", "acct03", "acct11", "acct17"]
    );
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("Accounts (20) by activity"), "{screen}");
    assert_eq!(
        h.app.model.accounts[h.app.selected()].name,
        "acct07",
        "sorting keeps the selected account"
    );
    // Down moves in the listed order.
    h.key(KeyCode::Down);
    assert_eq!(h.app.model.accounts[h.app.selected()].name, "acct12");
    // `/` filters by name; typed keys go to the filter, not to actions.
    assert!(h.key(KeyCode::Char('/')));
    for c in "ct1".chars() {
        assert!(h.key(KeyCode::Char(c)));
    }
    assert!(h.engine.calls.is_empty(), "{:?}", h.engine.calls);
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(
        screen.contains("Accounts (10 of 20) by activity /ct1"),
        "{screen}"
    );
    assert!(screen.contains("filter: ct1"), "{screen}");
    assert!(h.key(KeyCode::Char('7')));
    assert_eq!(h.app.order().len(), 1);
    assert_eq!(
        h.app.model.accounts[h.app.selected()].name,
        "acct17",
        "the selection moves to what the filter lists"
    );
    h.key(KeyCode::Enter);
    h.key(KeyCode::Char('f'));
    assert_eq!(h.engine.calls, ["fetch acct17"], "Enter ends typing");
    // A filter that matches nothing says so; Esc clears it.
    h.key(KeyCode::Char('/'));
    h.key(KeyCode::Char('x'));
    let screen = text(h.render(80, 24).backend().buffer());
    assert!(
        screen.contains("no account name contains \"ct17x\""),
        "{screen}"
    );
    h.key(KeyCode::Char('f'));
    assert_eq!(h.engine.calls.len(), 1, "typed, not fetched");
    h.key(KeyCode::Esc);
    assert_eq!(h.app.order().len(), 20);
    // By name, by ratio, back to config order.
    h.key(KeyCode::Char('s'));
    let ratios: Vec<f64> = h
        .app
        .order()
        .iter()
        .map(|&i| {
            super::stats::recent_ratios(&h.app.model.history, &h.app.model.accounts[i].name, 1)[0]
        })
        .collect();
    assert!(ratios.windows(2).all(|w| w[0] >= w[1]), "{ratios:?}");
    h.key(KeyCode::Char('s'));
    assert_eq!(h.app.order(), (0..20).collect::<Vec<_>>());
}

#[test]
fn details_list_the_accounts_recent_errors_newest_first() {
    let mut h = many();
    h.key(KeyCode::Char('g'));
    for _ in 0..4 {
        h.key(KeyCode::Down);
    }
    assert_eq!(h.app.model.accounts[h.app.selected()].name, "acct05");
    h.tunnel(
        36.0,
        "acct05",
        TunnelEvent::Error("listen address 127.0.0.1:2525 is in use".into()),
    );
    h.key(KeyCode::Enter);
    let screen = text(h.render(120, 40).backend().buffer());
    let details = panel_rows(&screen, "acct05 (Esc closes)").join("\n");
    assert!(details.contains("recent errors"), "{details}");
    let forward = details
        .find("09:00:36 forward: listen address 127.0.0.1:2525 is in use")
        .unwrap_or_else(|| panic!("{details}"));
    let connect = details
        .find("09:00:21 cannot connect to m5.example port 22")
        .unwrap_or_else(|| panic!("{details}"));
    assert!(forward < connect, "newest first:\n{details}");
    assert_eq!(
        details.matches("cannot connect").count(),
        2,
        "the last outcome and one recent error (the log line repeats it):\n{details}"
    );
}

#[test]
fn before_the_first_fetch_the_history_takes_the_width() {
    let mut h = Harness::new(true);
    let screen = text(h.render(120, 40).backend().buffer());
    let lines: Vec<&str> = screen.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("╭Transfer") && l.contains("╭SMTP forward")),
        "transfer and forward share a strip:\n{screen}"
    );
    let history = lines
        .iter()
        .find(|l| l.contains("╭History"))
        .expect("a history panel");
    assert!(
        history.starts_with("╭History") && history.ends_with('╮'),
        "the history spans the width:\n{screen}"
    );
    // Once a fetch starts, the transfer gets its column back.
    h.fetch(1.0, "home", FetchEvent::Stage(Stage::Connecting));
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("╭Transfer") && l.contains("╭SMTP forward")),
        "{screen}"
    );
    assert!(
        !screen.lines().any(|l| l.starts_with("╭History")),
        "{screen}"
    );
}
