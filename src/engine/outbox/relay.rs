//! Sending queued messages over the account's SSH login: one exec channel
//! runs `assets/remote/send.sh`, which hands each message to the server's
//! own `sendmail -oi -f FROM -- RCPT...`, exactly once (its ledger; see the
//! script's header and docs/send.md).
//!
//! On the channel: the script (arguments hex-encoded on the fixed command
//! line, as for the claim script) answers `ready METHOD` with the best
//! compressor both sides have; then the step's messages go up as one
//! compressed stream (each message compressed with those before it as
//! history), in groups of about 256 KiB: a table (a short id, the size and
//! the envelope of each message), the messages' bytes one after the other,
//! and one sha256 of the table and the bytes, which the server checks before
//! sendmail sees a byte of the group. The compressor is flushed after each
//! group, so the server can start on it. The server answers one line per
//! message. A message leaves the outbox only on `ok` or `dup`.

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

/// Message bytes per group (a group holds at least one message), and per
/// read from the outbox.
const CHUNK: usize = 256 * 1024;

/// Hex digits of the outbox id that name a message on the wire and in the
/// server's ledger: 64 random bits, so that two of the ledger's 10,000
/// messages share one with a chance of about 3e-12.
const WIRE_ID_LEN: usize = 16;

/// The largest batch (bytes of messages) offered as xz: beyond it zstd's
/// speed counts for more than xz's few per cent.
pub const XZ_MAX_BATCH: u64 = 8 << 20;

/// The protocol version of `send.sh` this client speaks.
const PROTOCOL: &[u8] = b"2";

/// How a message goes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// xz (LZMA2 at preset 9 extreme, tuned for text), with a dictionary
    /// as large as the batch (at most [`XZ_MAX_BATCH`]): about 5% smaller
    /// than zstd -19 on mail, and slower.
    Xz,
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
            Method::Xz => "xz",
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
            PROTOCOL,
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
    // A message goes by the first 64 bits of its id; one whose short id
    // another of this flush already has (a chance of 2^-64 per pair) waits
    // for the next flush.
    let mut seen = std::collections::HashSet::new();
    let messages: Vec<&OutboxMessage> = messages
        .iter()
        .filter(|m| seen.insert(wire_id(&m.id)))
        .collect();
    let mut written = 0usize;
    let mut broken: Option<String> = None;
    let batch: u64 = messages.iter().map(|m| m.size).sum();
    let mut upstream = Upstream::new(Counting::new(&mut link), method, batch)?;
    for group in groups(&messages) {
        match send_group(&mut upstream, outbox, group).and_then(|()| upstream.flush()) {
            Ok(()) => written += group.len(),
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
    // The stream's end: the server drops a group it got only part of, and
    // goes on to answer the others.
    if let Err(e) = ended.and_then(|()| link.send_eof()) {
        broken.get_or_insert_with(|| format!("sending to {}: {e}", conn.host()));
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
        let outcome = answered.remove(wire_id(&message.id)).unwrap_or_else(|| {
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
    if id.len() != WIRE_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
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

/// The name of the message with outbox id `id` on the wire and in the
/// server's ledger.
fn wire_id(id: &str) -> &str {
    &id[..WIRE_ID_LEN.min(id.len())]
}

/// `messages` cut into groups of at least one message and, but for the
/// last message of each, less than [`CHUNK`] bytes.
fn groups<'m>(messages: &'m [&'m OutboxMessage]) -> impl Iterator<Item = &'m [&'m OutboxMessage]> {
    let mut rest = messages;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0u64;
        let mut n = 0;
        while n < rest.len() && (n == 0 || bytes < CHUNK as u64) {
            bytes += rest[n].size;
            n += 1;
        }
        let (group, tail) = rest.split_at(n);
        rest = tail;
        Some(group)
    })
}

/// The table line of `message`: its wire id, size and envelope (hex).
fn table_line(message: &OutboxMessage) -> String {
    let mut line = format!(
        "{} {} {} {}",
        wire_id(&message.id),
        message.size,
        hex_arg(message.envelope.sender.as_deref().unwrap_or("")),
        hex_arg(message.envelope.full_name.as_deref().unwrap_or(""))
    );
    for r in &message.envelope.recipients {
        line.push(' ');
        line.push_str(&hex_arg(r));
    }
    line.push('\n');
    line
}

/// Writes one group into the step's compressed stream: its table, its
/// messages' bytes, and the sha256 of both. A message whose file no longer
/// has the size the outbox recorded ends the stream with an error (the
/// server drops the unfinished group).
fn send_group<W: Write>(
    up: &mut Upstream<W>,
    outbox: &Outbox,
    group: &[&OutboxMessage],
) -> io::Result<()> {
    let mut hasher = Sha256::new();
    let mut table = format!("g {}\n", group.len());
    up.write_all(table.as_bytes())?;
    table.clear();
    for message in group {
        table.push_str(&table_line(message));
    }
    hasher.update(table.as_bytes());
    up.write_all(table.as_bytes())?;
    let mut buf = vec![0u8; CHUNK];
    for message in group {
        let mut input = outbox.open_message(message)?.take(message.size);
        let mut size = 0u64;
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            up.write_all(&buf[..n])?;
            size += n as u64;
        }
        if size != message.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "queued message {} has {size} bytes, not the {} recorded",
                    message.id, message.size
                ),
            ));
        }
    }
    up.write_all(format!("v {:x}\n", hasher.finalize()).as_bytes())
}

