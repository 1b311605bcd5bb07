//! Sending queued messages with SMTP (`account.send = "smtp"`): to the
//! forward's target (`forward.target`, default port 25 on the server), over
//! one `direct-tcpip` channel of the account's SSH session, so no local
//! port is opened. For servers where the login may not run `sendmail`, or
//! whose submission server is elsewhere.
//!
//! One SMTP session per flush: EHLO (PIPELINING, 8BITMIME, SIZE and
//! SMTPUTF8 are used when offered), then per message MAIL, RCPT... and
//! DATA as one group, the message (CRLF, dot-stuffed), and its end of data
//! sent together with the next message's group, so a message costs one
//! round trip when the server pipelines.
//!
//! What SMTP can promise: a message leaves the queue only after the
//! server's final 2xx to its data. What it cannot: SMTP keeps no record the
//! client could ask afterwards (the sendmail path's ledger), so when the
//! link breaks or the client dies between the end of data going out and
//! its answer being recorded, nobody knows whether the server took it.
//! Such a message is marked (`queue/ID.sending`, fsynced before the end of
//! data goes out) and goes to the failed folder as "may have been sent"
//! instead of being sent again: never twice, at the price of asking the
//! user in that one window (docs/send.md).

use std::io::{self, Read};
use std::time::Duration;

use super::relay::{crash_point, Link, Outcome, RelayError, RelayReport};
use super::{Outbox, OutboxMessage, Place};
use crate::engine::ssh::{Connection, SshError};

/// How long the SMTP server may stay silent before the link is given up.
const SERVER_PATIENCE: Duration = Duration::from_secs(600);

/// Bytes written to the channel at a time while a message's data goes up.
const WRITE_CHUNK: usize = 64 * 1024;

/// One SMTP reply: its code and its lines' text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of every line, code and separator removed.
    pub lines: Vec<String>,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The reply as the server wrote it, lines joined: what the user sees.
    pub fn words(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
            .trim_end()
            .to_string()
    }

    /// The sysexits status a sendmail would exit with for this refusal
    /// (for `send --now`'s exit code): from the enhanced status code when
    /// there is one (RFC 3463: 5.1.x address, 5.7.x policy, 5.6.x content).
    fn sysexit(&self) -> i32 {
        let enhanced = self.lines.first().and_then(|l| l.split(' ').next());
        match enhanced {
            Some(e) if e.starts_with("5.1.") => 67,
            Some(e) if e.starts_with("5.7.") => 77,
            Some(e) if e.starts_with("5.6.") => 65,
            _ if self.code == 550 || self.code == 551 || self.code == 553 => 67,
            _ => 69,
        }
    }
}

/// What the server said it can do in its EHLO answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// 8BITMIME (RFC 6152).
    pub eight_bit: bool,
    /// SMTPUTF8 (RFC 6531).
    pub utf8: bool,
    /// SIZE (RFC 1870): present, with its limit (0: none stated).
    pub size: Option<u64>,
}

impl Extensions {
    /// The server's SIZE limit, when `message` is over it.
    fn too_big(&self, message: &OutboxMessage) -> Option<u64> {
        self.size.filter(|&l| l > 0 && message.size > l)
    }

    /// Reads the extension lines of an EHLO reply (the first line is the
    /// greeting and names no extension).
    pub fn parse(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "8BITMIME" => ext.eight_bit = true,
                "SMTPUTF8" => ext.utf8 = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        ext
    }
}

