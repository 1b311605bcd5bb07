//! Remote POSIX sh scripts whose arguments never enter a shell command line.
//!
//! The exec request is `sh -c 'LOADER' sh xHEX xHEX ...`: LOADER is fixed
//! text of this module (one line, no single quote), and each argument is
//! hex-encoded (an `x` first, so that an empty argument survives), so only
//! that text and `[0-9a-fx ]` ever reach the user's login shell, whatever
//! the paths or names hold. The loader first decodes the arguments back
//! into `"$1" "$2" ...` with shell arithmetic (no tools, no forks per byte).
//!
//! Then it runs the script from a cached copy on the server,
//! `~/.mailhaul/scripts/NAME-HASH.sh`, and only after checking that its
//! sha256 is the one this client expects (the hash is part of the loader's
//! text): a copy that is missing, cut short, changed or of another version
//! is never run. It answers `mh-run` when the copy is good; otherwise
//! `mh-need-gzip` (or `mh-need` where the server has no `gzip`), reads the
//! script from stdin (its exact length, which the loader knows, so nothing
//! the script itself reads later is swallowed), checks its hash, stores it
//! (0600) and answers `mh-run`. So a script goes up once per server and
//! version, and a step costs two round trips (the channel's opening, and
//! the exec request, which the output follows) and about 1.3 kB up. The
//! script runs as `{ eval "$text"; } </dev/null`: the text that was hashed
//! is the text that runs (the file is not read twice), and commands in it
//! cannot swallow stdin.
//!
//! Channel order, as libssh2 needs it: read stdout to the end, then stderr,
//! then close and `wait_close()`, then read the exit status. stderr shares
//! the channel window with stdout, so scripts must keep stderr small.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use ssh2::Channel;

use super::{millis, Connection, SshError};
use crate::engine::os;

/// How long a read waits at a time while it has a stop flag to watch.
pub const STOP_TICK: Duration = Duration::from_millis(500);

/// The decoder run before every script: turns the `xHEX` arguments into
/// bytes with shell arithmetic, all of them in one `set -- '...' ...` text
/// (every byte an octal escape of printf, a single quote in the data as
/// `'"'"'`; the quotes themselves `\047`, since the loader holds none),
/// which one `printf` in one subshell turns into bytes and one `eval`
/// runs: one fork for all the arguments, not one per argument.
const PRELUDE: &str = concat!(
    r#"mh_f=; for mh_a in "$@"; do mh_h=${mh_a#x} mh_f="$mh_f \\047"; while [ -n "$mh_h" ]; do "#,
    r#"mh_r=${mh_h#??}; mh_n=$((0x${mh_h%"$mh_r"})); if [ "$mh_n" = 39 ]; "#,
    r#"then mh_f="$mh_f\\047\\042\\047\\042\\047"; "#,
    r#"else mh_f="$mh_f\\$((mh_n / 64))$((mh_n / 8 % 8))$((mh_n % 8))"; fi; mh_h=$mh_r; done; "#,
    r#"mh_f="$mh_f\\047"; done; eval "set --$(printf "$mh_f")"; unset mh_a mh_h mh_f mh_r mh_n; "#,
);

/// stderr kept per script; more is read and dropped.
const MAX_STDERR: usize = 64 * 1024;

/// What a finished script produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// Everything it wrote on stdout.
    pub stdout: Vec<u8>,
    /// Its stderr (at most 64 KiB kept), lossily decoded.
    pub stderr: String,
    /// Exit status (0 when it was killed by a signal: see `signal`).
    pub status: i32,
    /// The signal that killed it, if one did (`TERM`, `KILL`, ...).
    pub signal: Option<String>,
}

impl ScriptOutput {
    /// Whether it exited 0 and was not killed.
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }
}

/// How a streamed script ended (its stdout went to the reader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptStatus {
    /// Its stderr (at most 64 KiB kept), lossily decoded.
    pub stderr: String,
    /// Exit status (0 when it was killed by a signal: see `signal`).
    pub status: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<String>,
}

