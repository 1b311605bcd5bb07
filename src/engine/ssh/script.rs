//! Remote POSIX sh scripts whose arguments never enter a shell command line.
//!
//! The exec request is the fixed text `sh -s -- xHEX xHEX ...`: each argument
//! is hex-encoded here (an `x` first, so that an empty argument survives), so
//! only `[0-9a-fx -]` ever reaches the user's login shell, whatever the
//! paths or names hold. The script itself goes on stdin, behind a prelude
//! that decodes the arguments back into `"$1" "$2" ...` with shell
//! arithmetic (no tools, no forks per byte). The script runs as one
//! `{ ...; } </dev/null` group: sh parses it whole before running it, and
//! commands in it cannot swallow the rest of the script from stdin.
//!
//! Once the server is known to have `gzip` ([`Connection::set_gzip_scripts`]),
//! the stdin text goes up gzip-compressed and the exec request becomes the
//! equally fixed `gzip -dc | sh -s -- xHEX ...`: on a slow uplink the script,
//! sent once per step, is most of what a fetch uploads.
//!
//! Channel order, as libssh2 needs it: read stdout to the end, then stderr,
//! then close and `wait_close()`, then read the exit status. stderr shares
//! the channel window with stdout, so scripts must keep stderr small.

use std::io::{Read, Write};
use std::time::Duration;

use ssh2::Channel;

use super::{Connection, SshError};

/// The decoder run before every script: turns `xHEX` arguments into bytes.
const PRELUDE: &str = r#"mh_unhex() {
mh_h=${1#x} mh_f=
while [ -n "$mh_h" ]; do
mh_r=${mh_h#??}
mh_n=$((0x${mh_h%"$mh_r"}))
mh_f="$mh_f\\$((mh_n / 64))$((mh_n / 8 % 8))$((mh_n % 8))"
mh_h=$mh_r
done
printf "${mh_f}x"
}
mh_i=$#
while [ "$mh_i" -gt 0 ]; do
mh_v=$(mh_unhex "$1")
shift
set -- "$@" "${mh_v%x}"
mh_i=$((mh_i - 1))
done
unset mh_h mh_f mh_r mh_n mh_i mh_v
unset -f mh_unhex
"#;

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

/// How the script text travels on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// As is: `sh -s -- ARGS`.
    Plain,
    /// gzip-compressed: `gzip -dc | sh -s -- ARGS`.
    Gzip,
}

/// The exec command line for `args` with the script sent as `packing` says:
/// fixed text and hex digits only.
pub fn command_line(packing: Packing, args: &[&[u8]]) -> Result<String, SshError> {
    let mut line = String::from(match packing {
        Packing::Plain => "sh -s --",
        Packing::Gzip => "gzip -dc | sh -s --",
    });
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

/// What is sent on stdin: the decoder, then `script` as one group.
pub fn stdin_text(script: &str) -> String {
    format!("{PRELUDE}{{\n{script}\n}} </dev/null\n")
}

/// What is sent on stdin for a long-lived script (see
/// [`Connection::start_long_script`]): the decoder, then `script` as one
/// group whose fd 3 stays the channel's stdin, so that the script sees
/// end-of-file there when the channel or the connection goes.
pub fn stdin_text_keeping_channel(script: &str) -> String {
    format!("{PRELUDE}{{\n{script}\n}} 3<&0 </dev/null\n")
}

/// The bytes sent on stdin for `script` packed as `packing` says.
pub fn stdin_bytes(packing: Packing, script: &str) -> Vec<u8> {
    let text = stdin_text(script);
    match packing {
        Packing::Plain => text.into_bytes(),
        Packing::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(text.as_bytes())
                .and_then(|()| gz.finish())
                .expect("gzip into memory cannot fail")
        }
    }
}

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

/// A running script whose stdout is read through [`Read`]; call
/// [`ScriptStream::finish`] at the end for its stderr and exit status.
pub struct ScriptStream<'c> {
    conn: &'c Connection,
    channel: Channel,
}

impl Connection {
    /// Sends later scripts gzip-compressed (`gzip -dc | sh -s -- ...`); only
    /// for a server known to have `gzip` in the login shell's `PATH`.
    pub fn set_gzip_scripts(&mut self, on: bool) {
        self.gzip_scripts = on;
    }

