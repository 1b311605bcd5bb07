//! Remote POSIX sh scripts whose arguments never enter a shell command line.
//!
//! The exec request is `sh -c 'STUB' sh xHEX xHEX ...`: STUB is fixed text
//! of this module (one line, no single quote, no `!` or backslash), and
//! each argument is hex-encoded (an `x` first, so that an empty argument
//! survives), so only that text and `[0-9a-fx ]` ever reach the user's
//! login shell, whatever the paths or names hold.
//!
//! What runs is a program cached on the server,
//! `~/.mailhaul/scripts/NAME-SHA256.sh`: the argument decoder ([`PRELUDE`],
//! which turns the arguments back into `"$1" "$2" ...` with shell
//! arithmetic, no tools, no forks per byte), then the script. The stub
//! holds the program's sha256 and nothing else of it (about 340 bytes,
//! where the whole loader used to go with every step, 1.3 kB): it reads the
//! cached copy into a variable, hashes that text and runs it only when the
//! hash is the one it holds, so the text that was hashed is the text that
//! runs (the file is not read twice), and a copy that is missing, cut
//! short, changed or of another version is never run. It answers `mh-run`
//! then. Otherwise it clears the variable, answers `mh-need-loader` and
//! runs the loader the client sends (its exact length, which the stub
//! knows): the loader answers `mh-need-gzip` (or `mh-need` where the server
//! has no `gzip`), reads the program (its exact length, so nothing the
//! script reads later on fd 3 is swallowed), checks its hash, stores it
//! (0600, temp + rename) and answers `mh-run`; `mh-bad` and exit 97 when
//! the hash differs. The loader is one `{ ...; }` command, so a copy cut
//! short runs nothing; it is not cached, since it is wanted only when the
//! client is asked anyway. So a program goes up once per server and
//! version, at the price of two round trips then (one more than before the
//! stub), and a step costs two round trips (the channel's opening, and the
//! exec request, which the output follows). The program runs as `{ eval "$mh_x"; } </dev/null`:
//! commands in it cannot swallow stdin.
//!
//! A server without any sha256 tool (`sha256sum`, `shasum`, `openssl`)
//! cannot check a cached copy: every step then asks for the loader and the
//! program, which run as they arrived and are not stored: one round trip
//! more than such a step cost before the stub, and about the same bytes
//! (the stub and the 0.6 kB loader instead of the 1.3 kB loader, and the
//! program, as before).
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

/// The decoder at the head of every cached program: the function
/// `mh_args` turns `xHEX` arguments into bytes with shell arithmetic, all
/// of them in one `set -- '...' ...` text left in `mh_f` (every byte an
/// octal escape of printf, a single quote in the data as `'"'"'`; the
/// quotes themselves `\047`), which one `printf` in one subshell makes:
/// one fork for all the arguments, not one per argument; `eval "$mh_f"`
/// then sets them. Run at once on the program's own arguments, and kept
/// for a command line that comes later (the claim script's `standby`). It
/// also unsets the stub's variables, so the script starts with none of them.
const PRELUDE: &str = concat!(
    r#"mh_args() { mh_f=; for mh_a in "$@"; do mh_h=${mh_a#x} mh_f="$mh_f \\047"; while [ -n "$mh_h" ]; do "#,
    r#"mh_r=${mh_h#??}; mh_n=$((0x${mh_h%"$mh_r"})); if [ "$mh_n" = 39 ]; "#,
    r#"then mh_f="$mh_f\\047\\042\\047\\042\\047"; "#,
    r#"else mh_f="$mh_f\\$((mh_n / 64))$((mh_n / 8 % 8))$((mh_n % 8))"; fi; mh_h=$mh_r; done; "#,
    r#"mh_f="$mh_f\\047"; done; mh_f="set --$(printf "$mh_f")"; }; "#,
    r#"mh_args "$@"; eval "$mh_f"; unset mh_a mh_h mh_f mh_r mh_n mh_k mh_x; "#,
);

/// Hex-encodes bytes (lower case), the way every script argument travels.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a hex string; `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

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