/// Sends `messages` of `outbox` with SMTP to `host:port` as the SSH server
/// of `conn` reaches it, introducing itself as `helo`; `default_sender` is
/// the envelope sender of messages that have none (the login). Every
/// outcome is recorded in the outbox before this returns. An error means
/// the SMTP session never got going (nothing was sent).
pub fn relay(
    conn: &Connection,
    outbox: &Outbox,
    messages: &[OutboxMessage],
    (host, port): (&str, u16),
    helo: &str,
    default_sender: &str,
) -> Result<RelayReport, RelayError> {
    let channel = conn
        .session()
        .channel_direct_tcpip(host, port, None)
        .map_err(|source| SshError::Channel {
            action: "opening the SMTP channel (direct-tcpip)",
            host: conn.host().to_string(),
            source,
        })?;
    let mut link = Link::new(conn, channel);
    // RFC 5321 4.5.3.2: up to 10 minutes for the answer to the end of data
    // (content filters); giving up sooner would put a message the server
    // is still taking into the failed folder as "may have been sent".
    link.set_idle_limit(SERVER_PATIENCE);
    let server = format!("{host}:{port} (through {})", conn.host());
    let mut session = Session {
        conn,
        link: &mut link,
        server: server.clone(),
    };
    let ext = match session.start(helo) {
        Ok(ext) => ext,
        Err(e) => {
            link.close();
            return Err(e);
        }
    };
    let mut report = RelayReport {
        method: Some("smtp"),
        ..RelayReport::default()
    };
    // The group (MAIL, RCPT..., DATA) of the message at this index already
    // went out with the previous end of data.
    let mut announced = None;
    let mut broken: Option<String> = None;
    for (index, message) in messages.iter().enumerate() {
        if let Some(why) = &broken {
            outbox.mark_deferred(&message.id, why)?;
            report
                .outcomes
                .push((message.id.clone(), Outcome::Deferred(why.clone())));
            continue;
        }
        let next = messages
            .get(index + 1)
            .filter(|n| ext.pipelining && ext.too_big(n).is_none());
        let result = session.transaction(
            outbox,
            message,
            &ext,
            default_sender,
            announced == Some(index),
            next,
        );
        let t = match result {
            Ok(t) => t,
            Err(TransactionError::Io(e)) => {
                link.close();
                return Err(RelayError::Io(e));
            }
            Err(TransactionError::Link { words, after_end }) => {
                let outcome = if after_end {
                    outbox.mark_failed(&message.id, &unsure_reason(&server, &words))?;
                    Outcome::Unsure
                } else {
                    outbox.mark_deferred(&message.id, &words)?;
                    Outcome::Deferred(words.clone())
                };
                broken = Some(words);
                report.outcomes.push((message.id.clone(), outcome));
                continue;
            }
        };
        announced = t.announced_next.then_some(index + 1);
        if matches!(t.outcome, Outcome::Sent) {
            report.sent_bytes += message.size;
            report.wire_bytes += t.wire_bytes;
        }
        report.outcomes.extend(settle(outbox, message, t, &server)?);
    }
    if broken.is_none() {
        let _ = session.command("QUIT");
    }
    link.close();
    Ok(report)
}

/// Why a message is in the failed folder when its end of data went out and
/// no answer was recorded.
fn unsure_reason(server: &str, why: &str) -> String {
    format!(
        "the end of the message went to the SMTP server {server} but its answer never \
         arrived ({why}); SMTP keeps no record to ask, so it may have been sent. Not sent \
         again: check whether it arrived, then `mailhaul queue retry ID` if it did not"
    )
}

/// Why a message an earlier run left marked (`queue/ID.sending`) is in
/// the failed folder: that run died or lost the link between the end of
/// data and recording the answer.
pub fn interrupted_reason() -> String {
    "an earlier run sent the end of this message to the SMTP server and was interrupted \
     (killed, or the link broke) before it recorded the server's answer; SMTP keeps no \
     record to ask, so it may have been sent. Not sent again: check whether it arrived, \
     then `mailhaul queue retry ID` if it did not"
        .to_string()
}