    /// Runs `script` with `sh` on the server, `args` as `"$1" "$2" ...`,
    /// and collects its output. For big outputs use [`Connection::start_script`].
    pub fn run_script<A: AsRef<[u8]>>(
        &self,
        script: &str,
        args: &[A],
    ) -> Result<ScriptOutput, SshError> {
        let mut stream = self.start_script(script, args)?;
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
        script: &str,
        args: &[A],
    ) -> Result<ScriptStream<'_>, SshError> {
        let packing = if self.gzip_scripts {
            Packing::Gzip
        } else {
            Packing::Plain
        };
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        let line = command_line(packing, &args)?;
        let mut channel = self.patiently("opening a channel", || self.session.channel_session())?;
        self.patiently("starting sh", || channel.exec(&line))?;
        channel
            .write_all(&stdin_bytes(packing, script))
            .map_err(|source| self.io_err("sending a script", source))?;
        self.patiently("sending a script", || channel.send_eof())?;
        Ok(ScriptStream {
            conn: self,
            channel,
        })
    }

    /// Starts a script meant to run as long as its channel (the spool
    /// watcher): sent plain, with `args` hex-encoded as for
    /// [`Connection::run_script`], and the channel's stdin left open: the
    /// script reads it on fd 3 and ends when it reaches end-of-file, i.e.
    /// when the channel is closed or the connection dies. The caller reads
    /// the channel's stdout and closes it.
    pub fn start_long_script<A: AsRef<[u8]>>(
        &self,
        script: &str,
        args: &[A],
    ) -> Result<Channel, SshError> {
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        let line = command_line(Packing::Plain, &args)?;
        let mut channel = self.patiently("opening a channel", || self.session.channel_session())?;
        self.patiently("starting sh", || channel.exec(&line))?;
        channel
            .write_all(stdin_text_keeping_channel(script).as_bytes())
            .map_err(|source| self.io_err("sending a script", source))?;
        channel
            .flush()
            .map_err(|source| self.io_err("sending a script", source))?;
        Ok(channel)
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
    /// until the idle limit.
    fn read_patiently(&self, reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut idle = Duration::ZERO;
        loop {
            match reader.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    idle += self.keepalive_interval;
                    if idle >= self.idle_timeout {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the server sent nothing for {} s",
                                self.idle_timeout.as_secs()
                            ),
                        ));
                    }
                    let _ = self.session.keepalive_send();
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

impl Read for ScriptStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.conn.read_patiently(&mut self.channel, buf)
    }
}

impl ScriptStream<'_> {
    /// Reads what is left of stdout (discarding it), then stderr, closes the
    /// channel and returns how the script ended.
    pub fn finish(mut self) -> Result<ScriptStatus, SshError> {
        let conn = self.conn;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = conn
                .read_patiently(&mut self.channel, &mut buf)
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
                .read_patiently(&mut err_stream, &mut buf)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_holds_only_hex() {
        let line = command_line(
            Packing::Plain,
            &[b"/var/mail/a b".as_slice(), b"", b"$(rm -rf /)\n'"],
        )
        .unwrap();
        assert!(line.starts_with("sh -s -- x"), "{line}");
        let tail = &line["sh -s --".len()..];
        assert!(
            tail.bytes().all(|b| b" x0123456789abcdef".contains(&b)),
            "{line}"
        );
        assert_eq!(tail.split(' ').nth(2), Some("x"), "empty arg survives");
        assert!(matches!(
            command_line(Packing::Plain, &[b"ok".as_slice(), b"a\0b"]),
            Err(SshError::NulInArgument { index: 1 })
        ));
    }

    /// Runs `script` with `args` the way a server would (the command line
    /// with the prelude and script on stdin, packed as `packing`), with the
    /// local /bin/sh.
    fn run_locally(packing: Packing, script: &str, args: &[&[u8]]) -> std::process::Output {
        let line = command_line(packing, args).unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&stdin_bytes(packing, script))
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// The prelude decodes every byte but NUL, run by the local /bin/sh,
    /// with the script sent plain and gzip-packed.
    #[test]
    fn prelude_decodes_all_bytes_locally() {
        let every: Vec<u8> = (1..=255).collect();
        let args: Vec<&[u8]> = vec![b"a b", b"", b"$(touch /tmp/x)'\"\n\n", &every];
        let script =
            r#"for a in "$@"; do printf '%s' "$a" | od -An -tx1 | tr -d ' \n'; echo; done"#;
        let hex: Vec<String> = args
            .iter()
            .map(|a| a.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        for packing in [Packing::Plain, Packing::Gzip] {
            let out = run_locally(packing, script, &args);
            assert!(out.status.success(), "{packing:?}");
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                hex.join("\n") + "\n",
                "{packing:?}"
            );
        }
    }

    #[test]
    fn gzip_packing_only_prefixes_fixed_text() {
        let plain = command_line(Packing::Plain, &[b"a;b".as_slice()]).unwrap();
        let packed = command_line(Packing::Gzip, &[b"a;b".as_slice()]).unwrap();
        assert_eq!(packed, format!("gzip -dc | {plain}"));
        assert!(stdin_bytes(Packing::Gzip, "echo hi").starts_with(&[0x1f, 0x8b]));
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
        let claim = b"/nonexistent/.mailhaul/claims/inbox.0123456789ab.1-2-3.mbox";
        let out = run_locally(
            Packing::Plain,
            crate::engine::claim::script(),
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
