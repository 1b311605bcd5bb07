//! A hostile (or just observed) server: a `ForceCommand` wrapper for the
//! test sshd that runs every command the client asks for, logs when each
//! of the claim script's commands starts and ends, and on request corrupts
//! or slows down what `send` streams back, inside the SSH encryption, as a
//! broken tool on the server would. A link proxy between client and sshd
//! cannot do this: it sees only ciphertext.
//!
//! Switches are files in the hook's directory, so a test turns them on and
//! off between runs of one sshd:
//! - `flip`: `send` delivers the claim with one byte changed (a letter's
//!   case) and the right length, compressed again the way the client asked
//!   (zstd, gzip or plain), so the stream decodes and only the checksum can
//!   tell;
//! - `slow`: `send` trickles its output (2 KiB every 100 ms) and logs how
//!   much it got out when the client goes away;
//! - `pause`: every command waits a second before it runs, so that what
//!   runs at the same time visibly overlaps in the log;
//! - `garble`: `send` delivers the compressed stream itself with one byte
//!   in its middle changed (a corrupt stream, as a bad disk or a broken
//!   tool on the server would make it), logged as `garbled AT LEN`;
//! - `cut` (holding a number K): `send` writes the first K bytes of its
//!   stream, logs `cut-at K LEN` and then hangs, for the test to cut the
//!   link there (`proc::kill_connection_holders`);
//! - `stall`: `send` delivers half of its stream, logs `stalled SENT LEN`,
//!   then sends nothing more for ten minutes, the link up (keepalives are
//!   answered by sshd): a server that hangs mid-stream.
//!
//! `send`'s start is logged with the offset it was asked to send from
//! (`send start offset N`).
//!
//! The log has one line per event: nanoseconds since the epoch, the hook's
//! PID, the login user, the command (`survey`, `claim`, `send`, ...) and the
//! event (`start`, `end STATUS`, `flipped AT LEN`, `cut SENT LEN`).
//!
//! Needs python3 (`apt-get install python3`); the hook is run by sshd as
//! the login user, so its directory is world-readable and its log
//! world-writable.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::TestSshd;

/// The wrapper; `{log}` and `{dir}` are filled in.
const HOOK: &str = r#"#!/usr/bin/python3
# mailhaul test hook (ForceCommand): see tests/common/hook.rs.
import os, pwd, signal, subprocess, sys, time

DIR = "{dir}"
LOG = "{log}"

USER = pwd.getpwuid(os.getuid()).pw_name

def log(*words):
    with open(LOG, "a") as f:
        f.write("%d %d %s %s\n" % (time.time_ns(), os.getpid(), USER, " ".join(str(w) for w in words)))

orig = os.environ.get("SSH_ORIGINAL_COMMAND", "")
# The exec request is `sh -c 'LOADER' sh xHEX...` (engine/ssh/script.rs).
args = orig.rsplit("' sh ", 1)[1].split() if "' sh " in orig else []
words = [bytes.fromhex(a[1:]).decode("utf-8", "replace") for a in args]
command = words[0] if words else "-"
switch = lambda name: os.path.exists(os.path.join(DIR, name))
log(command, "start", *(["offset", words[4] or "0"] if command == "send" and len(words) > 4 else []))
if switch("pause"):
    time.sleep(1)
# A claim step given a method streams what it claimed after `send HEXPATH`
# (claim and transfer in one step): that part is logged and changed as a
# `send` command's output is.
streams = command == "claim" and len(words) > 6 and words[6] != ""
transform = switch("flip") or switch("slow") or switch("garble") or switch("cut") or switch("stall")
if not streams and (command != "send" or not transform):
    status = subprocess.call(["/bin/sh", "-c", orig])
    log(command, "end", status)
    sys.exit(status)

method = (words[6] if streams else words[2]) if len(words) > 2 else "cat"
# A dropped connection must show as a cut stream, not as a hangup.
signal.signal(signal.SIGHUP, signal.SIG_IGN)
child = subprocess.Popen(["/bin/sh", "-c", orig], stdout=subprocess.PIPE)
# The stub's and loader's answers (mh-run; mh-need... when they want the
# loader or the program on stdin) pass at once; only the script's own
# output is changed.
while True:
    line = child.stdout.readline()
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
    if not line.startswith(b"mh-need"):
        break
if streams:
    while line and not line.startswith(b"send "):
        line = child.stdout.readline()
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    if not line:
        status = child.wait()
        log(command, "end", status)
        sys.exit(status)
    log(command, "end", 0)
    log("send", "start", "offset", "0")
    if not transform:
        n = 0
        try:
            while True:
                chunk = child.stdout.read1(65536)
                if not chunk:
                    break
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                n += len(chunk)
        except (BrokenPipeError, OSError):
            log("send", "cut", n, n)
            sys.exit(141)
        status = child.wait()
        log("send", "end", status, n)
        sys.exit(status)