/// What one transaction came to, before it is recorded.
struct Transaction {
    /// The message's outcome for the recipients the server took (or all).
    outcome: Outcome,
    /// Recipients refused for good at RCPT, with the reply.
    refused: Vec<(String, Reply)>,
    /// Recipients refused for now at RCPT, with the reply.
    deferred: Vec<(String, Reply)>,
    /// The next message's group went out with this end of data.
    announced_next: bool,
    /// What the SSH socket sent during the transaction (SSH transport
    /// compression has no per-message figure; this is the nearest).
    wire_bytes: u64,
}

/// Why a transaction stopped midway.
enum TransactionError {
    /// The link broke; `after_end`: after the end of data went out, so the
    /// server may have taken the message.
    Link { words: String, after_end: bool },
    /// Reading the message from the outbox failed.
    Io(io::Error),
}

/// Records a transaction's outcome in the outbox: the message sent, queued again (with the
/// recipients still to do) or failed; recipients refused at RCPT split off
/// into copies of their own. Returns every outcome, copies included.
fn settle(
    outbox: &Outbox,
    message: &OutboxMessage,
    t: Transaction,
    server: &str,
) -> io::Result<Vec<(String, Outcome)>> {
    let mut out = Vec::new();
    let refusal_text = |list: &[(String, Reply)]| {
        list.iter()
            .map(|(r, reply)| format!("{r}: {}", reply.words()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let refused_status = t.refused.first().map_or(67, |(_, r)| r.sysexit());
    let refused_reason = format!(
        "the SMTP server {server} refused these recipients: {}",
        refusal_text(&t.refused)
    );
    let split_refused = |out: &mut Vec<(String, Outcome)>| -> io::Result<()> {
        if !t.refused.is_empty() {
            let rcpts: Vec<String> = t.refused.iter().map(|(r, _)| r.clone()).collect();
            let id = outbox.copy_for(message, &rcpts, Place::Failed, &refused_reason)?;
            out.push((
                id,
                Outcome::Refused {
                    status: refused_status,
                    words: refusal_text(&t.refused),
                },
            ));
        }
        Ok(())
    };
    match t.outcome {
        Outcome::Sent => {
            split_refused(&mut out)?;
            if !t.deferred.is_empty() {
                let rcpts: Vec<String> = t.deferred.iter().map(|(r, _)| r.clone()).collect();
                let why = format!(
                    "the SMTP server {server} put off these recipients: {}",
                    refusal_text(&t.deferred)
                );
                let id = outbox.copy_for(message, &rcpts, Place::Queued, &why)?;
                out.push((id, Outcome::Deferred(why)));
            }
            outbox.mark_sent(&message.id, message.size, t.wire_bytes)?;
            out.push((message.id.clone(), Outcome::Sent));
        }
        Outcome::Deferred(why) => {
            if !t.refused.is_empty() {
                split_refused(&mut out)?;
                let keep: Vec<String> = message
                    .envelope
                    .recipients
                    .iter()
                    .filter(|r| !t.refused.iter().any(|(x, _)| x == *r))
                    .cloned()
                    .collect();
                outbox.set_recipients(message, &keep)?;
            }
            outbox.mark_deferred(&message.id, &why)?;
            out.push((message.id.clone(), Outcome::Deferred(why)));
        }
        Outcome::Refused { status, words } => {
            outbox.mark_failed(
                &message.id,
                &format!("the SMTP server {server} refused it: {words}"),
            )?;
            out.push((message.id.clone(), Outcome::Refused { status, words }));
        }
        other => {
            // A transaction only ends sent, deferred or refused.
            out.push((message.id.clone(), other));
        }
    }
    Ok(out)
}

/// The SMTP dialogue on the channel.
struct Session<'l, 'c> {
    conn: &'c Connection,
    link: &'l mut Link<'c>,
    server: String,
}

impl Session<'_, '_> {
    /// Reads the greeting and says EHLO (HELO if EHLO is refused); a
    /// refusal is the server's words, a broken channel its I/O error.
    fn start(&mut self, helo: &str) -> Result<Extensions, RelayError> {
        let greeting = self.reply().map_err(|e| self.link_error(e))?;
        if greeting.code != 220 {
            return Err(self.refusal(format!("greeting: {}", greeting.words())));
        }
        let ehlo = self
            .command(&format!("EHLO {helo}"))
            .map_err(|e| self.link_error(e))?;
        if ehlo.is_positive() {
            return Ok(Extensions::parse(&ehlo));
        }
        let hello = self
            .command(&format!("HELO {helo}"))
            .map_err(|e| self.link_error(e))?;
        if hello.is_positive() {
            Ok(Extensions::default())
        } else {
            Err(self.refusal(format!("HELO: {}", hello.words())))
        }
    }

    fn link_error(&self, source: io::Error) -> RelayError {
        RelayError::SmtpLink {
            server: self.server.clone(),
            source,
        }
    }

    fn refusal(&self, words: String) -> RelayError {
        RelayError::Server {
            host: self.server.clone(),
            words,
        }
    }

    /// Sends one command and reads its reply.
    fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.link.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Reads one (possibly multi-line) reply.
    fn reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.link.read_line()?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the SMTP server closed the connection",
                )
            })?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("not an SMTP reply: {line:?}"),
                    )
                })?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// MAIL, RCPT... and DATA for `message`, as one group.
    fn group(message: &OutboxMessage, ext: &Extensions, default_sender: &str) -> String {
        let sender = message.envelope.sender.as_deref().unwrap_or(default_sender);
        let mut mail = format!("MAIL FROM:<{sender}>");
        if ext.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.size));
        }
        if ext.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        let non_ascii = std::iter::once(sender)
            .chain(message.envelope.recipients.iter().map(String::as_str))
            .any(|a| !a.is_ascii());
        if ext.utf8 && non_ascii {
            mail.push_str(" SMTPUTF8");
        }
        let mut group = format!("{mail}\r\n");
        for r in &message.envelope.recipients {
            group.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        group.push_str("DATA\r\n");
        group
    }

    /// One message's transaction. `announced`: its group already went out;
    /// `next`: a message whose group goes out with this end of data
    /// (pipelining only).
    fn transaction(
        &mut self,
        outbox: &Outbox,
        message: &OutboxMessage,
        ext: &Extensions,
        default_sender: &str,
        announced: bool,
        next: Option<&OutboxMessage>,
    ) -> Result<Transaction, TransactionError> {
        let server = self.server.clone();
        let link_err = move |after_end: bool| {
            let server = server.clone();
            move |e: io::Error| TransactionError::Link {
                words: format!("SMTP with {server}: {e}"),
                after_end,
            }
        };
        let mut t = Transaction {
            outcome: Outcome::Sent,
            refused: Vec::new(),
            deferred: Vec::new(),
            announced_next: false,
            wire_bytes: 0,
        };
        let sent_before = self.conn.socket_bytes_sent().unwrap_or(0);
        if let Some(limit) = ext.too_big(message) {
            // Never announced (see `relay`): nothing of it went out.
            t.outcome = Outcome::Refused {
                status: 65,
                words: format!(
                    "the message is {} bytes, more than the server's SIZE limit of {limit}",
                    message.size
                ),
            };
            return Ok(t);
        }
        let group = Self::group(message, ext, default_sender);
        let (mail, rcpts, data) = if !ext.pipelining {
            self.one_by_one(&group).map_err(link_err(false))?
        } else {
            if !announced {
                self.link
                    .write_all(group.as_bytes())
                    .map_err(link_err(false))?;
            }
            self.replies_of_group(message).map_err(link_err(false))?
        };
        self.sort_recipients(message, &rcpts, &mut t);
        if !mail.is_positive() || data.code != 354 {
            let reply = if mail.is_positive() { &data } else { &mail };
            if data.code == 354 {
                // A server that took DATA after refusing MAIL: end the
                // (empty) data before resetting.
                self.link.write_all(b".\r\n").map_err(link_err(false))?;
                self.reply().map_err(link_err(false))?;
            }
            self.command("RSET").map_err(link_err(false))?;
            t.outcome = self.refusal_outcome(reply, &t);
            return Ok(t);
        }
        self.send_data(outbox, message, link_err(false))?;
        outbox
            .mark_sending(&message.id)
            .map_err(TransactionError::Io)?;
        let mut end = b".\r\n".to_vec();
        if let Some(next) = next {
            end.extend_from_slice(Self::group(next, ext, default_sender).as_bytes());
            t.announced_next = true;
        }
        self.link.write_all(&end).map_err(link_err(true))?;
        let answer = self.reply().map_err(link_err(true))?;
        crash_point("answered");
        t.wire_bytes = self
            .conn
            .socket_bytes_sent()
            .unwrap_or(0)
            .saturating_sub(sent_before);
        t.outcome = if answer.is_positive() {
            Outcome::Sent
        } else if answer.is_permanent() {
            Outcome::Refused {
                status: answer.sysexit(),
                words: answer.words(),
            }
        } else {
            Outcome::Deferred(format!(
                "the SMTP server {} put it off: {}",
                self.server,
                answer.words()
            ))
        };
        Ok(t)
    }

    /// Without PIPELINING: the group's commands one at a time, each
    /// waiting for its reply; a refused MAIL ends it (its reply then
    /// stands for DATA's too).
    fn one_by_one(&mut self, group: &str) -> io::Result<(Reply, Vec<Reply>, Reply)> {
        let mut lines = group.split_terminator("\r\n");
        let mail = self.command(lines.next().unwrap_or_default())?;
        if !mail.is_positive() {
            return Ok((mail.clone(), Vec::new(), mail));
        }
        let mut replies = Vec::new();
        for line in lines {
            replies.push(self.command(line)?);
        }
        let data = replies.pop().unwrap_or_else(|| mail.clone());
        Ok((mail, replies, data))
    }

    /// The replies to a pipelined group: MAIL, each RCPT, DATA.
    fn replies_of_group(
        &mut self,
        message: &OutboxMessage,
    ) -> io::Result<(Reply, Vec<Reply>, Reply)> {
        let mail = self.reply()?;
        let mut rcpts = Vec::with_capacity(message.envelope.recipients.len());
        for _ in &message.envelope.recipients {
            rcpts.push(self.reply()?);
        }
        let data = self.reply()?;
        Ok((mail, rcpts, data))
    }

    /// Files each recipient's refusal, permanent or temporary.
    fn sort_recipients(&self, message: &OutboxMessage, rcpts: &[Reply], t: &mut Transaction) {
        for (r, reply) in message.envelope.recipients.iter().zip(rcpts) {
            if reply.is_positive() {
                continue;
            }
            let entry = (r.clone(), reply.clone());
            if reply.is_permanent() {
                t.refused.push(entry);
            } else {
                t.deferred.push(entry);
            }
        }
    }

    /// The outcome of a transaction the server ended before the data: by
    /// `reply` (MAIL's, else DATA's), unless the recipients explain it:
    /// any put off → the message waits (those refused for good split off);
    /// all refused for good → refused.
    fn refusal_outcome(&self, reply: &Reply, t: &Transaction) -> Outcome {
        let rcpt_words = || {
            t.refused
                .iter()
                .chain(&t.deferred)
                .map(|(r, reply)| format!("{r}: {}", reply.words()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mail_refused = t.refused.is_empty() && t.deferred.is_empty();
        if mail_refused {
            if reply.is_permanent() {
                Outcome::Refused {
                    status: reply.sysexit(),
                    words: reply.words(),
                }
            } else {
                Outcome::Deferred(format!(
                    "the SMTP server {} put it off: {}",
                    self.server,
                    reply.words()
                ))
            }
        } else if !t.deferred.is_empty() {
            Outcome::Deferred(format!(
                "the SMTP server {} put it off: {}",
                self.server,
                rcpt_words()
            ))
        } else {
            Outcome::Refused {
                status: t.refused[0].1.sysexit(),
                words: rcpt_words(),
            }
        }
    }

    /// The message's bytes as SMTP data: CRLF line ends, a leading dot
    /// doubled, a final line end added if missing (the end of data is sent
    /// by the caller). A link error goes through `link_err`.
    fn send_data(
        &mut self,
        outbox: &Outbox,
        message: &OutboxMessage,
        link_err: impl Fn(io::Error) -> TransactionError,
    ) -> Result<(), TransactionError> {
        let mut input = outbox.open_message(message).map_err(TransactionError::Io)?;
        let mut buf = vec![0u8; WRITE_CHUNK];
        let mut out = Vec::with_capacity(WRITE_CHUNK * 2 + 2);
        let mut at_line_start = true;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TransactionError::Io(e)),
            };
            encode_data(&buf[..n], &mut at_line_start, &mut out);
            self.link.write_all(&out).map_err(&link_err)?;
            out.clear();
        }
        if !at_line_start {
            self.link.write_all(b"\r\n").map_err(&link_err)?;
        }
        Ok(())
    }
}

