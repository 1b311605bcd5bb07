//! A private tmux server running one program in a pseudo-terminal, for
//! tests of the real terminal path: type keys, read the screen
//! (`capture-pane`), ask tmux about the pane (alternate screen, mouse, exit).
//! Used by `tests/dashboard_tty.rs` (through `#[path]`) and by the tests of
//! the real binary's dashboard.

// Each test binary uses only a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long [`Tmux::wait_for`] waits by default.
pub const WAIT: Duration = Duration::from_secs(15);

/// A tmux server on its own socket with one session `ui`; its server is
/// ended by PID on drop (and with it the program in the pane).
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs a tmux command on this server; panics if it fails.
    pub fn run(&self, args: &[&str]) -> String {
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

    /// Starts `command` (a shell command line) in a 100x30 terminal.
    pub fn start(name: &str, command: &str) -> Tmux {
        Tmux::start_sized(name, command, 100, 30)
    }

    /// Starts `command` (a shell command line) in a `width`x`height`
    /// terminal; `name` keeps the sockets of one test process apart.
    pub fn start_sized(name: &str, command: &str, width: u16, height: u16) -> Tmux {
        require();
        let tmux = Tmux {
            socket: format!("mailhaul-ui-{}-{name}", std::process::id()),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "ui",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        tmux
    }

    /// The screen's text, with the SGR escapes when `escapes`.
    pub fn screen(&self, escapes: bool) -> String {
        if escapes {
            self.run(&["capture-pane", "-p", "-e", "-t", "ui"])
        } else {
            self.run(&["capture-pane", "-p", "-t", "ui"])
        }
    }

    /// Waits up to [`WAIT`] until the screen satisfies `ready`; returns
    /// that screen.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        self.wait_for_within(WAIT, what, ready)
    }

    /// Waits up to `limit` until the screen satisfies `ready`; returns that
    /// screen, or panics showing the last one.
    pub fn wait_for_within(
        &self,
        limit: Duration,
        what: &str,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
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

    /// A tmux format variable of the pane (`alternate_on`, `pane_dead`, ...).
    pub fn pane(&self, variable: &str) -> String {
        self.run(&[
            "display-message",
            "-p",
            "-t",
            "ui",
            &format!("#{{{variable}}}"),
        ])
        .trim()
        .to_string()
    }

    /// Types keys (tmux key names: `q`, `Escape`, `Enter`, ...).
    pub fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "ui", keys]);
    }

    /// Keeps the pane (and its last screen) after the program exits, so that
    /// its exit status and what it left on the terminal can be checked.
    pub fn keep_when_dead(&self) {
        self.run(&["set-option", "-t", "ui", "remain-on-exit", "on"]);
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

/// `command` (a shell command line) followed by writing its exit status to
/// `path`, for [`wait_exit_status`]. The status is taken from the shell, not
/// from tmux: tmux 3.3a sometimes leaves a dead pane's program unreaped, with
/// no status to report.
pub fn with_exit_status(command: &str, path: &Path) -> String {
    format!("{command}; echo $? > '{}'", path.display())
}

/// Waits up to `limit` for the status file of a [`with_exit_status`]
/// command; returns the status, or panics showing the screen.
pub fn wait_exit_status(tmux: &Tmux, path: &Path, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the program did not exit; screen:\n{}",
            tmux.screen(false)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Panics, naming the package, unless tmux is installed: a terminal test
/// without tmux fails, it never passes untested.
/// (Self-contained: `tests/dashboard_tty.rs` includes this file alone.)
pub fn require() {
    let installed = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("tmux").is_file()));
    assert!(
        installed,
        "this test needs tmux, which is not installed: `apt-get install tmux` \
         (`bash tests/run-all.sh` installs every package the tests need)"
    );
}