impl ScriptStatus {
    /// Whether it exited 0 and was not killed.
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }
}

/// How a script's channel is used, which decides its stdin and signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptMode {
    /// stdin is `/dev/null`; the client reads the output to its end.
    Answered,
    /// The channel's stdin on fd 3: a long-lived script, which ends when
    /// it reads end-of-file there.
    KeepStdin,
    /// stdin is `/dev/null`, and SIGHUP and SIGPIPE are ignored: the client
    /// sends the exec request and closes the connection without reading
    /// any answer, so the script must run to its end after sshd is gone
    /// (its output then goes nowhere). The client learns its effect some
    /// other way (a fetch's release: the next fetch's list of claims).
    Detached,
}

/// A script as it runs on the server: its cache name and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteScript {
    /// The name of its cached copy (`claim`, `watch`, `send`): lower-case
    /// letters only, since it goes into the loader's text.
    pub name: &'static str,
    /// The text, ending in exactly one line break (what is hashed, sent
    /// and stored).
    pub text: String,
    /// sha256 of `text`, lower-case hex.
    pub sha256: String,
}

impl RemoteScript {
    /// The script `name` with text `text` (trailing line breaks made one).
    pub fn new(name: &'static str, text: &str) -> RemoteScript {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase()),
            "script names are lower-case letters"
        );
        let text = format!("{}\n", text.trim_end_matches('\n'));
        let sha256 = crate::engine::claim::hex(&sha2::Sha256::digest(text.as_bytes()));
        RemoteScript { name, text, sha256 }
    }

    /// The text gzip-compressed, as sent after `mh-need-gzip`.
    fn gzipped(&self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(self.text.as_bytes())
            .and_then(|()| gz.finish())
            .expect("gzip into memory cannot fail")
    }

    /// The exec request for this script with `args`: `sh -c 'LOADER' sh
    /// xHEX...`, where LOADER is the argument decoder and the loader (see
    /// the module's doc), fixed text on one line without single quotes (so
    /// any login shell, csh too, passes it to sh as it is), and each
    /// argument is hex; nothing the user or the server chose is in it.
    pub fn exec_line(&self, args: &[&[u8]], mode: ScriptMode) -> Result<String, SshError> {
        let mut line = format!("sh -c '{}' sh", self.loader(mode));
        for (index, arg) in args.iter().enumerate() {
            if arg.contains(&0) {
                return Err(SshError::NulInArgument { index });
            }
            line.push_str(" x");
            for b in *arg {
                line.push_str(&format!("{b:02x}"));
            }
        }
        Ok(line)
    }

    fn loader(&self, mode: ScriptMode) -> String {
        let (signals, redirect) = match mode {
            ScriptMode::Answered => ("", "</dev/null"),
            ScriptMode::KeepStdin => ("", "3<&0 </dev/null"),
            ScriptMode::Detached => (r#"trap "" HUP PIPE; "#, "</dev/null"),
        };
        let (name, hash) = (self.name, &self.sha256);
        let short = &hash[..16];
        let plain = self.text.len();
        let gz = self.gzipped().len();
        let text = format!(
            r#"{signals}{PRELUDE}mh_sum() {{ if command -v sha256sum >/dev/null 2>&1; then sha256sum; elif command -v shasum >/dev/null 2>&1; then shasum -a 256; elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 | sed "s/^.*= *//"; else echo none; fi; }}; mh_d=${{HOME:-/nonexistent}}/.mailhaul/scripts; mh_s=$mh_d/{name}-{short}.sh; if [ -f "$mh_s" ] && mh_t=$(cat "$mh_s") && mh_k=$(printf "%s\n" "$mh_t" | mh_sum) && [ "${{mh_k%% *}}" = {hash} ]; then echo mh-run; else if command -v gzip >/dev/null 2>&1; then echo mh-need-gzip; mh_t=$(dd bs=1 count={gz} 2>/dev/null | gzip -dc); else echo mh-need; mh_t=$(dd bs=1 count={plain} 2>/dev/null); fi; mh_k=$(printf "%s\n" "$mh_t" | mh_sum); mh_k=${{mh_k%% *}}; if [ "$mh_k" = {hash} ]; then (umask 077; mkdir -p "$mh_d" && find "$mh_d" -name "{name}-*.sh" -mtime +30 -exec rm -f {{}} + ; printf "%s\n" "$mh_t" > "$mh_d/.{name}.$$" && mv -f "$mh_d/.{name}.$$" "$mh_s") 2>/dev/null; elif [ "$mh_k" != none ]; then echo mh-bad; exit 97; fi; echo mh-run; fi; unset -f mh_sum; unset mh_d mh_s mh_k; {{ eval "$mh_t"; }} {redirect}"#
        );
        debug_assert!(!text.contains('\'') && !text.contains('\n'));
        text
    }

    /// What to send when the loader asks with `request` (`mh-need` or
    /// `mh-need-gzip`).
    pub fn body_for(&self, request: &str) -> Option<Vec<u8>> {
        match request {
            "mh-need" => Some(self.text.as_bytes().to_vec()),
            "mh-need-gzip" => Some(self.gzipped()),
            _ => None,
        }
    }
}

