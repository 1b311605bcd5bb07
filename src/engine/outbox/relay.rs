//! Sending queued messages over the account's SSH login: one exec channel
//! runs `assets/remote/send.sh`, which hands each message to the server's
//! own `sendmail -oi -f FROM -- RCPT...`, exactly once (its ledger; see the
//! script's header and docs/send.md).
//!
//! On the channel: the script (arguments hex-encoded on the fixed command
//! line, as for the claim script) answers `ready METHOD` with the best
//! compressor both sides have; then the step's messages go up as one
//! compressed stream (each message compressed with those before it as
//! history; flushed every 256 KiB and at the end), each as its envelope, its bytes in
//! chunks (`d LEN` + bytes, so memory stays bounded whatever the message's
//! size) and its size and sha256, which the server checks before sendmail
//! sees a byte. The server answers one line per message.
//! A message leaves the outbox only on `ok` or `dup`.

use std::io::{self, Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use ssh2::Channel;

use super::{Outbox, OutboxMessage};
use crate::engine::ssh::{compact, Connection, RemoteScript, SshError};

/// The script as written, with its comments.
const SCRIPT_SOURCE: &str = include_str!("../../../assets/remote/send.sh");

/// The script as sent: without comments and indentation, cached on the
/// server by its hash (see `engine::ssh`).
pub fn script() -> &'static RemoteScript {
    static COMPACT: OnceLock<RemoteScript> = OnceLock::new();
    COMPACT.get_or_init(|| RemoteScript::new("send", &compact(SCRIPT_SOURCE)))
}

/// Message bytes per `d` chunk.
const CHUNK: usize = 256 * 1024;

/// How a message goes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// zstd at the given level.
    Zstd(i32),
    /// gzip (level 9).
    Gzip,
    /// As it is (SSH transport compression may still apply).
    Plain,
}

impl Method {
    /// The name the server script uses.
    pub fn name(self) -> &'static str {
        match self {
            Method::Zstd(_) => "zstd",
            Method::Gzip => "gzip",
            Method::Plain => "none",
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server's sendmail accepted it; it left the outbox.
    Sent,
    /// The server's ledger says an earlier run had it accepted; it left the
    /// outbox without being sent again.
    AlreadySent,
    /// sendmail refused it for good; it was moved to `failed/`.
    Refused {
        /// sendmail's exit status.
        status: i32,
        /// What it said.
        words: String,
    },
    /// Not sent this time; it stays queued (backoff).
    Deferred(String),
    /// An earlier run began sending it and died before it learnt the
    /// answer; moved to `failed/` rather than risk sending it twice.
    Unsure,
}

impl Outcome {
    /// Whether this is a permanent failure.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Refused { .. } | Outcome::Unsure)
    }
}

/// What one relay run did.
#[derive(Debug, Clone, Default)]
pub struct RelayReport {
    /// Each message tried, in order, with its outcome.
    pub outcomes: Vec<(String, Outcome)>,
    /// Bytes of the messages the server accepted.
    pub sent_bytes: u64,
    /// Bytes of those on the wire (compressed, framing included).
    pub wire_bytes: u64,
    /// The method the server agreed to (`smtp` for SMTP).
    pub method: Option<&'static str>,
}

/// Why a relay run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The channel could not be opened or broke before the server was ready.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The server's script refused to start (no sendmail, no flock, busy).
    #[error("the server on {host} cannot send: {words}")]
    Server {
        /// The server.
        host: String,
        /// The script's reason.
        words: String,
    },
    /// The SMTP dialogue's channel broke or carried something that is not
    /// SMTP.
    #[error("SMTP with {server}: {source}")]
    SmtpLink {
        /// The SMTP server, and the SSH server it is reached through.
        server: String,
        /// What broke.
        #[source]
        source: io::Error,
    },
    /// Local I/O on the outbox.
    #[error("outbox: {0}")]
    Io(#[from] io::Error),
}

/// sendmail exit statuses that mean the message will never go as it is
/// (sysexits: USAGE, DATAERR, NOINPUT, NOUSER, NOHOST, NOPERM); any other
/// failure is taken as temporary.
pub fn is_permanent_status(status: i32) -> bool {
    matches!(status, 64..=68 | 77)
}