data = child.stdout.read()
status = child.wait()
if switch("flip"):
    codec = {"zstd": ["zstd"], "zstd-adapt": ["zstd"], "gzip": ["gzip"]}.get(method)
    raw = subprocess.run(codec + ["-dc"], input=data, stdout=subprocess.PIPE, check=True).stdout if codec else data
    raw = bytearray(raw)
    at = len(raw) // 2
    while not 0x61 <= (raw[at] | 0x20) <= 0x7a:
        at += 1
    raw[at] ^= 0x20
    data = subprocess.run(codec + ["-c", "-q"], input=bytes(raw), stdout=subprocess.PIPE, check=True).stdout if codec else bytes(raw)
    log("send", "flipped", at, len(raw))
if switch("garble"):
    garbled = bytearray(data)
    at = len(garbled) // 2
    garbled[at] ^= 0x55
    data = bytes(garbled)
    log("send", "garbled", at, len(data))
out = sys.stdout.buffer
if switch("cut"):
    cut = int(open(os.path.join(DIR, "cut")).read())
    out.write(data[:cut])
    out.flush()
    log("send", "cut-at", cut, len(data))
    time.sleep(120)
    sys.exit(141)
sent = 0
if switch("stall"):
    half = len(data) // 2
    out.write(data[:half])
    out.flush()
    log("send", "stalled", half, len(data))
    time.sleep(600)
    sys.exit(141)
try:
    step = 2048 if switch("slow") else len(data)
    while sent < len(data):
        out.write(data[sent:sent + step])
        out.flush()
        sent += len(data[sent:sent + step])
        if switch("slow"):
            time.sleep(0.1)
except (BrokenPipeError, OSError):
    log("send", "cut", sent, len(data))
    sys.exit(141)
log("send", "end", status, sent)
sys.exit(status)
"#;

/// One line of the hook's log.
#[derive(Debug, Clone)]
pub struct HookEvent {
    /// When, in nanoseconds since the epoch.
    pub time_ns: u128,
    /// The hook process (one per SSH session).
    pub pid: u32,
    /// The login user.
    pub user: String,
    /// The command and the event: `["send", "start"]`, `["send", "cut", "4096", "272991"]`.
    pub words: Vec<String>,
}

impl HookEvent {
    /// Whether its words start with `prefix`.
    pub fn is(&self, prefix: &[&str]) -> bool {
        self.words.len() >= prefix.len() && self.words.iter().zip(prefix).all(|(a, b)| a == b)
    }

    /// Its time in seconds since the epoch.
    pub fn secs(&self) -> f64 {
        self.time_ns as f64 / 1e9
    }
}

/// A `ForceCommand` hook for one test sshd; see the module doc.
pub struct ServerHook {
    dir: tempfile::TempDir,
}

impl ServerHook {
    /// Writes the hook (panics naming the package when python3 is missing).
    pub fn new() -> ServerHook {
        if !Path::new("/usr/bin/python3").exists() {
            panic!(
                "the server hook needs /usr/bin/python3: `apt-get install python3` \
                 (tests/run-all.sh installs it)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("mailhaul-hook.")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod hook dir");
        let hook = ServerHook { dir };
        let log = hook.log_path();
        std::fs::write(&log, "").expect("create hook log");
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666))
            .expect("chmod hook log");
        let script = HOOK
            .replace("{dir}", &hook.dir.path().display().to_string())
            .replace("{log}", &log.display().to_string());
        let path = hook.path();
        std::fs::write(&path, script).expect("write hook");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod hook");
        hook
    }

    /// Starts a test sshd that runs every session through this hook.
    pub fn start_sshd(&self) -> TestSshd {
        TestSshd::start_with_config(&format!("ForceCommand {}\n", self.path().display()))
    }

    /// Turns a switch on with `value` as its content (`cut`'s byte count).
    pub fn set_value(&self, switch: &str, value: &str) {
        std::fs::write(self.dir.path().join(switch), value).expect("switch on");
    }

    /// The hook program.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("hook.py")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("hook.log")
    }

    /// Turns a switch (`flip`, `slow`, `pause`, `garble`, `stall`) on or off for the sessions to come.
    pub fn set(&self, switch: &str, on: bool) {
        let path = self.dir.path().join(switch);
        if on {
            std::fs::write(&path, "").expect("switch on");
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// The log, one entry per line.
    pub fn log(&self) -> Vec<HookEvent> {
        std::fs::read_to_string(self.log_path())
            .expect("read hook log")
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace().map(str::to_string);
                Some(HookEvent {
                    time_ns: words.next()?.parse().ok()?,
                    pid: words.next()?.parse().ok()?,
                    user: words.next()?,
                    words: words.collect(),
                })
            })
            .collect()
    }

    /// The log as text, for assertion messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits up to `limit` for a log line whose words start with `prefix`.
    pub fn wait_for(&self, prefix: &[&str], limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(event) = self.log().into_iter().find(|e| e.is(prefix)) {
                return event.words;
            }
            assert!(
                Instant::now() < deadline,
                "no hook log line {prefix:?} within {limit:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