/// Lines the loader may be preceded by (a chatty login shell start-up)
/// before its first answer; more is an error.
const MAX_NOISE_LINES: usize = 100;

/// `script` without what the shell ignores: comment-only lines, blank lines
/// and leading indentation. For scripts without here-documents or quoted
/// strings spanning lines (a test checks the claim script has neither).
pub fn compact(script: &str) -> String {
    script
        .lines()
        .map(str::trim_start)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .fold(String::with_capacity(script.len()), |mut out, line| {
            out.push_str(line);
            out.push('\n');
            out
        })
}

/// A session channel opened ahead of the script that will run on it.
pub struct OpenChannel(Channel);

/// A running script whose stdout is read through [`Read`]; call
/// [`ScriptStream::finish`] at the end for its stderr and exit status.
pub struct ScriptStream<'c> {
    conn: &'c Connection,
    channel: Channel,
    /// Set by another thread to stop reading (see [`ScriptStream::stop_on`]).
    stop: Option<Arc<AtomicBool>>,
}

impl Connection {
    /// Runs `script` with `sh` on the server, `args` as `"$1" "$2" ...`,
    /// and collects its output. For big outputs use [`Connection::start_script`].
    pub fn run_script<A: AsRef<[u8]>>(
        &self,
        script: &RemoteScript,
        args: &[A],
    ) -> Result<ScriptOutput, SshError> {
        self.collect(self.start_script(script, args)?)
    }

    /// Runs `script` as [`Connection::run_script`] does, with `input` on
    /// its fd 3 (the channel's stdin, then end-of-file): a file sent up
    /// (the fetch's dictionary).
    pub fn run_script_with_input<A: AsRef<[u8]>>(
        &self,
        script: &RemoteScript,
        args: &[A],
        input: &[u8],
    ) -> Result<ScriptOutput, SshError> {
        let mut channel = self.start_channel(script, args, ScriptMode::KeepStdin)?;
        channel
            .write_all(input)
            .and_then(|()| channel.flush())
            .map_err(|source| self.io_err("sending a script's input", source))?;
        self.patiently("sending a script's input", || channel.send_eof())?;
        self.collect(ScriptStream {
            conn: self,
            channel,
            stop: None,
        })
    }

    /// Reads `stream` to its end and collects its stderr and exit status.
    fn collect(&self, mut stream: ScriptStream<'_>) -> Result<ScriptOutput, SshError> {
        let mut stdout = Vec::new();
        stream
            .read_to_end(&mut stdout)
            .map_err(|source| self.io_err("reading a script's output", source))?;
        let end = stream.finish()?;
        Ok(ScriptOutput {
            stdout,
            stderr: end.stderr,
            status: end.status,
            signal: end.signal,
        })
    }