/// Sends `messages` (of `outbox`) over `conn`, preferring `methods` in
/// order, through the server's `sendmail` (its path; `None`: the usual
/// places), and records every outcome in the outbox before returning. A
/// link that breaks midway defers the messages not answered yet.
pub fn relay(
    conn: &Connection,
    outbox: &Outbox,
    messages: &[OutboxMessage],
    methods: &[Method],
    sendmail: Option<&str>,
) -> Result<RelayReport, RelayError> {
    let offer = methods
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(" ");
    let channel = conn.start_long_script(
        script(),
        &[
            b"1".as_slice(),
            offer.as_bytes(),
            sendmail.unwrap_or("").as_bytes(),
        ],
    )?;
    let mut link = Link::new(conn, channel);
    let ready = link
        .read_line()
        .map_err(|source| SshError::Io {
            action: "waiting for the send script",
            host: conn.host().to_string(),
            source,
        })?
        .unwrap_or_default();
    let method = match ready.strip_prefix("ready ") {
        Some(name) => methods
            .iter()
            .copied()
            .find(|m| m.name() == name)
            .unwrap_or(Method::Plain),
        None => {
            link.close();
            let words = ready
                .strip_prefix("error ")
                .map(|w| w.split_once(' ').map_or(w, |(_, t)| t).to_string())
                .unwrap_or_else(|| format!("unexpected answer {ready:?}"));
            return Err(RelayError::Server {
                host: conn.host().to_string(),
                words,
            });
        }
    };
    let mut report = RelayReport {
        method: Some(method.name()),
        ..RelayReport::default()
    };
    let mut written = 0usize;
    let mut broken: Option<String> = None;
    let mut upstream = Upstream::new(Counting::new(&mut link), method)?;
    let mut unflushed = 0u64;
    for message in messages {
        // Flushing ends a compressed block (new tables): only once 256 KiB
        // have gone in, so small messages share blocks; the stream's end
        // flushes the rest.
        unflushed += message.size;
        let sent = send_message(&mut upstream, outbox, message).and_then(|()| {
            if unflushed >= CHUNK as u64 {
                unflushed = 0;
                upstream.flush()
            } else {
                Ok(())
            }
        });
        match sent {
            Ok(()) => written += 1,
            Err(e) => {
                broken = Some(format!("sending to {}: {e}", conn.host()));
                break;
            }
        }
    }
    // What the whole stream took on the channel, shared out among the
    // messages by size (a compressed stream has no per-message bytes).
    let mut stream_bytes = upstream.counted();
    let ended = match broken {
        None => upstream.finish().map(|total| stream_bytes = total),
        Some(_) => {
            drop(upstream);
            Ok(())
        }
    };
    let sizes: u64 = messages[..written]
        .iter()
        .map(|m| m.size)
        .sum::<u64>()
        .max(1);
    let wire: Vec<u64> = messages[..written]
        .iter()
        .map(|m| (u128::from(stream_bytes) * u128::from(m.size) / u128::from(sizes)) as u64)
        .collect();
    if broken.is_none() {
        if let Err(e) = ended.and_then(|()| link.send_eof()) {
            broken = Some(format!("sending to {}: {e}", conn.host()));
        }
    }
    // Every answer the server gives, whether or not the upload finished.
    let mut answered = std::collections::HashMap::new();
    loop {
        match link.read_line() {
            Ok(Some(line)) => {
                if let Some((id, outcome)) = parse_answer(&line) {
                    crash_point("answered");
                    answered.insert(id, outcome);
                } else if let Some(words) = line.strip_prefix("error ") {
                    broken = Some(format!(
                        "the send script on {} stopped: {words}",
                        conn.host()
                    ));
                }
            }
            Ok(None) => break,
            Err(e) => {
                broken.get_or_insert_with(|| format!("reading from {}: {e}", conn.host()));
                break;
            }
        }
    }
    link.close();
    for (index, message) in messages.iter().enumerate() {
        let outcome = answered.remove(&message.id).unwrap_or_else(|| {
            Outcome::Deferred(
                broken
                    .clone()
                    .unwrap_or_else(|| format!("{} gave no answer for it", conn.host())),
            )
        });
        let wire_bytes = wire.get(index).copied().unwrap_or(0);
        match &outcome {
            Outcome::Sent | Outcome::AlreadySent => {
                outbox.mark_sent(&message.id, message.size, wire_bytes)?;
                report.sent_bytes += message.size;
                report.wire_bytes += wire_bytes;
            }
            Outcome::Refused { status, words } => {
                outbox.mark_failed(
                    &message.id,
                    &format!(
                        "the server's sendmail refused it (exit status {status}{}): {words}",
                        sysexit_name(*status)
                            .map(|n| format!(", {n}"))
                            .unwrap_or_default()
                    ),
                )?;
            }
            Outcome::Unsure => outbox.mark_failed(
                &message.id,
                "an earlier attempt began handing it to the server's sendmail and was \
                 interrupted (server crash or kill -9) before it learnt the answer; it may \
                 have been sent. Not sent again: check, then resend it yourself if needed",
            )?,
            Outcome::Deferred(why) => outbox.mark_deferred(&message.id, why)?,
        }
        report.outcomes.push((message.id.clone(), outcome));
    }
    Ok(report)
}

