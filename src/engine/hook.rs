//! The new-mail hook: `account.on_new_mail = ["argv", ...]`, run after a
//! fetch that filed messages (a desktop notification, a mail indexer).
//!
//! It runs on a thread of its own and never blocks or fails a fetch: the
//! command (no shell; argv as configured) gets no stdin, its output is
//! dropped but for the end of stderr, which is logged when it fails; one
//! that runs longer than [`HOOK_TIMEOUT`] is killed (by its PID) and logged.
//!
//! Its environment, besides the inherited one:
//! - `MAILHAUL_ACCOUNT`: the account's name;
//! - `MAILHAUL_COUNT`: messages filed by this fetch;
//! - `MAILHAUL_FOLDERS`: one line per folder, `COUNT FOLDER` (the folder
//!   last, so that any name fits), in name order.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::engine::event::{Event, FetchSummary, Level};

/// How long a hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// stderr kept from a hook for the log.
const STDERR_KEPT: usize = 2048;

/// The environment a hook gets for `summary` of `account`.
pub fn environment(account: &str, summary: &FetchSummary) -> Vec<(&'static str, String)> {
    let folders: String = summary
        .folders
        .iter()
        .map(|(folder, n)| format!("{n} {folder}\n"))
        .collect();
    vec![
        ("MAILHAUL_ACCOUNT", account.to_string()),
        ("MAILHAUL_COUNT", summary.messages.to_string()),
        ("MAILHAUL_FOLDERS", folders),
    ]
}

/// Starts `argv` for a fetch of `account` that filed `summary`, on its own
/// thread; how it went is logged on `events` (failures as warnings).
pub fn spawn(
    argv: &[String],
    account: &str,
    summary: &FetchSummary,
    timeout: Duration,
    events: Sender<Event>,
) -> JoinHandle<()> {
    let argv = argv.to_vec();
    let account = account.to_string();
    let env = environment(&account, summary);
    std::thread::Builder::new()
        .name(format!("hook {account}"))
        .spawn(move || {
            let (level, message) = run(&argv, &env, timeout);
            let _ = events.send(Event::Log {
                level,
                account: Some(account),
                message,
            });
        })
        .expect("spawn a hook thread")
}

/// Runs the hook to its end (or kills it at `timeout`); returns what to log.
fn run(argv: &[String], env: &[(&'static str, String)], timeout: Duration) -> (Level, String) {
    let name = argv.join(" ");
    let Some((program, args)) = argv.split_first() else {
        return (Level::Warn, "on_new_mail: empty command".into());
    };
    let mut child = match Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return (
                Level::Warn,
                format!("on_new_mail `{name}` cannot start: {e}"),
            )
        }
    };
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = STDERR_KEPT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return (Level::Warn, format!("on_new_mail `{name}`: {e}")),
        }
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        // A grandchild may still hold stderr open: do not wait for it.
        return (
            Level::Warn,
            format!(
                "on_new_mail `{name}` still ran after {} s and was killed",
                timeout.as_secs()
            ),
        );
    };
    let stderr = reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    let took = started.elapsed().as_secs_f64();
    if status.success() {
        (
            Level::Debug,
            format!("on_new_mail `{name}` done in {took:.2} s"),
        )
    } else {
        (
            Level::Warn,
            format!(
                "on_new_mail `{name}` failed ({status}) after {took:.2} s{}",
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", stderr.trim())
                }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> FetchSummary {
        let mut s = FetchSummary {
            messages: 3,
            ..Default::default()
        };
        s.folders.insert("INBOX".into(), 2);
        s.folders.insert("lists/a b".into(), 1);
        s
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn the_hook_sees_account_count_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "printf '%s|%s|%s' \"$MAILHAUL_ACCOUNT\" \"$MAILHAUL_COUNT\" \"$MAILHAUL_FOLDERS\" > {}",
            out.display()
        );
        let env = environment("work", &summary());
        let (level, message) = run(&sh(&script), &env, Duration::from_secs(10));
        assert_eq!(level, Level::Debug, "{message}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "work|3|2 INBOX\n1 lists/a b\n"
        );
    }

    #[test]
    fn a_failing_hook_is_logged_with_its_stderr() {
        let env = environment("work", &summary());
        let (level, message) = run(
            &sh("echo no display >&2; exit 3"),
            &env,
            Duration::from_secs(10),
        );
        assert_eq!(level, Level::Warn);
        assert!(
            message.contains("exit status: 3") && message.contains("no display"),
            "{message}"
        );
        let (level, message) = run(
            &["/nonexistent/hook".to_string()],
            &env,
            Duration::from_secs(1),
        );
        assert_eq!(level, Level::Warn);
        assert!(message.contains("cannot start"), "{message}");
    }

    #[test]
    fn a_slow_hook_is_killed_at_the_timeout() {
        let env = environment("work", &summary());
        let started = Instant::now();
        let (level, message) = run(&sh("exec sleep 30"), &env, Duration::from_millis(300));
        assert_eq!(level, Level::Warn);
        assert!(message.contains("was killed"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