/// Appends `data` to `out` as SMTP data: LF becomes CRLF (a CR already
/// before an LF is kept once), a line's leading dot is doubled.
/// `at_line_start` carries the state from one chunk to the next.
pub fn encode_data(data: &[u8], at_line_start: &mut bool, out: &mut Vec<u8>) {
    for (i, &b) in data.iter().enumerate() {
        if *at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') && out.last() != Some(&b'\r') {
            out.push(b'\r');
        }
        out.push(b);
        *at_line_start = b == b'\n';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = true;
        for c in chunks {
            encode_data(c, &mut start, &mut out);
        }
        out
    }

    #[test]
    fn data_is_crlf_and_dot_stuffed_across_chunks() {
        assert_eq!(
            encode(&[b"Subject: x\n\n.\n..a\nb.\n"]),
            b"Subject: x\r\n\r\n..\r\n...a\r\nb.\r\n"
        );
        assert_eq!(encode(&[b"a\n", b".b\n"]), b"a\r\n..b\r\n");
        assert_eq!(encode(&[b"a\r", b"\nb"]), b"a\r\nb");
        assert_eq!(encode(&[b"lone\rcr\n"]), b"lone\rcr\r\n");
    }

    #[test]
    fn ehlo_extensions_parse() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "vm".into(),
                "PIPELINING".into(),
                "SIZE 10240000".into(),
                "8BITMIME".into(),
                "SMTPUTF8".into(),
                "CHUNKING".into(),
            ],
        };
        assert_eq!(
            Extensions::parse(&reply),
            Extensions {
                pipelining: true,
                eight_bit: true,
                utf8: true,
                size: Some(10_240_000)
            }
        );
        let bare = Reply {
            code: 250,
            lines: vec!["SIZE here, but it is the greeting".into(), "size".into()],
        };
        assert_eq!(Extensions::parse(&bare).size, Some(0));
        assert!(!Extensions::parse(&bare).pipelining);
    }

    #[test]
    fn refusals_map_to_sysexits() {
        let r = |code, text: &str| Reply {
            code,
            lines: vec![text.into()],
        };
        assert_eq!(r(550, "5.1.1 <x>: User unknown").sysexit(), 67);
        assert_eq!(r(554, "5.7.1 Relay access denied").sysexit(), 77);
        assert_eq!(r(552, "5.6.0 Message too big").sysexit(), 65);
        assert_eq!(r(550, "no enhanced code").sysexit(), 67);
        assert_eq!(r(554, "Transaction failed").sysexit(), 69);
        assert_eq!(r(550, "5.1.1 a").words(), "550 5.1.1 a");
    }
}