/// A script as it runs on the server: its cache name, its text, and the
/// program the server caches (the argument decoder, then the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteScript {
    /// The name of its cached copy (`claim`, `watch`, `send`): lower-case
    /// letters only, since it goes into the stub's text.
    pub name: &'static str,
    /// The script itself, ending in exactly one line break.
    pub text: String,
    /// sha256 of the cached program ([`PRELUDE`] and `text`, without the
    /// final line break: what is hashed, sent and stored), lower-case hex.
    pub sha256: String,
    /// The program.
    program: String,
    /// The program gzip-compressed, as sent after `mh-need-gzip`.
    gzipped: Vec<u8>,
    /// The loader: sent after `mh-need-loader`, never cached.
    loader: String,
}

impl RemoteScript {
    /// The script `name` with text `text` (trailing line breaks made one).
    pub fn new(name: &'static str, text: &str) -> RemoteScript {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase()),
            "script names are lower-case letters"
        );
        let text = format!("{}\n", text.trim_end_matches('\n'));
        let program = format!("{PRELUDE}{}", text.trim_end_matches('\n'));
        let sha256 = hex(&sha2::Sha256::digest(program.as_bytes()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzipped = gz
            .write_all(program.as_bytes())
            .and_then(|()| gz.finish())
            .expect("gzip into memory cannot fail");
        let loader = loader(name, gzipped.len(), program.len());
        RemoteScript {
            name,
            text,
            sha256,
            program,
            gzipped,
            loader,
        }
    }

    /// The exec request for this script with `args`: `sh -c 'STUB' sh
    /// xHEX...`, where STUB runs the cached program or asks for the loader
    /// (see the module's doc), fixed text on one line without single
    /// quotes (so any login shell, csh too, passes it to sh as it is), and
    /// each argument is hex; nothing the user or the server chose is in it.
    pub fn exec_line(&self, args: &[&[u8]], mode: ScriptMode) -> Result<String, SshError> {
        let mut line = format!("sh -c '{}' sh", self.stub(mode));
        for word in hex_words(args)? {
            line.push(' ');
            line.push_str(&word);
        }
        Ok(line)
    }

    /// The text of the exec request: reads the cached program into a
    /// variable, hashes that and runs it when the hash is this program's;
    /// otherwise clears it, asks for the loader, reads exactly the loader's
    /// length and runs it (it sets `mh_x` only to a program it checked).
    /// `trap` first, before anything can write; the tools' stderr (a
    /// missing copy, a missing tool, dd's counts) to /dev/null, the
    /// program's untouched.
    fn stub(&self, mode: ScriptMode) -> String {
        let (signals, redirect) = match mode {
            ScriptMode::Answered => ("", "</dev/null"),
            ScriptMode::KeepStdin => ("", "3<&0 </dev/null"),
            ScriptMode::Detached => (r#"trap "" HUP PIPE;"#, "</dev/null"),
        };
        let (name, hash, loader) = (self.name, &self.sha256, self.loader.len());
        let text = format!(
            r#"{signals}mh_k={hash};{{ mh_x=$(cat "$HOME/.mailhaul/scripts/{name}-$mh_k.sh");case $(printf %s "$mh_x"|{{ {HASH};}}) in *$mh_k*)echo mh-run;;*)mh_x=;echo mh-need-loader;eval "$(dd bs=1 count={loader})";;esac;}} 2>/dev/null;{{ eval "$mh_x";}} {redirect}"#
        );
        debug_assert!(!text.contains(['\'', '\n', '!', '\\']));
        text
    }

    /// What the stub's (or the loader's) answer `line` asks of the client.
    pub(super) fn answer_to(&self, line: &str) -> StubAnswer<'_> {
        match line {
            "mh-run" => StubAnswer::Run,
            "mh-bad" => StubAnswer::Bad,
            other => self
                .body_for(other)
                .map_or(StubAnswer::Other, StubAnswer::Send),
        }
    }

    /// What to send when the server asks with `request` (`mh-need-loader`,
    /// `mh-need` or `mh-need-gzip`).
    pub fn body_for(&self, request: &str) -> Option<&[u8]> {
        match request {
            "mh-need-loader" => Some(self.loader.as_bytes()),
            "mh-need" => Some(self.program.as_bytes()),
            "mh-need-gzip" => Some(&self.gzipped),
            _ => None,
        }
    }
}

/// A line of the stub's or the loader's answer, read by what it asks.
pub(super) enum StubAnswer<'s> {
    /// `mh-run`: the program runs.
    Run,
    /// `mh-need...`: these bytes (the loader, the program) are wanted.
    Send(&'s [u8]),
    /// `mh-bad`: the program arrived damaged; nothing runs.
    Bad,
    /// Anything else (a chatty login shell).
    Other,
}

/// Every argument hex-encoded after an `x` (so that an empty one is a
/// word too): the words of an exec line and of a standby's command line.
pub(super) fn hex_words<A: AsRef<[u8]>>(args: &[A]) -> Result<Vec<String>, SshError> {
    args.iter()
        .enumerate()
        .map(|(index, arg)| {
            let arg = arg.as_ref();
            if arg.contains(&0) {
                return Err(SshError::NulInArgument { index });
            }
            Ok(format!("x{}", hex(arg)))
        })
        .collect()
}

/// sha256 of stdin by whichever tool the server has (its output holds the
/// hex digest; with stderr to /dev/null, no output where it has none). A
/// tool that is missing reads nothing, so the next one gets the whole input.
const HASH: &str = "sha256sum||shasum -a 256||openssl sha256";

/// The loader of the program `name` (its gzip-compressed and plain
/// lengths): sent when the stub finds no good cached copy, and run by the
/// stub. It asks for the program (compressed when the server has `gzip`),
/// reads exactly its length, and when its sha256 is the stub's `$mh_k`
/// stores it (0600, temp + rename; copies of that script untouched for 30
/// days are removed then) and hands it to the stub in `mh_x`; a program
/// whose hash differs is refused (`mh-bad`, exit 97); without any sha256
/// tool it is run as it arrived, not stored. One `{ ...; }` command: a
/// copy cut short is a syntax error and runs nothing.
fn loader(name: &str, gzipped: usize, plain: usize) -> String {
    format!(
        r#"{{ if command -v gzip >/dev/null 2>&1; then echo mh-need-gzip; mh_t=$(dd bs=1 count={gzipped} 2>/dev/null | gzip -dc); else echo mh-need; mh_t=$(dd bs=1 count={plain} 2>/dev/null); fi
case $(printf %s "$mh_t" | {{ {HASH}; }} 2>/dev/null) in
*"$mh_k"*) mh_d=${{HOME:-/nonexistent}}/.mailhaul/scripts; (umask 077; mkdir -p "$mh_d" && find "$mh_d" -name "{name}-*.sh" -mtime +30 -exec rm -f {{}} + ; printf %s "$mh_t" > "$mh_d/.{name}.$$" && mv -f "$mh_d/.{name}.$$" "$mh_d/{name}-$mh_k.sh") 2>/dev/null ;;
"") ;;
*) echo mh-bad; exit 97 ;;
esac
mh_x=$mh_t; unset mh_t mh_d; echo mh-run; }}"#
    )
}