    /// Starts `script` as [`Connection::run_script`] does and returns its
    /// stdout as a stream.
    pub fn start_script<A: AsRef<[u8]>>(
        &self,
        script: &RemoteScript,
        args: &[A],
    ) -> Result<ScriptStream<'_>, SshError> {
        let mut channel = self.start_channel(script, args, ScriptMode::Answered)?;
        self.patiently("sending a script", || channel.send_eof())?;
        Ok(ScriptStream {
            conn: self,
            channel,
            stop: None,
        })
    }

    /// Starts a script meant to run as long as its channel (the spool
    /// watcher, the send script), with `args` hex-encoded as for
    /// [`Connection::run_script`], and the channel's stdin left open: the
    /// script reads it on fd 3 and ends when it reaches end-of-file, i.e.
    /// when the channel is closed or the connection dies. The caller reads
    /// the channel's stdout and closes it.
    pub fn start_long_script<A: AsRef<[u8]>>(
        &self,
        script: &RemoteScript,
        args: &[A],
    ) -> Result<Channel, SshError> {
        self.start_channel(script, args, ScriptMode::KeepStdin)
    }

    /// Opens a channel, runs the loader there and sees the script started
    /// (sending it first if the server has no good copy); stdin stays open.
    /// Two round trips when the copy is good: the channel's opening, and
    /// the exec request, whose answer the script's first output follows.
    fn start_channel<A: AsRef<[u8]>>(
        &self,
        script: &RemoteScript,
        args: &[A],
        mode: ScriptMode,
    ) -> Result<Channel, SshError> {
        let channel = self.open_channel()?;
        self.start_on(channel.0, script, args, mode)
    }

    /// Opens a session channel for a script to run on later
    /// ([`Connection::run_script_on`]): its round trip can then overlap
    /// with local work, such as a fetch's filing before the release. Takes
    /// the channel asked for ahead ([`Connection::request_channel`]) when
    /// there is one the server has not closed meanwhile, and completes a
    /// request still on its way (at once when its answer has come).
    pub fn open_channel(&self) -> Result<OpenChannel, SshError> {
        if let Some(channel) = self.take_ahead() {
            return Ok(OpenChannel(channel));
        }
        self.patiently("opening a channel", || self.session.channel_session())
            .map(OpenChannel)
    }

    /// Asks for a session channel ahead of need and returns without
    /// waiting for the server's answer, which libssh2 keeps when it
    /// arrives meanwhile: the next [`Connection::open_channel`] on this
    /// session then completes at once, its round trip spent while the
    /// caller was busy with another channel or idle. Called again, it
    /// completes the request when its answer has come (so that libssh2
    /// tracks the channel, and sees it if the server closes it), replaces
    /// a channel the server closed, and otherwise does nothing. A request
    /// that cannot go out is left to the next opening, which then waits as
    /// usual. Only on a session no other thread uses meanwhile (it
    /// switches the session to non-blocking for the call).
    pub fn request_channel(&self) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if ahead.as_ref().is_some_and(|c| !c.eof()) {
            return;
        }
        // A closed one is freed while the session still blocks.
        ahead.take();
        self.session.set_blocking(false);
        *ahead = self.session.channel_session().ok();
        self.session.set_blocking(true);
    }

    /// The channel asked for ahead, unless the server has closed it. What
    /// has arrived is read first (a read that cannot wait, on a channel
    /// that never has data), so that a close the server sent meanwhile is
    /// seen.
    fn take_ahead(&self) -> Option<Channel> {
        let mut channel = self
            .ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        self.session.set_blocking(false);
        let _ = channel.read(&mut [0u8; 1]);
        self.session.set_blocking(true);
        (!channel.eof()).then_some(channel)
    }

    /// [`Connection::run_script`] on a channel opened before.
    pub fn run_script_on<A: AsRef<[u8]>>(
        &self,
        channel: OpenChannel,
        script: &RemoteScript,
        args: &[A],
    ) -> Result<ScriptOutput, SshError> {
        let mut channel = self.start_on(channel.0, script, args, ScriptMode::Answered)?;
        self.patiently("sending a script", || channel.send_eof())?;
        self.collect(ScriptStream {
            conn: self,
            channel,
            stop: None,
        })
    }

    /// Starts `script` on a channel opened before and closes the connection
    /// without waiting for anything back: the exec request is sent (sshd
    /// starts the command when it reads the request, before anything sent
    /// after it), then the end of the session, and the socket is shut for
    /// writing. The script runs [`ScriptMode::Detached`], to its end even
    /// when sshd is gone. Saves the round trip and the script's run time
    /// at the end of a connection that is about to be dropped; the caller
    /// must learn the script's effect another way, and must not use the
    /// connection again (its session is left non-blocking, its socket
    /// closed for writing). When the server lacks a good cached copy of
    /// the script, the loader asks for it and gets end-of-file: it then
    /// runs nothing.
    pub fn run_script_detached<A: AsRef<[u8]>>(
        &self,
        channel: OpenChannel,
        script: &RemoteScript,
        args: &[A],
    ) -> Result<(), SshError> {
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        let line = script.exec_line(&args, ScriptMode::Detached)?;
        let mut channel = channel.0;
        self.session.set_blocking(false);
        let mut waited = Duration::ZERO;
        loop {
            match channel.exec(&line) {
                Ok(()) => break,
                // Sent whole and waiting for sshd's answer: done here. Still
                // sending: wait until the socket takes more.
                Err(e) if is_eagain(&e) => {
                    if !matches!(
                        self.session.block_directions(),
                        ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
                    ) {
                        break;
                    }
                    if waited >= self.idle_timeout {
                        return Err(SshError::Channel {
                            action: "sending a script",
                            host: self.host.clone(),
                            source: e,
                        });
                    }
                    let mut socket = [os::pollfd(self.socket.as_raw_fd(), libc::POLLOUT)];
                    os::poll(&mut socket, Some(STOP_TICK));
                    waited += STOP_TICK;
                }
                Err(source) => {
                    return Err(SshError::Channel {
                        action: "sending a script",
                        host: self.host.clone(),
                        source,
                    })
                }
            }
        }
        // Best effort from here: the request is on its way, and sshd reads
        // the socket in order.
        let _ = self.session.disconnect(None, "done", None);
        let _ = self.socket.shutdown(std::net::Shutdown::Write);
        Ok(())
    }

    fn start_on<A: AsRef<[u8]>>(
        &self,
        mut channel: Channel,
        script: &RemoteScript,
        args: &[A],
        mode: ScriptMode,
    ) -> Result<Channel, SshError> {
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        let line = script.exec_line(&args, mode)?;
        self.patiently("starting sh", || channel.exec(&line))?;
        let mut noise = 0;
        loop {
            let answer = self
                .read_short_line(&mut channel)
                .map_err(|source| self.io_err("starting a script", source))?;
            match answer.as_deref() {
                Some("mh-run") => return Ok(channel),
                Some(request @ ("mh-need" | "mh-need-gzip")) => {
                    let body = script.body_for(request).expect("a known request");
                    channel
                        .write_all(&body)
                        .and_then(|()| channel.flush())
                        .map_err(|source| self.io_err("sending a script", source))?;
                }
                Some("mh-bad") => {
                    return Err(self.io_err(
                        "sending a script",
                        std::io::Error::other(format!(
                            "the {} script arrived damaged (its sha256 differs)",
                            script.name
                        )),
                    ))
                }
                Some(_) if noise < MAX_NOISE_LINES => noise += 1,
                other => {
                    let mut stderr = String::new();
                    let _ = channel.stderr().take(4096).read_to_string(&mut stderr);
                    let seen = match other {
                        None => "its output ended".to_string(),
                        Some(_) => format!("{MAX_NOISE_LINES} lines of other output"),
                    };
                    return Err(self.io_err(
                        "starting a script",
                        std::io::Error::other(format!(
                            "the server's sh did not start the {} script ({seen}){}",
                            script.name,
                            if stderr.trim().is_empty() {
                                String::new()
                            } else {
                                format!(": {}", stderr.trim())
                            }
                        )),
                    ));
                }
            }
        }
    }

    /// Reads one line of at most 4 KiB from `channel` a byte at a time
    /// (the rest of the output stays in the channel), without its line
    /// break; `None` at end-of-file.
    fn read_short_line(&self, channel: &mut Channel) -> std::io::Result<Option<String>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if self.read_patiently(channel, &mut byte, None)? == 0 {
                return Ok(None);
            }
            if byte[0] == b'\n' {
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if line.len() < 4096 {
                line.push(byte[0]);
            }
        }
    }

    /// Runs a libssh2 call, sending keepalives and retrying while it times
    /// out, until the idle limit.
    fn patiently<T>(
        &self,
        action: &'static str,
        mut op: impl FnMut() -> Result<T, ssh2::Error>,
    ) -> Result<T, SshError> {
        let mut idle = Duration::ZERO;
        loop {
            match op() {
                Err(e) if is_timeout(&e) && idle < self.idle_timeout => {
                    idle += self.keepalive_interval;
                    let _ = self.session.keepalive_send();
                }
                Err(source) => {
                    return Err(SshError::Channel {
                        action,
                        host: self.host.clone(),
                        source,
                    })
                }
                Ok(v) => return Ok(v),
            }
        }
    }

    /// Reads into `buf`, sending keepalives while the server is silent,
    /// until the idle limit, or until `stop` is set: while there is a stop
    /// flag the read waits at most [`STOP_TICK`] at a time, so that a server
    /// that stalls with the link up (it sends nothing, and keepalives are
    /// answered) does not hold a stop for the whole idle limit.
    fn read_patiently(
        &self,
        reader: &mut impl Read,
        buf: &mut [u8],
        stop: Option<&AtomicBool>,
    ) -> std::io::Result<usize> {
        let tick = match stop {
            Some(_) => STOP_TICK.min(self.keepalive_interval),
            None => self.keepalive_interval,
        };
        if stop.is_some() {
            self.session.set_timeout(millis(tick));
        }
        let result = self.read_ticking(reader, buf, stop, tick);
        if stop.is_some() {
            self.session.set_timeout(millis(self.keepalive_interval));
        }
        result
    }

    fn read_ticking(
        &self,
        reader: &mut impl Read,
        buf: &mut [u8],
        stop: Option<&AtomicBool>,
        tick: Duration,
    ) -> std::io::Result<usize> {
        let mut idle = Duration::ZERO;
        let mut since_keepalive = Duration::ZERO;
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "stopped on request",
                ));
            }
            match reader.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    idle += tick;
                    since_keepalive += tick;
                    if idle >= self.idle_timeout {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the server sent nothing for {} s",
                                self.idle_timeout.as_secs()
                            ),
                        ));
                    }
                    if since_keepalive >= self.keepalive_interval {
                        since_keepalive = Duration::ZERO;
                        let _ = self.session.keepalive_send();
                    }
                }
                other => return other,
            }
        }
    }

    fn io_err(&self, action: &'static str, source: std::io::Error) -> SshError {
        SshError::Io {
            action,
            host: self.host.clone(),
            source,
        }
    }
}