/// The name of a sysexits status, for messages.
pub fn sysexit_name(status: i32) -> Option<&'static str> {
    Some(match status {
        64 => "EX_USAGE",
        65 => "EX_DATAERR",
        66 => "EX_NOINPUT",
        67 => "EX_NOUSER",
        68 => "EX_NOHOST",
        69 => "EX_UNAVAILABLE",
        70 => "EX_SOFTWARE",
        71 => "EX_OSERR",
        72 => "EX_OSFILE",
        73 => "EX_CANTCREAT",
        74 => "EX_IOERR",
        75 => "EX_TEMPFAIL",
        76 => "EX_PROTOCOL",
        77 => "EX_NOPERM",
        78 => "EX_CONFIG",
        _ => return None,
    })
}

/// Parses one answer line of the server script.
fn parse_answer(line: &str) -> Option<(String, Outcome)> {
    let mut words = line.splitn(4, ' ');
    let kind = words.next()?;
    let id = words.next()?.to_string();
    if !super::is_id(&id) {
        return None;
    }
    let outcome = match kind {
        "ok" => Outcome::Sent,
        "dup" => Outcome::AlreadySent,
        "unsure" => Outcome::Unsure,
        "bad" => Outcome::Deferred(format!(
            "the upload did not verify on the server: {}",
            line.splitn(3, ' ').nth(2).unwrap_or("")
        )),
        "fail" => {
            let status: i32 = words.next()?.parse().ok()?;
            let words = unhex(words.next().unwrap_or("x"));
            let words = String::from_utf8_lossy(&words).trim().to_string();
            if is_permanent_status(status) {
                Outcome::Refused { status, words }
            } else {
                Outcome::Deferred(format!(
                    "the server's sendmail failed (exit status {status}{}): {words}",
                    sysexit_name(status)
                        .map(|n| format!(", {n}"))
                        .unwrap_or_default()
                ))
            }
        }
        _ => return None,
    };
    Some((id, outcome))
}

fn unhex(text: &str) -> Vec<u8> {
    let hex = text.strip_prefix('x').unwrap_or(text).as_bytes();
    hex.chunks(2)
        .filter_map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect()
}

fn hex_arg(value: &str) -> String {
    let mut s = String::with_capacity(1 + 2 * value.len());
    s.push('x');
    for b in value.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// For the crash tests: `MAILHAUL_TEST_CRASH_AT=answered` kills the process
/// right after the server's first answer arrived, before the outbox has
/// recorded it.
pub(super) fn crash_point(point: &str) {
    if std::env::var("MAILHAUL_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        std::process::abort();
    }
}

/// The channel, read and written with keepalives while the server is busy
/// (the send script's exec channel, or the SMTP relay's direct-tcpip one).
pub(super) struct Link<'c> {
    conn: &'c Connection,
    channel: Channel,
    /// Bytes read past the last complete line.
    pending: Vec<u8>,
    idle_limit: Duration,
}

impl<'c> Link<'c> {
    /// Wraps `channel` of `conn`; a peer silent for 120 s is given up.
    pub(super) fn new(conn: &'c Connection, channel: Channel) -> Link<'c> {
        Link {
            conn,
            channel,
            pending: Vec::new(),
            idle_limit: Duration::from_secs(120),
        }
    }

    /// Sets how long the peer may stay silent (keepalives go out
    /// meanwhile) before the link is given up.
    pub(super) fn set_idle_limit(&mut self, limit: Duration) {
        self.idle_limit = limit;
    }

    pub(super) fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        let mut idle = Duration::ZERO;
        while !data.is_empty() {
            match self.channel.write(data) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the channel took nothing",
                    ))
                }
                Ok(n) => {
                    data = &data[n..];
                    idle = Duration::ZERO;
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    idle += Duration::from_secs(15);
                    if idle >= self.idle_limit {
                        return Err(e);
                    }
                    let _ = self.conn.session().keepalive_send();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(super) fn send_eof(&mut self) -> io::Result<()> {
        self.channel.send_eof().map_err(io::Error::from)
    }

    /// The next line the server wrote, `None` at end of stream.
    pub(super) fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut buf = [0u8; 4096];
        let mut idle = Duration::ZERO;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(Some(
                    String::from_utf8_lossy(&line[..end]).trim_end().to_string(),
                ));
            }
            match self.channel.read(&mut buf) {
                Ok(0) => {
                    if self.pending.is_empty() {
                        return Ok(None);
                    }
                    let line = std::mem::take(&mut self.pending);
                    return Ok(Some(String::from_utf8_lossy(&line).trim_end().to_string()));
                }
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    idle = Duration::ZERO;
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    idle += Duration::from_secs(15);
                    if idle >= self.idle_limit {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the server sent nothing for {} s", idle.as_secs()),
                        ));
                    }
                    let _ = self.conn.session().keepalive_send();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn close(&mut self) {
        let _ = self.channel.close();
        let _ = self.channel.wait_close();
    }
}

