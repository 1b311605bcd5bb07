//! The dashboard in a real terminal: this test binary runs itself inside
//! tmux as a small dashboard program (`ui::run` with an engine that records
//! its calls), then drives it with keys. Checks what unit tests cannot: raw
//! mode and the alternate screen work, every panel (with watched accounts
//! and mail in the outbox) fits 80x24 and a resize to
//! 60x20 re-lays them, keys typed in the terminal reach the engine, `?` and
//! Esc reach the help overlay, a typed `/` filter takes letters that are
//! keys elsewhere, `q` ends `run` cleanly, `NO_COLOR` in the environment
//! removes every colour from what the terminal receives, and a panic leaves
//! the alternate screen and mouse capture.
//!
//! `harness = false` (Cargo.toml): `main` is either the checks or, with
//! `MAILHAUL_DASHBOARD_CHILD=FILE` set, the dashboard program itself.

use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mailhaul::config::Config;
use mailhaul::engine::event::{Event, FetchEvent, Level, LinkState, OutboxCounts};
use mailhaul::engine::watch::WatchMode;
use mailhaul::ui::{self, Engine};

#[path = "common/tmux.rs"]
mod tmux;
use tmux::Tmux;

/// Names the file the child writes its engine calls to when the dashboard ends.
const CHILD_ENV: &str = "MAILHAUL_DASHBOARD_CHILD";
/// When set, the child's engine panics on `fetch`, to test the panic hook.
const PANIC_ENV: &str = "MAILHAUL_DASHBOARD_PANIC";

/// Records every call, one per line.
struct RecordingEngine {
    calls: Vec<String>,
}

impl Engine for RecordingEngine {
    fn fetch(&mut self, account: &str) {
        if std::env::var_os(PANIC_ENV).is_some() {
            panic!("engine panicked on purpose");
        }
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

/// Hands the calls over when `run` drops the engine.
impl Drop for RecordingEngine {
    fn drop(&mut self) {
        if let Ok(path) = std::env::var(CHILD_ENV) {
            let _ = std::fs::write(path, self.calls.join("\n") + "\n");
        }
    }
}

/// The child: a dashboard with two accounts, new mail on `work`.
fn child() -> anyhow::Result<()> {
    let config = Config::parse(
        "[[account]]\nname = \"home\"\nhost = \"mail.example.org\"\n\n\
         [[account]]\nname = \"work\"\nhost = \"shell.work.example\"\n",
        Path::new("tty.toml"),
    )?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let send = |tx: &Sender<Event>, event| tx.send(event).expect("the dashboard listens");
    send(
        &tx,
        Event::Log {
            level: Level::Info,
            account: None,
            message: "dashboard test child".into(),
        },
    );
    send(
        &tx,
        Event::Fetch {
            account: "work".into(),
            event: FetchEvent::SpoolSize {
                bytes: 12_400,
                messages: Some(3),
            },
        },
    );
    // `home` watched for five minutes, `work`'s server down, mail in
    // `home`'s outbox (what the supervisor reports).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    send(
        &tx,
        Event::Link {
            account: "home".into(),
            state: LinkState::Watching(WatchMode::Inotify),
            since: now - 5 * 60 - 10,
        },
    );
    send(
        &tx,
        Event::Link {
            account: "work".into(),
            state: LinkState::BackingOff {
                until: now + 600,
                reason: "connection refused".into(),
            },
            since: now,
        },
    );
    send(
        &tx,
        Event::Outbox {
            account: "home".into(),
            counts: OutboxCounts {
                queued: 2,
                failed: 1,
                ..OutboxCounts::default()
            },
        },
    );
    // `tx` lives on: the dashboard ends only when the user quits.
    ui::run(
        &config,
        Vec::new(),
        RecordingEngine { calls: Vec::new() },
        rx,
    )?;
    drop(tx);
    Ok(())
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} was not written: the dashboard did not end",
        path.display()
    );
}

/// Whether the captured screen asks the terminal for any colour (SGR 30-37,
/// 40-47, 90-97, 100-107, or 256/RGB colours).
fn has_colour(screen: &str) -> bool {
    screen.split("\x1b[").skip(1).any(|seq| {
        let params = seq.split('m').next().unwrap_or("");
        params.split(';').any(|p| {
            matches!(
                p.parse::<u32>(),
                Ok(30..=37 | 38 | 40..=47 | 48 | 90..=97 | 100..=107)
            )
        })
    })
}

/// The shell command that runs this binary as the dashboard child, with
/// extra environment settings (`NAME=value `...).
fn child_command(out: &Path, extra_env: &str) -> String {
    let exe = std::env::current_exe().expect("own path");
    format!(
        "env {extra_env}{CHILD_ENV}={} {}",
        out.display(),
        exe.display()
    )
}

