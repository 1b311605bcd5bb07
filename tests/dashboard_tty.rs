//! The dashboard in a real terminal: `examples/dashboard_load` (which calls
//! `ui::run`) inside tmux. Checks what unit tests cannot: raw mode and the
//! alternate screen work, a resize from 100x30 to 60x20 re-lays the panels,
//! `?` and Esc reach the help overlay, `q` ends `run` cleanly, and `NO_COLOR`
//! in the environment removes every colour from what the terminal receives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The example binary next to this test's binary (cargo builds examples
/// before running tests).
fn dashboard_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir.join("examples").join("dashboard_load");
    bin.exists().then_some(bin)
}

/// A private tmux server, killed by PID on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start(name: &str, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("mailhaul-ui-{}-{name}", std::process::id()),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "ui",
            "-x",
            "100",
            "-y",
            "30",
            command,
        ]);
        tmux
    }

    fn screen(&self, escapes: bool) -> String {
        if escapes {
            self.run(&["capture-pane", "-p", "-e", "-t", "ui"])
        } else {
            self.run(&["capture-pane", "-p", "-t", "ui"])
        }
    }

    /// Waits until the screen satisfies `ready`; returns that screen.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen(false);
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "ui", keys]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let pid = Command::new("tmux")
            .args(["-L", &self.socket, "display-message", "-p", "#{pid}"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            // SAFETY: signals the tmux server this test started, by its PID.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
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

fn prerequisites() -> Option<PathBuf> {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("note: tmux is not installed; skipping the real-terminal dashboard test");
        return None;
    }
    let bin = dashboard_binary();
    if bin.is_none() {
        eprintln!("note: examples/dashboard_load is not built; skipping");
    }
    bin
}

#[test]
fn dashboard_runs_resizes_shows_help_and_quits_in_a_real_terminal() {
    let Some(bin) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("stats.txt");
    let tmux = Tmux::start(
        "colour",
        &format!("{} idle 60 {}", bin.display(), out.display()),
    );
    let wide = tmux.wait_for("the dashboard", |s| s.contains("Accounts (2)"));
    assert!(
        wide.contains("account") && wide.contains("mail.example.org"),
        "{wide}"
    );
    assert!(
        has_colour(&tmux.screen(true)),
        "colours are used without NO_COLOR"
    );

    tmux.run(&["resize-window", "-t", "ui", "-x", "60", "-y", "20"]);
    let narrow = tmux.wait_for("the narrow layout", |s| {
        s.lines()
            .any(|l| l.contains("SMTP forward") && l.contains("History"))
    });
    for panel in ["Accounts (2)", "Transfer", "Log", "? help"] {
        assert!(
            narrow.contains(panel),
            "{panel} missing at 60x20:\n{narrow}"
        );
    }
    assert!(narrow.lines().all(|l| l.chars().count() <= 60), "{narrow}");

    tmux.keys("?");
    tmux.wait_for("help", |s| s.contains("Keys (Esc closes)"));
    tmux.keys("Escape");
    tmux.wait_for("help closed", |s| !s.contains("Keys (Esc closes)"));
    tmux.keys("q");
    let stats = wait_for_file(&out);
    assert!(stats.contains("mode=idle"), "{stats}");
}

#[test]
fn no_color_in_the_environment_removes_every_colour() {
    let Some(bin) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("stats.txt");
    let tmux = Tmux::start(
        "nocolour",
        &format!("env NO_COLOR=1 {} idle 60 {}", bin.display(), out.display()),
    );
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
    wait_for_file(&out);
}