/// Writes one message into the step's compressed stream: its envelope,
/// its bytes in `d LEN` chunks, its size and sha256.
fn send_message<W: Write>(
    up: &mut Upstream<W>,
    outbox: &Outbox,
    message: &OutboxMessage,
) -> io::Result<()> {
    let mut head = format!(
        "m {} {} {}",
        message.id,
        hex_arg(message.envelope.sender.as_deref().unwrap_or("")),
        hex_arg(message.envelope.full_name.as_deref().unwrap_or(""))
    );
    for r in &message.envelope.recipients {
        head.push(' ');
        head.push_str(&hex_arg(r));
    }
    head.push('\n');
    up.write_all(head.as_bytes())?;
    let mut input = outbox.open_message(message)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = input.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        hasher.update(&buf[..filled]);
        size += filled as u64;
        up.write_all(format!("d {filled}\n").as_bytes())?;
        up.write_all(&buf[..filled])?;
        if filled < buf.len() {
            break;
        }
    }
    up.write_all(format!("e {size} {:x}\n", hasher.finalize()).as_bytes())
}

/// The step's upload stream: one compressor for all its messages, so a
/// message is compressed with the ones before it as history (small
/// messages alone compress poorly).
enum Upstream<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
    Plain(W),
}

impl<W: Write + CountsBytes> Upstream<W> {
    fn new(sink: W, method: Method) -> io::Result<Upstream<W>> {
        Ok(match method {
            Method::Zstd(level) => Upstream::Zstd(zstd::stream::write::Encoder::new(sink, level)?),
            Method::Gzip => Upstream::Gzip(flate2::write::GzEncoder::new(
                sink,
                flate2::Compression::best(),
            )),
            Method::Plain => Upstream::Plain(sink),
        })
    }

    /// Bytes that went to the channel so far.
    fn counted(&self) -> u64 {
        match self {
            Upstream::Zstd(e) => e.get_ref().count(),
            Upstream::Gzip(e) => e.get_ref().count(),
            Upstream::Plain(w) => w.count(),
        }
    }

    /// Ends the compressed stream; returns the bytes it took in all.
    fn finish(self) -> io::Result<u64> {
        let sink = match self {
            Upstream::Zstd(e) => e.finish()?,
            Upstream::Gzip(e) => e.finish()?,
            Upstream::Plain(w) => w,
        };
        Ok(sink.count())
    }
}

impl<W: Write> Write for Upstream<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Upstream::Zstd(e) => e.write(data),
            Upstream::Gzip(e) => e.write(data),
            Upstream::Plain(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Upstream::Zstd(e) => e.flush(),
            Upstream::Gzip(e) => e.flush(),
            Upstream::Plain(w) => w.flush(),
        }
    }
}

/// A writer that knows how many bytes went through it.
trait CountsBytes {
    fn count(&self) -> u64;
}

/// Counts what goes to the channel.
struct Counting<'l, 'c> {
    link: &'l mut Link<'c>,
    bytes: u64,
}

impl<'l, 'c> Counting<'l, 'c> {
    fn new(link: &'l mut Link<'c>) -> Self {
        Counting { link, bytes: 0 }
    }
}

impl CountsBytes for Counting<'_, '_> {
    fn count(&self) -> u64 {
        self.bytes
    }
}

impl Write for Counting<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.link.write_all(data)?;
        self.bytes += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse_answer(&format!("ok {id}")),
            Some((id.to_string(), Outcome::Sent))
        );
        assert_eq!(
            parse_answer(&format!("dup {id}")),
            Some((id.to_string(), Outcome::AlreadySent))
        );
        assert_eq!(
            parse_answer(&format!("fail {id} 67 x{}", "6e6f2075736572")),
            Some((
                id.to_string(),
                Outcome::Refused {
                    status: 67,
                    words: "no user".into()
                }
            ))
        );
        assert!(matches!(
            parse_answer(&format!("fail {id} 75 x")),
            Some((_, Outcome::Deferred(_)))
        ));
        assert_eq!(parse_answer("ok ../etc"), None);
        assert_eq!(parse_answer("ready zstd"), None);
    }

    #[test]
    fn envelope_arguments_are_hex_only() {
        assert_eq!(hex_arg(""), "x");
        assert_eq!(hex_arg("-a;b"), "x2d613b62");
        assert_eq!(unhex("x2d613b62"), b"-a;b");
    }

    /// The script has nothing `compact` would break and is valid sh.
    #[test]
    fn script_compacts_and_parses() {
        assert!(!SCRIPT_SOURCE.contains("<<"));
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&script().text)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