fn dashboard_runs_resizes_takes_keys_and_quits_in_a_real_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("calls.txt");
    let tmux = Tmux::start_sized("colour", &child_command(&out, ""), 80, 24);
    let first = tmux.wait_for("the dashboard", |s| {
        s.contains("Accounts (2)") && s.contains("new 12.4 kB") && s.contains("? help")
    });
    for needle in [
        "account",
        "mail.example.org",
        "Transfer",
        "History",
        "no fetches yet",
        "Log",
        "dashboard test child",
        "new mail waiting: work",
        "? help",
        "watching 5m",
        "retry ",
        "Outbox queued 2 · sending 0 · sent today 0 · failed 1",
    ] {
        assert!(
            first.contains(needle),
            "{needle:?} missing at 80x24:\n{first}"
        );
    }
    assert_eq!(first.lines().count(), 24, "{first}");
    assert!(first.lines().all(|l| l.chars().count() <= 80), "{first}");
    assert!(
        has_colour(&tmux.screen(true)),
        "colours are used without NO_COLOR"
    );

    tmux.run(&["resize-window", "-t", "ui", "-x", "60", "-y", "20"]);
    let narrow = tmux.wait_for("the narrow layout", |s| {
        // Redrawn, not just cropped: the top border ends at column 60; and
        // drawn to the end (a capture can land mid-frame): the key line,
        // the last one drawn, is there.
        s.lines().count() == 20
            && s.lines().all(|l| l.chars().count() <= 60)
            && s.lines()
                .next()
                .is_some_and(|l| l.ends_with('╮') && l.chars().count() == 60)
            && s.contains("? help")
    });
    for panel in [
        "Accounts (2)",
        "Transfer",
        "History · all",
        "Outbox queued 2 · sending 0 · sent today 0 · failed 1",
        "Log",
        "? help",
    ] {
        assert!(
            narrow.contains(panel),
            "{panel} missing at 60x20:\n{narrow}"
        );
    }
    assert!(narrow.lines().all(|l| l.chars().count() <= 60), "{narrow}");

    assert!(narrow.contains("new mail waiting: work"), "{narrow}");

    tmux.keys("?");
    tmux.wait_for("help", |s| s.contains("Keys (Esc closes)"));
    tmux.keys("Escape");
    tmux.wait_for("help closed", |s| !s.contains("Keys (Esc closes)"));
    tmux.keys("f");
    tmux.keys("j");
    tmux.wait_for("work selected", |s| s.contains("▶ work"));
    tmux.keys("F");
    tmux.keys("t");
    tmux.keys("o");
    // A filter: its letters are typed, not acted on; the selection moves
    // to what it lists.
    tmux.keys("/");
    tmux.keys("hof");
    tmux.wait_for("the typed filter", |s| s.contains("filter: hof"));
    tmux.keys("BSpace");
    tmux.keys("Enter");
    tmux.wait_for("home listed alone", |s| {
        s.contains("Accounts (1 of 2)") && s.contains("▶ home")
    });
    tmux.keys("f");
    tmux.keys("q");
    let calls = wait_for_file(&out);
    assert_eq!(
        calls,
        "fetch home\nfetch_all\ntoggle_forward work\nflush_outbox work\nfetch home\nshutdown\n",
        "keys typed in the terminal reach the engine in order"
    );
}

fn no_color_in_the_environment_removes_every_colour() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("calls.txt");
    let tmux = Tmux::start("nocolour", &child_command(&out, "NO_COLOR=1 "));
    tmux.wait_for("the dashboard", |s| s.contains("Accounts (2)"));
    let screen = tmux.screen(true);
    assert!(
        !has_colour(&screen),
        "colour escapes under NO_COLOR:\n{screen:?}"
    );
    assert!(
        screen.contains("\x1b[7m"),
        "the selection is shown in reverse video"
    );
    tmux.keys("q");
    assert_eq!(wait_for_file(&out), "shutdown\n");
}

fn a_panic_gives_the_terminal_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("calls.txt");
    let tmux = Tmux::start("panic", &child_command(&out, &format!("{PANIC_ENV}=1 ")));
    // Keep the pane after the child dies, to look at what it left behind.
    tmux.keep_when_dead();
    tmux.wait_for("the dashboard", |s| s.contains("Accounts (2)"));
    assert_eq!(
        tmux.pane("alternate_on"),
        "1",
        "the dashboard uses the alternate screen"
    );
    assert_eq!(tmux.pane("mouse_any_flag"), "1", "and captures the mouse");
    tmux.keys("f");
    let after = tmux.wait_for("the panic message", |s| {
        s.contains("engine panicked on purpose")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.pane("pane_dead") != "1" {
        assert!(
            Instant::now() < deadline,
            "the child did not exit:\n{after}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        tmux.pane("alternate_on"),
        "0",
        "back on the main screen:\n{after}"
    );
    assert_eq!(tmux.pane("mouse_any_flag"), "0", "mouse capture released");
    assert_eq!(
        tmux.pane("mouse_standard_flag"),
        "0",
        "mouse capture released"
    );
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    tmux::require();
    let tests: [(&str, fn()); 3] = [
        (
            "dashboard_runs_resizes_takes_keys_and_quits_in_a_real_terminal",
            dashboard_runs_resizes_takes_keys_and_quits_in_a_real_terminal,
        ),
        (
            "no_color_in_the_environment_removes_every_colour",
            no_color_in_the_environment_removes_every_colour,
        ),
        (
            "a_panic_gives_the_terminal_back",
            a_panic_gives_the_terminal_back,
        ),
    ];
    for (name, test) in tests {
        print!("test {name} ... ");
        test();
        println!("ok");
    }
    Ok(())
}