fn is_timeout(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_TIMEOUT)
}

/// Whether a libssh2 call on a non-blocking session would have blocked
/// (EAGAIN): the call is to be made again, with the same arguments.
pub fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_EAGAIN)
}

impl Read for ScriptStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.conn
            .read_patiently(&mut self.channel, buf, self.stop.as_deref())
    }
}

impl ScriptStream<'_> {
    /// Makes reads end with an `Interrupted` error ("stopped on request")
    /// within [`STOP_TICK`] of `flag` being set, even while the server
    /// sends nothing.
    pub fn stop_on(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// Drops the channel after a stop, waiting at most [`STOP_TICK`] for
    /// the server to close its side: a stalled server whose command still
    /// runs may never close it, and libssh2 would wait a whole read timeout.
    pub fn abandon(self) {
        let conn = self.conn;
        conn.session.set_timeout(millis(STOP_TICK));
        drop(self.channel);
        conn.session.set_timeout(millis(conn.keepalive_interval));
    }

    /// Reads what is left of stdout (discarding it), then stderr, closes the
    /// channel and returns how the script ended.
    pub fn finish(mut self) -> Result<ScriptStatus, SshError> {
        let conn = self.conn;
        let stop = self.stop.take();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = conn
                .read_patiently(&mut self.channel, &mut buf, stop.as_deref())
                .map_err(|source| conn.io_err("reading a script's output", source))?;
            if n == 0 {
                break;
            }
        }
        let mut stderr = Vec::new();
        let mut dropped = 0usize;
        let mut err_stream = self.channel.stderr();
        loop {
            let n = conn
                .read_patiently(&mut err_stream, &mut buf, stop.as_deref())
                .map_err(|source| conn.io_err("reading a script's stderr", source))?;
            if n == 0 {
                break;
            }
            let keep = n.min(MAX_STDERR - stderr.len().min(MAX_STDERR));
            stderr.extend_from_slice(&buf[..keep]);
            dropped += n - keep;
        }
        conn.patiently("closing a channel", || self.channel.close())?;
        conn.patiently("closing a channel", || self.channel.wait_close())?;
        let status = conn.patiently("reading an exit status", || self.channel.exit_status())?;
        let signal = self
            .channel
            .exit_signal()
            .ok()
            .and_then(|s| s.exit_signal)
            .filter(|s| !s.is_empty());
        let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
        if dropped > 0 {
            stderr.push_str(&format!("\n[{dropped} more bytes of stderr dropped]"));
        }
        Ok(ScriptStatus {
            stderr,
            status,
            signal,
        })
    }
}