/// Lines the stub may be preceded by (a chatty login shell start-up)
/// before its first answer; more is an error.
pub(super) const MAX_NOISE_LINES: usize = 100;

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

/// A session channel asked for ahead of need ([`Connection::request_channel`]).
pub(super) enum Ahead {
    /// None asked for (or the one asked for was refused).
    Nothing,
    /// Asked for; libssh2 holds the request until an opening completes it.
    /// Dropped with the session so, it is freed without a close (see
    /// `Connection`'s `Drop`, and the vendored libssh2's fix).
    Asked,
    /// Opened and not used yet.
    Open(Channel),
}

/// A running script whose stdout is read through [`Read`]; call
/// [`ScriptStream::finish`] at the end for its stderr and exit status.
pub struct ScriptStream<'c> {
    conn: &'c Connection,
    channel: Channel,
    /// Set by another thread to stop reading (see [`ScriptStream::stop_on`]).
    stop: Option<Arc<AtomicBool>>,
    /// The first byte of stdout, read already (a standby's step).
    first: Option<u8>,
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
            first: None,
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
    /// stdout as a stream; on the session's standby of that script when
    /// one runs ([`Connection::keep_ready`]).
    pub fn start_script<A: AsRef<[u8]>>(
        &self,
        script: &RemoteScript,
        args: &[A],
    ) -> Result<ScriptStream<'_>, SshError> {
        if let Some(stream) = self.start_on_standby(script, args)? {
            return Ok(stream);
        }
        let mut channel = self.start_channel(script, args, ScriptMode::Answered)?;
        self.patiently("sending a script", || channel.send_eof())?;
        Ok(ScriptStream {
            conn: self,
            channel,
            stop: None,
            first: None,
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

    /// Opens a channel, runs the stub there and sees the script started
    /// (sending the loader and the program first if the server has no good
    /// copy); stdin stays open.
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
        let asked = match self.take_ahead() {
            Ahead::Open(channel) => return Ok(OpenChannel(channel)),
            Ahead::Asked => true,
            Ahead::Nothing => false,
        };
        let open = || self.patiently("opening a channel", || self.session.channel_session());
        let opened = match open() {
            // The request sent ahead was refused (sshd's MaxSessions,
            // reached while another step ran): a new one, now.
            Err(_) if asked => open(),
            opened => opened,
        };
        match opened {
            // Refused with a standby holding a session the server counts:
            // the standby is ended to make room for this step.
            Err(_) if self.end_standby() => open(),
            opened => opened,
        }
        .map(OpenChannel)
    }

    /// Asks for a session channel ahead of need and returns without
    /// waiting for the server's answer, which libssh2 keeps when it
    /// arrives meanwhile: the next [`Connection::open_channel`] on this
    /// session then completes at once, its round trip spent while the
    /// caller was busy with another channel or idle. Called again, it
    /// completes the request when its answer has come (so that libssh2
    /// tracks the channel, and sees it if the server closes it), replaces
    /// a channel the server closed or refused, and otherwise does nothing.
    /// A request that cannot go out is left to the next opening, which
    /// then waits as usual. Only on a session no other thread uses
    /// meanwhile (it switches the session to non-blocking for the call).
    pub fn request_channel(&self) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if let Ahead::Open(channel) = &*ahead {
            if !channel.eof() {
                return;
            }
            // A closed one is freed while the session still blocks.
            *ahead = Ahead::Nothing;
        }
        *ahead = match self.nonblocking(|| self.session.channel_session()) {
            Ok(channel) => Ahead::Open(channel),
            Err(e) if is_eagain(&e) => Ahead::Asked,
            Err(_) => Ahead::Nothing,
        };
    }

    /// Runs `call` with the session non-blocking (a libssh2 call that would
    /// wait answers EAGAIN instead), then makes it block again. Only on a
    /// session no other thread uses meanwhile.
    pub fn nonblocking<T>(&self, call: impl FnOnce() -> T) -> T {
        self.session.set_blocking(false);
        let result = call();
        self.session.set_blocking(true);
        result
    }

    /// What was asked for ahead, taken: a channel the server has closed
    /// meanwhile counts as nothing. What has arrived is read first (a read
    /// that cannot wait, on a channel that never has data), so that a close
    /// the server sent meanwhile is seen.
    pub(super) fn take_ahead(&self) -> Ahead {
        let taken = std::mem::replace(
            &mut *self.ahead.lock().unwrap_or_else(|p| p.into_inner()),
            Ahead::Nothing,
        );
        match taken {
            Ahead::Open(mut channel) => {
                let _ = self.nonblocking(|| channel.read(&mut [0u8; 1]));
                if channel.eof() {
                    Ahead::Nothing
                } else {
                    Ahead::Open(channel)
                }
            }
            other => other,
        }
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
            first: None,
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
    /// the script, the stub asks for the loader and reads end-of-file: it
    /// then runs nothing.
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
        self.await_start(&mut channel, script, Vec::new(), 0)?;
        Ok(channel)
    }

    /// Reads the stub's answers on `channel` (the first line begins with
    /// `partial`; `noise` lines of a chatty login shell were read before),
    /// sending the loader and the program when asked, until the script
    /// runs.
    pub(super) fn await_start(
        &self,
        channel: &mut Channel,
        script: &RemoteScript,
        mut partial: Vec<u8>,
        mut noise: usize,
    ) -> Result<(), SshError> {
        loop {
            let answer = self
                .read_short_line(channel, std::mem::take(&mut partial))
                .map_err(|source| self.io_err("starting a script", source))?;
            match answer.as_deref().map(|line| script.answer_to(line)) {
                Some(StubAnswer::Run) => return Ok(()),
                Some(StubAnswer::Send(body)) => {
                    channel
                        .write_all(body)
                        .and_then(|()| channel.flush())
                        .map_err(|source| self.io_err("sending a script", source))?;
                }
                Some(StubAnswer::Bad) => {
                    return Err(self.io_err(
                        "sending a script",
                        std::io::Error::other(format!(
                            "the {} script arrived damaged (its sha256 differs)",
                            script.name
                        )),
                    ))
                }
                Some(StubAnswer::Other) if noise < MAX_NOISE_LINES => noise += 1,
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
    /// (the rest of the output stays in the channel), after `line` (what
    /// came of it before), without its line break; `None` at end-of-file.
    fn read_short_line(
        &self,
        channel: &mut Channel,
        mut line: Vec<u8>,
    ) -> std::io::Result<Option<String>> {
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
    pub(super) fn patiently<T>(
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
    pub(super) fn read_patiently(
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

    pub(super) fn io_err(&self, action: &'static str, source: std::io::Error) -> SshError {
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
        if let (Some(byte), Some(slot)) = (self.first, buf.first_mut()) {
            *slot = byte;
            self.first = None;
            return Ok(1);
        }
        self.conn
            .read_patiently(&mut self.channel, buf, self.stop.as_deref())
    }
}

impl<'c> ScriptStream<'c> {
    /// A stream whose first byte `first` was read already.
    pub(super) fn with_first(conn: &'c Connection, channel: Channel, first: u8) -> Self {
        ScriptStream {
            conn,
            channel,
            stop: None,
            first: Some(first),
        }
    }

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
/// line, the loader and the program sent when asked for), with the local
/// /bin/sh and `home` as `$HOME`. Returns the stub's and loader's answers
/// and the script's own output. For tests.
#[cfg(test)]
pub(crate) fn run_locally(
    home: &std::path::Path,
    script: &RemoteScript,
    args: &[&[u8]],
) -> (Vec<String>, std::process::Output) {
    run_answering(home, script, args, ScriptMode::Answered, &[], |answer| {
        script
            .body_for(answer)
            .map(|body| Reply::Send(body.to_vec()))
    })
}

/// What [`run_answering`] sends for a line.
#[cfg(test)]
pub(crate) enum Reply {
    /// These bytes, then it reads on.
    Send(Vec<u8>),
    /// These bytes, then end-of-file.
    Last(Vec<u8>),
}

/// Runs the exec line of `script` in `mode` with the local /bin/sh as
/// [`run_locally`] does, with `env` added, sending what `reply` gives for
/// each line the stub and the loader answer, until it gives `None`, or
/// bytes to send last, or the line was `mh-run` (what is sent for that one
/// is the script's input on fd 3 in [`ScriptMode::KeepStdin`]); then stdin
/// is closed.
#[cfg(test)]
pub(crate) fn run_answering(
    home: &std::path::Path,
    script: &RemoteScript,
    args: &[&[u8]],
    mode: ScriptMode,
    env: &[(&str, &std::ffi::OsStr)],
    mut reply: impl FnMut(&str) -> Option<Reply>,
) -> (Vec<String>, std::process::Output) {
    use std::io::BufRead;
    let line = script.exec_line(args, mode).unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("HOME", home)
        .envs(env.iter().copied())
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
        match reply(&answer) {
            Some(Reply::Send(body)) if answer != "mh-run" => stdin.write_all(&body).unwrap(),
            Some(Reply::Send(body) | Reply::Last(body)) => {
                stdin.write_all(&body).unwrap();
                break;
            }
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
    /// the quoted stub) followed by hex arguments only.
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
    /// through the stub, the program sent and then cached.
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
        for expected in [FIRST.as_slice(), &["mh-run"]] {
            let (answers, out) = run_locally(home.path(), &script, &args);
            assert_eq!(answers, expected);
            assert!(out.status.success(), "{out:?}");
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                hex.join("\n") + "\n"
            );
        }
    }

    /// What the stub and the loader answer on a server without a good copy.
    const FIRST: [&str; 3] = ["mh-need-loader", "mh-need-gzip", "mh-run"];

    /// The cached copy of `script` in `home`.
    fn cached(home: &std::path::Path, script: &RemoteScript) -> std::path::PathBuf {
        home.join(format!(
            ".mailhaul/scripts/{}-{}.sh",
            script.name, script.sha256
        ))
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
        assert_eq!(answers, FIRST);
        assert_eq!(out.stdout, b"one\n");
        let cached = cached(home.path(), &v1);
        assert_eq!(std::fs::read(&cached).unwrap(), v1.program.as_bytes());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cached).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");

        std::fs::write(&cached, format!("{}\necho tampered\n", v1.program)).unwrap();
        let (answers, out) = run_locally(home.path(), &v1, &[]);
        assert_eq!(answers, FIRST);
        assert_eq!(out.stdout, b"one\n");
        assert_eq!(std::fs::read(&cached).unwrap(), v1.program.as_bytes());

        let v2 = RemoteScript::new("greet", "echo two");
        let (answers, out) = run_locally(home.path(), &v2, &[]);
        assert_eq!(answers, FIRST);
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

    /// The stub alone (nothing answered: its request reads end-of-file, as
    /// a detached step's does) runs nothing of a cached copy that is cut
    /// short, changed, of another version or empty, in any mode; the next
    /// step with a client sends it again, runs it and stores it back.
    /// Fails when the stub's hash check is skipped (checked by breaking it).
    #[test]
    fn the_stub_never_runs_a_bad_cached_copy() {
        let home = tempfile::tempdir().unwrap();
        let ran = home.path().join("ran");
        let script = RemoteScript::new("greet", "touch \"$HOME/ran\"\necho \"hello $1\"");
        let (answers, out) = run_locally(home.path(), &script, &[b"you"]);
        assert_eq!(answers, FIRST);
        assert_eq!(out.stdout, b"hello you\n");
        let cached = cached(home.path(), &script);
        let program = script.program.clone();
        let other = RemoteScript::new("greet", "touch \"$HOME/ran\"\necho other");
        let bad = [
            program[..program.rfind('\n').unwrap()].to_string(),
            format!("{program}\ntouch \"$HOME/ran\""),
            other.program.clone(),
            String::new(),
        ];
        for copy in &bad {
            for mode in [
                ScriptMode::Answered,
                ScriptMode::KeepStdin,
                ScriptMode::Detached,
            ] {
                std::fs::write(&cached, copy).unwrap();
                let _ = std::fs::remove_file(&ran);
                let (answers, out) =
                    run_answering(home.path(), &script, &[b"you"], mode, &[], |_| None);
                assert_eq!(answers, ["mh-need-loader"], "{copy:?} {mode:?}");
                assert!(out.stdout.is_empty(), "{out:?}");
                assert!(!ran.exists(), "{mode:?} ran {copy:?}");
                assert_eq!(std::fs::read_to_string(&cached).unwrap(), *copy);
            }
            let (answers, out) = run_locally(home.path(), &script, &[b"you"]);
            assert_eq!(answers, FIRST);
            assert_eq!(out.stdout, b"hello you\n");
            assert_eq!(std::fs::read_to_string(&cached).unwrap(), program);
        }
    }

    /// A loader cut short (the connection lost while it came) runs nothing,
    /// neither itself nor the bad copy the stub read; a program cut short
    /// is refused (`mh-bad`, exit 97) and not stored.
    #[test]
    fn a_loader_or_program_cut_short_runs_nothing() {
        let home = tempfile::tempdir().unwrap();
        let ran = home.path().join("ran");
        let script = RemoteScript::new("greet", "echo hello");
        let cached = cached(home.path(), &script);
        std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
        let changed = format!("touch \"$HOME/ran\"\n{}", script.program);
        for cut in [1, script.loader.len() / 2, script.loader.len() - 1] {
            std::fs::write(&cached, &changed).unwrap();
            let (answers, out) =
                run_answering(home.path(), &script, &[], ScriptMode::Answered, &[], |a| {
                    (a == "mh-need-loader")
                        .then(|| Reply::Last(script.loader.as_bytes()[..cut].to_vec()))
                });
            assert_eq!(answers, ["mh-need-loader"], "cut at {cut}");
            assert!(out.stdout.is_empty(), "{out:?}");
            assert!(!ran.exists(), "cut at {cut}");
        }
        let (answers, out) =
            run_answering(home.path(), &script, &[], ScriptMode::Answered, &[], |a| {
                let body = script.body_for(a)?;
                Some(match a {
                    "mh-need-gzip" => Reply::Last(body[..body.len() / 2].to_vec()),
                    _ => Reply::Send(body.to_vec()),
                })
            });
        assert_eq!(answers, ["mh-need-loader", "mh-need-gzip"]);
        assert_eq!(out.stdout, b"mh-bad\n");
        assert_eq!(out.status.code(), Some(97));
        assert!(!ran.exists());
        assert_eq!(std::fs::read_to_string(&cached).unwrap(), changed);
    }

    /// On first contact the script's stdin on fd 3 ([`ScriptMode::KeepStdin`])
    /// is exactly what the client sends after `mh-run`: the stub and the
    /// loader read only the loader's and the program's bytes.
    #[test]
    fn keep_stdin_gets_exactly_what_follows() {
        let home = tempfile::tempdir().unwrap();
        let script = RemoteScript::new("echo", "od -An -c <&3 | tr -d ' \\n'; echo");
        for expected in [FIRST.as_slice(), &["mh-run"]] {
            let (answers, out) = run_answering(
                home.path(),
                &script,
                &[],
                ScriptMode::KeepStdin,
                &[],
                |a| match a {
                    "mh-run" => Some(Reply::Last(b"in\0put\n".to_vec())),
                    _ => script.body_for(a).map(|body| Reply::Send(body.to_vec())),
                },
            );
            assert_eq!(answers, expected);
            assert_eq!(String::from_utf8_lossy(&out.stdout), "in\\0put\\n\n");
        }
    }

    /// A server without any sha256 tool cannot check a cached copy: every
    /// step asks for the loader and the program, runs them as they arrived
    /// and stores nothing.
    #[test]
    fn without_a_sha256_tool_every_step_sends_the_program() {
        let home = tempfile::tempdir().unwrap();
        let bin = home.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in ["sh", "cat", "dd", "gzip", "mkdir", "find", "mv", "rm"] {
            let path = ["/usr/bin", "/bin"]
                .map(|dir| std::path::Path::new(dir).join(tool))
                .into_iter()
                .find(|path| path.exists())
                .unwrap();
            std::os::unix::fs::symlink(path, bin.join(tool)).unwrap();
        }
        let script = RemoteScript::new("greet", "echo \"hello $1\"");
        for _ in 0..2 {
            let (answers, out) = run_answering(
                home.path(),
                &script,
                &[b"you"],
                ScriptMode::Answered,
                &[("PATH", bin.as_os_str())],
                |a| script.body_for(a).map(|body| Reply::Send(body.to_vec())),
            );
            assert_eq!(answers, FIRST);
            assert_eq!(out.stdout, b"hello you\n", "{out:?}");
        }
        assert!(!cached(home.path(), &script).exists());
    }

    /// A step whose program the server has sends only the stub: a claim
    /// with the arguments of an everyday fetch (a kept facts key, the
    /// dictionary's sha256) is about a third of what it was with the whole
    /// loader (1.3 kB of it) in every exec request.
    #[test]
    fn a_claim_step_sends_only_the_stub() {
        let claim = crate::engine::claim::remote_script();
        let args: [&[u8]; 12] = [
            b"claim",
            b"",
            b"rename",
            b"30",
            b"0123456789ab",
            b"300",
            b"zstd",
            b"9",
            b"2882404353-52",
            &[b'a'; 64],
            b"1048576",
            b"19",
        ];
        for mode in [
            ScriptMode::Answered,
            ScriptMode::KeepStdin,
            ScriptMode::Detached,
        ] {
            let stub = claim.exec_line(&[], mode).unwrap();
            assert!(stub.len() < 400, "{} {stub}", stub.len());
        }
        let line = claim.exec_line(&args, ScriptMode::Answered).unwrap();
        assert!(line.len() < 600, "{} {line}", line.len());
        assert!(!line.contains(PRELUDE) && !line.contains("mkdir"), "{line}");
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