/// The step's upload stream: one compressor for all its messages, so a
/// message is compressed with the ones before it as history (small
/// messages alone compress poorly).
enum Upstream<W: Write> {
    Xz(XzWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
    Plain(W),
}

impl<W: Write + CountsBytes> Upstream<W> {
    fn new(sink: W, method: Method, batch: u64) -> io::Result<Upstream<W>> {
        Ok(match method {
            Method::Xz => Upstream::Xz(XzWriter::new(sink, batch)?),
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
            Upstream::Xz(e) => e.sink.count(),
            Upstream::Zstd(e) => e.get_ref().count(),
            Upstream::Gzip(e) => e.get_ref().count(),
            Upstream::Plain(w) => w.count(),
        }
    }

    /// Ends the compressed stream; returns the bytes it took in all.
    fn finish(self) -> io::Result<u64> {
        let sink = match self {
            Upstream::Xz(e) => e.finish()?,
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
            Upstream::Xz(e) => e.write(data),
            Upstream::Zstd(e) => e.write(data),
            Upstream::Gzip(e) => e.write(data),
            Upstream::Plain(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Upstream::Xz(e) => e.flush(),
            Upstream::Zstd(e) => e.flush(),
            Upstream::Gzip(e) => e.flush(),
            Upstream::Plain(w) => w.flush(),
        }
    }
}

/// An xz stream whose flush keeps the dictionary (`LZMA_SYNC_FLUSH`;
/// the `liblzma` crate's writer flushes with `LZMA_FULL_FLUSH`, which
/// starts the next group without the history of the ones before).
struct XzWriter<W: Write> {
    stream: liblzma::stream::Stream,
    sink: W,
    out: Vec<u8>,
}

impl<W: Write> XzWriter<W> {
    /// An encoder whose dictionary holds `batch` bytes (rounded up to a
    /// power of two, at least 64 KiB, at most [`XZ_MAX_BATCH`]): no larger
    /// than the data needs, so the server's `xz -d` needs little memory.
    fn new(sink: W, batch: u64) -> io::Result<XzWriter<W>> {
        use liblzma::stream::{Check, Filters, LzmaOptions, Stream, PRESET_EXTREME};
        let dict = batch.clamp(64 << 10, XZ_MAX_BATCH).next_power_of_two();
        let mut options = LzmaOptions::new_preset(9 | PRESET_EXTREME)?;
        // Text: literals predicted from the previous byte's top 4 bits,
        // nothing from positions (mail has no 2- or 4-byte structure).
        options
            .dict_size(dict as u32)
            .literal_context_bits(4)
            .literal_position_bits(0)
            .position_bits(0);
        let mut filters = Filters::new();
        filters.lzma2(&options);
        // The batch's sha256 checks the data; xz's own check would be
        // bytes for nothing.
        let stream = Stream::new_stream_encoder(&filters, Check::None)?;
        Ok(XzWriter {
            stream,
            sink,
            out: Vec::with_capacity(64 << 10),
        })
    }

    /// Runs the encoder with `action` until it took `data` (and, for a
    /// flush or the end, until it is done), writing what it made.
    fn run(&mut self, mut data: &[u8], action: liblzma::stream::Action) -> io::Result<()> {
        use liblzma::stream::{Action, Status};
        loop {
            self.out.clear();
            let before = self.stream.total_in();
            let status = self.stream.process_vec(data, &mut self.out, action)?;
            data = &data[(self.stream.total_in() - before) as usize..];
            self.sink.write_all(&self.out)?;
            let done = match action {
                Action::Run => data.is_empty(),
                _ => status == Status::StreamEnd,
            };
            if done {
                return Ok(());
            }
        }
    }

    fn finish(mut self) -> io::Result<W> {
        self.run(&[], liblzma::stream::Action::Finish)?;
        Ok(self.sink)
    }
}

impl<W: Write> Write for XzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.run(data, liblzma::stream::Action::Run)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.run(&[], liblzma::stream::Action::SyncFlush)?;
        self.sink.flush()
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
    use crate::engine::ssh::hex;

    #[test]
    fn answers_parse() {
        let id = "0123456789abcdef";
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
    fn groups_end_once_they_reach_the_chunk_size() {
        let message = |size: u64| OutboxMessage {
            id: "0123456789abcdef0123456789abcdef".into(),
            place: super::super::Place::Queued,
            queued_at: 0,
            size,
            envelope: super::super::submit::Envelope::default(),
            body_offset: 0,
            attempts: 0,
            next_try: 0,
            last_error: None,
        };
        let big = CHUNK as u64;
        let all = [
            message(100),
            message(big - 100),
            message(1),
            message(3 * big),
            message(5),
            message(6),
        ];
        let refs: Vec<&OutboxMessage> = all.iter().collect();
        let sizes: Vec<Vec<u64>> = groups(&refs)
            .map(|g| g.iter().map(|m| m.size).collect())
            .collect();
        assert_eq!(sizes, [vec![100, big - 100], vec![1, 3 * big], vec![5, 6]]);
        assert_eq!(groups(&[]).count(), 0);
        assert_eq!(wire_id(&all[0].id), "0123456789abcdef");
    }

    /// Runs the server script as the loader would, in `home`, with
    /// `stream` (uncompressed) on fd 3 and `sendmail` as the sendmail;
    /// returns its answers.
    /// A home directory, a log and a sendmail in `dir`: the sendmail is
    /// `body` run by /bin/sh, with `LOG` in it standing for the log's path.
    fn fake_sendmail(
        dir: &std::path::Path,
        body: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        let home = dir.join("home");
        std::fs::create_dir(&home).unwrap();
        let log = dir.join("sendmail.log");
        let sendmail = dir.join("sendmail");
        let body = body.replace("LOG", &log.display().to_string());
        std::fs::write(&sendmail, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(
            &sendmail,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        (home, log, sendmail)
    }

    fn run_script(home: &std::path::Path, sendmail: &std::path::Path, stream: &[u8]) -> String {
        use std::process::{Command, Stdio};
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"{ eval "$MH_SCRIPT"; } 3<&0 </dev/null"#)
            .arg("sh")
            .arg("2")
            .arg("none")
            .arg(sendmail)
            .env("MH_SCRIPT", &script().text)
            .env("HOME", home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stream).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// The server script hands a group's messages to sendmail only once
    /// the group's sha256 verified, and nothing of a group the stream
    /// ended inside. Fails when send.sh skips the comparison (checked by
    /// breaking it).
    #[test]
    fn the_script_sends_a_group_only_when_its_sha256_verifies() {
        use super::super::submit::{Submission, SubmitOptions};
        let dir = tempfile::tempdir().unwrap();
        let (home, log, sendmail) = fake_sendmail(dir.path(), "{ echo \"args $*\"; cat; } >>'LOG'");
        let outbox = Outbox::open(&dir.path().join("data"), "a").unwrap();
        let options = SubmitOptions {
            sender: Some("me@x.org".into()),
            recipients: vec!["-you@y.org".into()],
            ..SubmitOptions::default()
        };
        for n in 0..4 {
            let text = format!("Subject: m{n}\n\nbody {n}\n");
            outbox
                .store(Submission::begin(text.as_bytes(), &options).unwrap())
                .unwrap();
        }
        let queued = outbox.queued().unwrap();
        let messages: Vec<&OutboxMessage> = queued.iter().collect();
        let stream_of = |groups: &[&[&OutboxMessage]]| {
            let mut up = Upstream::Plain(Vec::new());
            for group in groups {
                send_group(&mut up, &outbox, group).unwrap();
            }
            match up {
                Upstream::Plain(v) => v,
                _ => unreachable!(),
            }
        };
        let subject = |m: &OutboxMessage| {
            let mut text = String::new();
            outbox
                .open_message(m)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text.lines().next().unwrap().to_string()
        };

        // The second group's last byte changed on the way: only the first
        // group reaches sendmail.
        let mut stream = stream_of(&[&messages[..2], &messages[2..]]);
        let v = stream.len() - 67; // "v " + 64 digits + "\n"
        stream[v - 2] ^= 1;
        let answers = run_script(&home, &sendmail, &stream);
        let sent = std::fs::read_to_string(&log).unwrap();
        for m in &messages[..2] {
            assert!(
                answers.contains(&format!("ok {}\n", wire_id(&m.id))),
                "{answers}"
            );
            assert!(sent.contains(&subject(m)), "{sent}");
        }
        for m in &messages[2..] {
            assert!(
                answers.contains(&format!("bad {} ", wire_id(&m.id))),
                "{answers}"
            );
            assert!(!sent.contains(&subject(m)), "{sent}");
        }
        assert!(
            sent.contains("args -oi -f me@x.org -- -you@y.org\n"),
            "{sent}"
        );

        // Sent again whole, but the stream ends inside the second group's
        // sha256 line, or inside its bytes: the first group is answered
        // `dup` from the ledger, the second is dropped unsent.
        let stream = stream_of(&[&messages[..2], &messages[2..]]);
        for cut in [20, 70] {
            let answers = run_script(&home, &sendmail, &stream[..stream.len() - cut]);
            for m in &messages[..2] {
                assert!(
                    answers.contains(&format!("dup {}\n", wire_id(&m.id))),
                    "{answers}"
                );
            }
            assert_eq!(answers.lines().count(), 3, "{answers}");
            assert_eq!(std::fs::read_to_string(&log).unwrap(), sent);
            let left: Vec<_> = std::fs::read_dir(home.join(".mailhaul/outgoing"))
                .unwrap()
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    /// The server script hands sendmail each envelope value's bytes as
    /// they are, whether the shell decodes them alone (printable ASCII:
    /// every such byte is in one value here) or through printf (any other
    /// byte but NUL; a value may start printable and leave it), and
    /// nothing of one message's envelope is left for the next. Fails when
    /// a printable byte decodes wrong (checked by breaking one).
    #[test]
    fn the_script_hands_sendmail_every_envelope_byte_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        // Each argument hex-encoded on a line of its own, then an empty line.
        let (home, log, sendmail) = fake_sendmail(
            dir.path(),
            "{ for a do printf %s \"$a\" | od -An -v -tx1 | tr -d ' \\n'; echo; done; echo; } >>'LOG'\n\
             cat >/dev/null",
        );
        let printable: Vec<u8> = (0x20..0x7f).collect();
        let every_byte: Vec<u8> = (1..=255).collect();
        /// A message's envelope: from, full name, recipients.
        type Envelope<'a> = (&'a [u8], &'a [u8], Vec<&'a [u8]>);
        let envelopes: [Envelope; 2] = [
            (
                b"Jane_Q.Doe+x=y-z@example.org",
                b"Jane Q. Doe",
                vec![
                    &printable,
                    &every_byte,
                    b"a'b\"c$(d)`e`\\f@x\n",
                    b"abc\xc3\xa9",
                    b"~\x7f",
                    b" \x1f",
                    b"",
                    b"-dash@y.org",
                ],
            ),
            (b"", b"", vec![b"z@y.org"]),
        ];
        let (mut table, mut bytes) = (String::new(), Vec::new());
        for (n, (from, name, rcpts)) in envelopes.iter().enumerate() {
            let body = format!("Subject: m{n}\n\nbody {n}\n");
            table.push_str(&format!(
                "{n:016x} {} x{} x{}",
                body.len(),
                hex(from),
                hex(name)
            ));
            for rcpt in rcpts {
                table.push_str(&format!(" x{}", hex(rcpt)));
            }
            table.push('\n');
            bytes.extend_from_slice(body.as_bytes());
        }
        let mut hasher = Sha256::new();
        hasher.update(table.as_bytes());
        hasher.update(&bytes);
        let mut stream = format!("g {}\n{table}", envelopes.len()).into_bytes();
        stream.extend_from_slice(&bytes);
        stream.extend_from_slice(format!("v {:x}\n", hasher.finalize()).as_bytes());

        let answers = run_script(&home, &sendmail, &stream);
        assert_eq!(
            answers,
            format!("ready none\nok {:016x}\nok {:016x}\n", 0, 1),
            "{answers}"
        );
        let mut expected = String::new();
        for (from, name, rcpts) in &envelopes {
            let mut args: Vec<&[u8]> = vec![b"-oi"];
            if !name.is_empty() {
                args.extend([&b"-F"[..], name]);
            }
            if !from.is_empty() {
                args.extend([&b"-f"[..], from]);
            }
            args.push(b"--");
            args.extend(rcpts.iter().copied());
            for arg in args {
                expected.push_str(&hex(arg));
                expected.push('\n');
            }
            expected.push('\n');
        }
        assert_eq!(std::fs::read_to_string(&log).unwrap(), expected);
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
        crate::engine::ssh::assert_compacts_and_parses(SCRIPT_SOURCE, &script().text);
    }
}