/// Panics unless `source` has nothing [`compact`] would break
/// (here-documents) and `compacted` is valid sh (`sh -n`): the check every
/// remote script's unit tests make, kept in one place.
#[cfg(test)]
pub(crate) fn assert_compacts_and_parses(source: &str, compacted: &str) {
    assert!(
        !source.contains("<<"),
        "compact() cannot keep here-documents"
    );
    let out = std::process::Command::new("sh")
        .arg("-n")
        .arg("-c")
        .arg(compacted)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `script` with `args` the way a server would (the fixed command
/// line, the decoder and loader on stdin, the script itself sent when the
/// loader asks), with the local /bin/sh and `home` as `$HOME`. Returns the
/// loader's answers and the script's own output. For tests.
#[cfg(test)]
pub(crate) fn run_locally(
    home: &std::path::Path,
    script: &RemoteScript,
    args: &[&[u8]],
) -> (Vec<String>, std::process::Output) {
    use std::io::BufRead;
    let line = script.exec_line(args, ScriptMode::Answered).unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("HOME", home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut answers = Vec::new();
    loop {
        let mut answer = String::new();
        if stdout.read_line(&mut answer).unwrap() == 0 {
            break;
        }
        let answer = answer.trim_end().to_string();
        answers.push(answer.clone());
        match script.body_for(&answer) {
            Some(body) => stdin.write_all(&body).unwrap(),
            None => break,
        }
    }
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let mut out = child.wait_with_output().unwrap();
    out.stdout = rest;
    (answers, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exec request is fixed text (one line, no single quote inside
    /// the quoted loader) followed by hex arguments only.
    #[test]
    fn command_line_holds_only_hex() {
        let script = RemoteScript::new("claim", "echo hi");
        let fixed = script.exec_line(&[], ScriptMode::Answered).unwrap();
        assert!(
            fixed.starts_with("sh -c '") && fixed.ends_with("' sh"),
            "{fixed}"
        );
        assert!(!fixed.contains('\n'));
        assert_eq!(fixed.matches('\'').count(), 2, "{fixed}");
        let command_line = |args: &[&[u8]]| script.exec_line(args, ScriptMode::Answered);
        let line = command_line(&[b"/var/mail/a b".as_slice(), b"", b"$(rm -rf /)\n'"]).unwrap();
        let tail = &line[fixed.len()..];
        assert!(
            tail.bytes().all(|b| b" x0123456789abcdef".contains(&b)),
            "{line}"
        );
        assert_eq!(tail.split(' ').nth(2), Some("x"), "empty arg survives");
        assert!(matches!(
            command_line(&[b"ok".as_slice(), b"a\0b"]),
            Err(SshError::NulInArgument { index: 1 })
        ));
    }

    /// The prelude decodes every byte but NUL, run by the local /bin/sh
    /// through the loader, sent and then cached.
    #[test]
    fn prelude_decodes_all_bytes_locally() {
        let home = tempfile::tempdir().unwrap();
        let every: Vec<u8> = (1..=255).collect();
        let args: Vec<&[u8]> = vec![b"a b", b"", b"$(touch /tmp/x)'\"\n\n", &every];
        let script = RemoteScript::new(
            "decode",
            r#"for a in "$@"; do printf '%s' "$a" | od -An -tx1 | tr -d ' \n'; echo; done"#,
        );
        let hex: Vec<String> = args
            .iter()
            .map(|a| a.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        for expected in [["mh-need-gzip", "mh-run"].as_slice(), &["mh-run"]] {
            let (answers, out) = run_locally(home.path(), &script, &args);
            assert_eq!(answers, expected);
            assert!(out.status.success(), "{out:?}");
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                hex.join("\n") + "\n"
            );
        }
    }

    /// A cached copy runs only while its sha256 is the expected one: a copy
    /// changed on the server is not run but replaced; a new version of a
    /// script is stored beside the old one (copies untouched for 30 days
    /// are removed when another version is stored).
    #[test]
    fn a_cached_script_runs_only_with_the_right_hash() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".mailhaul/scripts");
        let v1 = RemoteScript::new("greet", "echo one");
        let (answers, out) = run_locally(home.path(), &v1, &[]);
        assert_eq!(answers, ["mh-need-gzip", "mh-run"]);
        assert_eq!(out.stdout, b"one\n");
        let cached = dir.join(format!("greet-{}.sh", &v1.sha256[..16]));
        assert_eq!(std::fs::read_to_string(&cached).unwrap(), "echo one\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cached).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");

        std::fs::write(&cached, "echo one\necho tampered\n").unwrap();
        let (answers, out) = run_locally(home.path(), &v1, &[]);
        assert_eq!(answers, ["mh-need-gzip", "mh-run"]);
        assert_eq!(out.stdout, b"one\n");
        assert_eq!(std::fs::read_to_string(&cached).unwrap(), "echo one\n");

        let v2 = RemoteScript::new("greet", "echo two");
        let (answers, out) = run_locally(home.path(), &v2, &[]);
        assert_eq!(answers, ["mh-need-gzip", "mh-run"]);
        assert_eq!(out.stdout, b"two\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // Two versions in use at once (two machines) do not evict each other.
        for v in [&v2, &v1] {
            let (answers, _) = run_locally(home.path(), v, &[]);
            assert_eq!(answers, ["mh-run"]);
        }
    }

    #[test]
    fn compact_drops_comments_blanks_and_indentation_only() {
        let script = "# head\n\nf() {\n  # inside\n  echo \"a  # b\" ${1#x}\n}\n";
        assert_eq!(compact(script), "f() {\necho \"a  # b\" ${1#x}\n}\n");
    }

    /// The claim script's `send` streams a claim on stdout, so a refusal
    /// (here: a claim that is gone) goes to stderr, which the fetch quotes,
    /// never into the stream the client decompresses.
    #[test]
    fn claim_script_send_refuses_a_missing_claim_on_stderr() {
        let home = tempfile::tempdir().unwrap();
        let claim = b"/nonexistent/.mailhaul/claims/inbox.0123456789ab.1-2-3.mbox";
        let (_, out) = run_locally(
            home.path(),
            crate::engine::claim::remote_script(),
            &[b"send", claim, b"cat", b"0"],
        );
        assert_eq!(out.status.code(), Some(12));
        assert!(out.stdout.is_empty(), "{:?}", out.stdout);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "error missing no such claim\n"
        );
    }
}
