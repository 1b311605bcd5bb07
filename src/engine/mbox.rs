//! Streaming mbox splitter and writer.
//!
//! The splitter turns one mbox byte stream (a fetched spool, or stdin for
//! `mailhaul filter`) into [`Message`]s with bounded memory (I4): it reads
//! through a fixed buffer, and each message's bytes go into a [`Content`]
//! that spills to a temporary file when large. The writer is its inverse and
//! is what delivery uses for mbox targets.
//!
//! # Where a message ends
//!
//! A **From_ line** is a line (at most [`MAX_FROM_LINE`] bytes with its line
//! ending, which is `\n` or `\r\n`) of the form
//!
//! ```text
//! "From " SP* [ sender SP+ ] weekday SP+ month SP+ day SP+ time
//!         [ SP+ zone [ SP+ zone ] ] SP+ year [ SP+ anything ]
//! ```
//!
//! where SP is a space or tab; `sender` is a run of bytes other than
//! whitespace and control bytes (`MAILER-DAEMON`, an address, an IP address),
//! or a double-quoted string (which may hold spaces) followed by such a run;
//! `weekday` and `month` are English three-letter abbreviations in any case;
//! `day` is 1–2 digits; `time` is `H:MM` or `H:MM:SS` with 1–2 digit hours;
//! a `zone` starts with a letter, `+` or `-` (`MET DST`, `+0200`); `year` is 2
//! or 4 digits. The sender may be missing (`From  Mon Jan  1 …`). Anything may
//! follow the year (`+0000`, `remote from host`). This is about what mutt and
//! Dovecot accept; body text such as `From here on…` is not a From_ line.
//!
//! A From_ line starts a new message only at the start of the input, after a
//! blank line (`\n` or `\r\n`), or directly after the message's own From_
//! line (the first message was then empty). The blank line before it is the
//! separator: it belongs to the mbox, not to the message. At the end of the
//! input a final blank line is likewise the trailing separator.
//!
//! `Content-Length: N` in a header is trusted, as Dovecot does, only if the
//! input `N` bytes after the blank line that ends the header is a blank line
//! followed by the end of input or by a From_ line, and it does not fall
//! between the CR and LF of a line ending. (The end of input right there is
//! not enough: one real spam's length is one too many, and would swallow the
//! trailing separator; in a CRLF mbox such a length would end inside the
//! CRLF separator.)
//! When it is trusted the message is exactly those bytes even if its body has
//! an unquoted `From ` line after a blank line. When it is not (spam has
//! bogus lengths; formail trusts them blindly and merges messages), the
//! From_ line rule above decides. To know, the splitter reads on to that
//! offset; bytes it read past the From_ line boundary are kept in a spool
//! and read again (pushed back) if the length turns out wrong. Pushed-back
//! bytes take at most 8 MiB of memory in all, the rest is in temporary
//! files. The length counts bytes as stored: mboxrd unquoting still applies
//! within it. The first `Content-Length:` header line counts.
//!
//! Under [`MboxFormat::Mboxrd`] one `>` is removed from every line that is
//! `>` (at most [`MAX_QUOTE_RUN`] of them) followed by `From `; under
//! [`MboxFormat::Mboxo`] bytes are left as they are. Content is otherwise
//! byte-exact: CRLF, lone CR, NUL, 8-bit bytes and a missing final newline
//! are kept. Blank lines before the first From_ line are skipped; any other
//! text there becomes message 1 with no envelope.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memchr;
use tempfile::SpooledTempFile;

use super::message::{Content, Message};
use crate::config::MboxFormat;

/// Longest line, with its line ending, that can be a From_ line. Longer
/// lines are always message text.
pub const MAX_FROM_LINE: usize = 4096;

/// Longest run of `>` before `From ` that the reader unquotes under mboxrd.
/// Longer runs (never seen in real mail) are left as they are; the writer
/// quotes every such line, so content with a run of this length or more
/// before `From ` does not round-trip.
pub const MAX_QUOTE_RUN: usize = 64 * 1024;

/// Size of the read buffer.
const BUFFER_SIZE: usize = 256 * 1024;

/// Memory that pushed-back bytes may take in all before they spill to disk.
const PUSHBACK_MEMORY: usize = 8 << 20;

/// Why splitting stopped. Both say which message was being read and the
/// input byte offset the splitter had reached.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// Reading the input (or bytes pushed back to be read again) failed.
    #[error("reading the mbox failed in message {index} at byte offset {offset}: {source}")]
    Read {
        /// 1-based index of the message being read.
        index: u64,
        /// Input byte offset reached.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Storing the message's bytes (in memory or in a temporary file) failed.
    #[error("spooling message {index} failed at byte offset {offset}: {source}")]
    Spool {
        /// 1-based index of the message being read.
        index: u64,
        /// Input byte offset reached.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// An I/O failure before it is tagged with the message index and offset.
enum Failure {
    Read(io::Error),
    Spool(io::Error),
}

/// A source of bytes to read again before the rest of the input.
struct Pushback {
    bytes: Box<dyn Read + Send>,
    /// Memory it holds, counted against [`PUSHBACK_MEMORY`].
    memory: usize,
}

/// Raw input bytes recorded from a possible message boundary on, while a
/// `Content-Length` is being checked.
struct Tail {
    spool: SpooledTempFile,
    memory: usize,
    /// Input offset of its first byte.
    offset: u64,
    len: u64,
}

/// The buffered input with pushback and offset tracking.
struct Input<R> {
    inner: R,
    inner_done: bool,
    pushback: Vec<Pushback>,
    pushback_memory: usize,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Input offset of `buf[start]`.
    offset: u64,
    /// The byte before `offset` (`\n` at the start).
    last: u8,
    tail: Option<Tail>,
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            inner_done: false,
            pushback: Vec::new(),
            pushback_memory: 0,
            buf: vec![0; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            last: b'\n',
            tail: None,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Makes at least `n` bytes (at most the buffer size) available; false
    /// when the input ends first.
    fn fill_to(&mut self, n: usize) -> Result<bool, Failure> {
        debug_assert!(n <= BUFFER_SIZE);
        while self.end - self.start < n {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.read_more().map_err(Failure::Read)? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn read_more(&mut self) -> io::Result<usize> {
        let space = &mut self.buf[self.end..];
        loop {
            let got = if let Some(top) = self.pushback.last_mut() {
                match top.bytes.read(space) {
                    Ok(0) => {
                        self.pushback_memory -= top.memory;
                        self.pushback.pop();
                        continue;
                    }
                    other => other,
                }
            } else if self.inner_done {
                Ok(0)
            } else {
                self.inner.read(space)
            };
            match got {
                Ok(n) => {
                    if n == 0 {
                        self.inner_done = true;
                    }
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves past `n` available bytes, recording them in the tail if one is
    /// being kept.
    fn consume(&mut self, n: usize) -> Result<(), Failure> {
        if let Some(tail) = &mut self.tail {
            tail.spool
                .write_all(&self.buf[self.start..self.start + n])
                .map_err(Failure::Spool)?;
            tail.len += n as u64;
        }
        if n > 0 {
            self.last = self.buf[self.start + n - 1];
        }
        self.start += n;
        self.offset += n as u64;
        Ok(())
    }

    /// Starts recording consumed bytes, from the current offset on.
    fn start_tail(&mut self) {
        let memory = PUSHBACK_MEMORY.saturating_sub(self.pushback_memory);
        self.tail = Some(Tail {
            spool: SpooledTempFile::new(memory),
            memory,
            offset: self.offset,
            len: 0,
        });
    }

    /// Puts the recorded tail back in front of the input, so that reading
    /// goes on from where the tail started.
    fn push_back_tail(&mut self) -> Result<(), Failure> {
        let Some(mut tail) = self.tail.take() else {
            return Ok(());
        };
        let rest = self.available().to_vec();
        if !rest.is_empty() {
            self.pushback_memory += rest.len();
            self.pushback.push(Pushback {
                memory: rest.len(),
                bytes: Box::new(io::Cursor::new(rest)),
            });
        }
        tail.spool
            .seek(SeekFrom::Start(0))
            .map_err(Failure::Spool)?;
        self.pushback_memory += tail.memory;
        self.pushback.push(Pushback {
            bytes: Box::new(tail.spool),
            memory: tail.memory,
        });
        self.start = 0;
        self.end = 0;
        debug_assert_eq!(tail.offset + tail.len, self.offset);
        self.offset = tail.offset;
        // A tail starts at a From_ line, after a blank line.
        self.last = b'\n';
        Ok(())
    }
}

/// What a line that starts at the current position is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// No more input.
    End,
    /// `\n` or `\r\n`, with its length.
    Blank(usize),
    /// A valid From_ line.
    From,
    /// `>+From ` under mboxrd: the first byte is to be dropped.
    Quoted,
    /// Anything else.
    Text,
}

/// A message boundary seen inside a `Content-Length` body, in case the
/// length turns out wrong.
struct Fallback {
    /// Content length up to the boundary (without the separator line).
    content_len: u64,
    /// Header length up to the boundary.
    header_len: usize,
}

/// The message being read.
struct Draft {
    content: Content,
    header: Vec<u8>,
    in_header: bool,
    /// A blank line read but not yet known to be content or separator: its
    /// length and the input offset just after it.
    pending_blank: Option<(usize, u64)>,
    /// True until the first line after the From_ line is looked at.
    first_line: bool,
    saw_text: bool,
    /// Mid-way through a line that is being copied.
    mid_line: bool,
    content_length: Option<u64>,
    /// Input offset where a trusted `Content-Length` body would end, while
    /// that is still to be checked.
    cl_end: Option<u64>,
    fallback: Option<Fallback>,
}

impl Draft {
    fn append(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        if self.in_header {
            let room = Message::HEADER_CAP.saturating_sub(self.header.len());
            self.header
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        self.content.extend(bytes).map_err(Failure::Spool)
    }

    /// The pending blank line turned out to be message text.
    fn flush_blank(&mut self) -> Result<(), Failure> {
        if let Some((len, end)) = self.pending_blank.take() {
            self.append(&b"\r\n"[2 - len..])?;
            if self.in_header {
                self.in_header = false;
                self.cl_end = self.content_length.map(|n| end.saturating_add(n));
            }
        }
        Ok(())
    }
}

/// Splits an mbox stream into messages, one at a time.
pub struct MboxSplitter<R> {
    input: Input<R>,
    format: MboxFormat,
    next_index: u64,
    at_input_start: bool,
    failed: bool,
}

impl<R: Read> MboxSplitter<R> {
    /// A splitter over `reader` (which need not be buffered), reading the
    /// given mbox dialect.
    pub fn new(reader: R, format: MboxFormat) -> Self {
        MboxSplitter {
            input: Input::new(reader),
            format,
            next_index: 1,
            at_input_start: true,
            failed: false,
        }
    }

    /// The next message, or `None` at the end of the input.
    pub fn next_message(&mut self) -> Result<Option<Message>, SplitError> {
        loop {
            let index = self.next_index;
            let read = self.read_message(index).map_err(|failure| {
                let offset = self.input.offset;
                match failure {
                    Failure::Read(source) => SplitError::Read {
                        index,
                        offset,
                        source,
                    },
                    Failure::Spool(source) => SplitError::Spool {
                        index,
                        offset,
                        source,
                    },
                }
            })?;
            match read {
                Some(Some(message)) => {
                    self.next_index += 1;
                    return Ok(Some(message));
                }
                Some(None) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Reads one message: `None` at the end of input, `Some(None)` when
    /// what was read is only blank lines before the first From_ line.
    fn read_message(&mut self, index: u64) -> Result<Option<Option<Message>>, Failure> {
        let offset = self.input.offset;
        if !self.input.fill_to(1)? {
            return Ok(None);
        }
        let at_input_start = std::mem::replace(&mut self.at_input_start, false);
        let envelope = match self.peek_from_line()? {
            Some(len) => {
                let line = &self.input.available()[..len];
                let envelope = strip_line_ending(line)[5..].to_vec();
                self.input.consume(len)?;
                Some(envelope)
            }
            None => {
                debug_assert!(at_input_start, "a message starts at a From_ line");
                None
            }
        };
        let mut draft = Draft {
            content: Content::new(),
            header: Vec::new(),
            in_header: true,
            pending_blank: None,
            first_line: envelope.is_some(),
            saw_text: false,
            mid_line: false,
            content_length: None,
            cl_end: None,
            fallback: None,
        };
        self.read_lines(&mut draft)?;
        if envelope.is_none() && !draft.saw_text {
            return Ok(Some(None));
        }
        Ok(Some(Some(Message {
            index,
            offset,
            envelope,
            header: draft.header,
            content: draft.content,
        })))
    }

    /// Reads the message's lines up to its end.
    fn read_lines(&mut self, draft: &mut Draft) -> Result<(), Failure> {
        loop {
            if let Some(cl_end) = draft.cl_end {
                if self.input.offset == cl_end {
                    if self.content_length_holds()? {
                        draft.flush_blank()?;
                        self.input.tail = None;
                        if let Some(Line::Blank(len)) = self.peek_blank()? {
                            self.input.consume(len)?;
                        }
                        return Ok(());
                    }
                    if self.abandon_content_length(draft)? {
                        return Ok(());
                    }
                }
            }
            if draft.mid_line {
                self.copy_text(draft)?;
                continue;
            }
            let before_checkpoint = draft.cl_end.map_or(u64::MAX, |end| end - self.input.offset);
            let line = self.classify(draft)?;
            if matches!(line, Line::Blank(len) if len as u64 > before_checkpoint) {
                // The length ends inside a CRLF blank line, so it is wrong.
                if self.abandon_content_length(draft)? {
                    return Ok(());
                }
            }
            match line {
                Line::End => {
                    if draft.cl_end.is_some() {
                        self.abandon_content_length(draft)?;
                    }
                    return Ok(());
                }
                Line::From if draft.pending_blank.is_some() || draft.first_line => {
                    // A body that starts with a From_ line may still be
                    // covered by the header's Content-Length.
                    let length_starts_here = draft.in_header
                        && draft.pending_blank.is_some()
                        && draft.content_length.is_some();
                    if draft.cl_end.is_none() && !length_starts_here {
                        return Ok(());
                    }
                    if draft.fallback.is_none() {
                        draft.fallback = Some(Fallback {
                            content_len: draft.content.len(),
                            header_len: draft.header.len(),
                        });
                        self.input.start_tail();
                    }
                    draft.flush_blank()?;
                    continue;
                }
                _ if draft.pending_blank.is_some() => {
                    draft.flush_blank()?;
                    continue;
                }
                _ => {}
            }
            draft.first_line = false;
            match line {
                Line::Blank(len) => {
                    self.input.consume(len)?;
                    draft.pending_blank = Some((len, self.input.offset));
                }
                Line::Quoted => {
                    self.input.consume(1)?;
                    draft.saw_text = true;
                    draft.mid_line = true;
                }
                _ => {
                    draft.saw_text = true;
                    draft.mid_line = true;
                }
            }
        }
    }

    /// The `Content-Length` was wrong: fall back to the first From_ line
    /// boundary seen inside it, if any. True when the message ends there.
    fn abandon_content_length(&mut self, draft: &mut Draft) -> Result<bool, Failure> {
        draft.cl_end = None;
        match draft.fallback.take() {
            Some(fallback) => {
                draft
                    .content
                    .truncate(fallback.content_len)
                    .map_err(Failure::Spool)?;
                draft.header.truncate(fallback.header_len);
                self.input.push_back_tail()?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Copies text from inside a line: to the end of the line and then on
    /// over following lines that cannot matter (not blank, no From_ line, no
    /// quoting), stopping at a `Content-Length` checkpoint.
    fn copy_text(&mut self, draft: &mut Draft) -> Result<(), Failure> {
        if !self.input.fill_to(1)? {
            draft.mid_line = false;
            return Ok(());
        }
        let available = self.input.available();
        let limit = draft.cl_end.map_or(available.len(), |end| {
            (end - self.input.offset).min(available.len() as u64) as usize
        });
        let data = &available[..limit];
        let mut n = match memchr(b'\n', data) {
            None => data.len(),
            Some(i) => {
                draft.mid_line = false;
                i + 1
            }
        };
        if !draft.mid_line && !draft.in_header {
            let quoting = self.format == MboxFormat::Mboxrd;
            while n < data.len() {
                let first = data[n];
                if matches!(first, b'\n' | b'\r' | b'F') || (quoting && first == b'>') {
                    break;
                }
                match memchr(b'\n', &data[n..]) {
                    Some(i) => n += i + 1,
                    None => break,
                }
            }
        }
        let start = self.input.start;
        let bytes = &self.input.buf[start..start + n];
        draft.append(bytes)?;
        self.input.consume(n)
    }

    /// What the line at the current position is. In the header, also notes
    /// a `Content-Length`.
    fn classify(&mut self, draft: &mut Draft) -> Result<Line, Failure> {
        if !self.input.fill_to(1)? {
            return Ok(Line::End);
        }
        match self.input.available()[0] {
            b'\n' | b'\r' => Ok(self.peek_blank()?.unwrap_or(Line::Text)),
            b'F' => Ok(if self.peek_from_line()?.is_some() {
                Line::From
            } else {
                Line::Text
            }),
            b'>' if self.format == MboxFormat::Mboxrd => self.classify_quoted(),
            b'C' | b'c' if draft.in_header => {
                self.note_content_length(draft)?;
                Ok(Line::Text)
            }
            _ => Ok(Line::Text),
        }
    }

    /// Whether the current `>` line is a quoted From_ line.
    fn classify_quoted(&mut self) -> Result<Line, Failure> {
        let mut want = 64;
        loop {
            let more = self.input.fill_to(want)?;
            let available = self.input.available();
            let run = available.iter().take_while(|&&b| b == b'>').count();
            if run > MAX_QUOTE_RUN {
                return Ok(Line::Text);
            }
            if run + 5 <= available.len() || !more {
                return Ok(if available[run..].starts_with(b"From ") {
                    Line::Quoted
                } else {
                    Line::Text
                });
            }
            want = run + 5 + 64;
        }
    }

    /// Notes the value of a `Content-Length:` header line at the current
    /// position (the first one counts).
    fn note_content_length(&mut self, draft: &mut Draft) -> Result<(), Failure> {
        const NAME: &[u8] = b"content-length:";
        if draft.content_length.is_some() {
            return Ok(());
        }
        self.input.fill_to(128)?;
        let available = self.input.available();
        let window = &available[..available.len().min(128)];
        let Some(end) = memchr(b'\n', window) else {
            return Ok(());
        };
        let line = strip_line_ending(&window[..end]);
        if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            return Ok(());
        }
        let value = std::str::from_utf8(&line[NAME.len()..]).unwrap_or("");
        draft.content_length = value.trim_matches([' ', '\t']).parse::<u64>().ok();
        Ok(())
    }

    /// The blank line at the current position, if there is one.
    fn peek_blank(&mut self) -> Result<Option<Line>, Failure> {
        self.input.fill_to(2)?;
        let available = self.input.available();
        Ok(if available.starts_with(b"\n") {
            Some(Line::Blank(1))
        } else if available.starts_with(b"\r\n") {
            Some(Line::Blank(2))
        } else {
            None
        })
    }

    /// The length, with its line ending, of the From_ line at the current
    /// position, if there is one.
    fn peek_from_line(&mut self) -> Result<Option<usize>, Failure> {
        self.input.fill_to(MAX_FROM_LINE)?;
        Ok(from_line_len_in(self.input.available()))
    }

    /// Whether the input at the current position is what a correct
    /// `Content-Length` leads to: the separator blank line, followed by the
    /// end or a From_ line. A length that ends between the CR and LF of a
    /// line ending is wrong.
    fn content_length_holds(&mut self) -> Result<bool, Failure> {
        let more = self.input.fill_to(2 + MAX_FROM_LINE)?;
        let available = self.input.available();
        let blank = if available.starts_with(b"\n") && self.input.last != b'\r' {
            1
        } else if available.starts_with(b"\r\n") {
            2
        } else {
            return Ok(false);
        };
        let after = &available[blank..];
        Ok((after.is_empty() && !more) || from_line_len_in(after).is_some())
    }
}

impl<R: Read> Iterator for MboxSplitter<R> {
    type Item = Result<Message, SplitError>;

    /// Yields messages; after an error, ends.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_message() {
            Ok(message) => message.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The length of the From_ line at the start of `bytes` (which holds at
/// least [`MAX_FROM_LINE`] bytes unless the input ends within them).
fn from_line_len_in(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(b"From ") {
        return None;
    }
    let window = &bytes[..bytes.len().min(MAX_FROM_LINE)];
    let len = match memchr(b'\n', window) {
        Some(i) => i + 1,
        None if bytes.len() < MAX_FROM_LINE => bytes.len(),
        None => return None,
    };
    is_from_line(strip_line_ending(&bytes[..len])).then_some(len)
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether `line` (without its line ending) is a From_ line as defined in
/// the module documentation.
pub fn is_from_line(line: &[u8]) -> bool {
    if line.len() + 1 > MAX_FROM_LINE {
        return false;
    }
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let rest = skip_space(rest);
    if is_date(rest) {
        return true;
    }
    let Some(after_sender) = skip_sender(rest) else {
        return false;
    };
    let date = skip_space(after_sender);
    date.len() < after_sender.len() && is_date(date)
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_space(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    &s[n..]
}

/// A run of bytes that are not whitespace or control bytes.
fn word_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| b > b' ' && b != 0x7f).count()
}

fn skip_sender(s: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    if s.first() == Some(&b'"') {
        let close = memchr(b'"', &s[1..])? + 2;
        if s[..close].iter().any(|&b| b < b' ' && b != b'\t') {
            return None;
        }
        at = close;
    }
    let word = word_len(&s[at..]);
    if at + word == 0 {
        return None;
    }
    Some(&s[at + word..])
}

/// `weekday month day time [zone [zone]] year [anything]`.
fn is_date(s: &[u8]) -> bool {
    const DAYS: [&[u8]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let name = |s: &[u8], names: &[&[u8]]| -> bool {
        s.len() >= 3 && names.iter().any(|n| s[..3].eq_ignore_ascii_case(n))
    };
    // Each field must be followed by whitespace (or, for the year, the end).
    let field = |s: &[u8], len: usize| -> Option<usize> {
        (s.len() > len && is_space(s[len])).then_some(len)
    };
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();

    if !name(s, &DAYS) {
        return false;
    }
    let Some(n) = field(s, 3) else { return false };
    let s = skip_space(&s[n..]);
    if !name(s, &MONTHS) {
        return false;
    }
    let Some(n) = field(s, 3) else { return false };
    let s = skip_space(&s[n..]);
    let day = digits(s);
    if !(1..=2).contains(&day) || field(s, day).is_none() {
        return false;
    }
    let s = skip_space(&s[day..]);
    let Some(time) = time_len(s) else {
        return false;
    };
    if field(s, time).is_none() {
        return false;
    }
    let mut s = skip_space(&s[time..]);
    for _ in 0..2 {
        if s.first()
            .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'+' || b == b'-')
        {
            let zone = word_len(s);
            if field(s, zone).is_none() {
                return false;
            }
            s = skip_space(&s[zone..]);
        }
    }
    let year = digits(s);
    (year == 2 || year == 4) && (s.len() == year || is_space(s[year]))
}

/// Length of `H:MM` or `H:MM:SS` (1–2 digit hours) at the start of `s`.
fn time_len(s: &[u8]) -> Option<usize> {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let hours = digits(s);
    if !(1..=2).contains(&hours) || s.get(hours) != Some(&b':') {
        return None;
    }
    let mut at = hours + 1;
    if digits(&s[at..]) != 2 {
        return None;
    }
    at += 2;
    if s.get(at) == Some(&b':') {
        if digits(&s[at + 1..]) != 2 {
            return None;
        }
        at += 3;
    }
    Some(at)
}

/// Writes one message to an mbox: its From_ line (`MAILER-DAEMON` and the
/// current time when `envelope` is `None`), its content with `>From`
/// quoting for `format`, a final newline if the content lacks one, and the
/// blank separator line. Returns the number of bytes written. `out` should
/// be buffered. Fails with `InvalidInput` if `From ` + `envelope` is not a
/// From_ line (the result would not split back).
pub fn write_message<W: Write + ?Sized>(
    out: &mut W,
    envelope: Option<&[u8]>,
    mut content: impl Read,
    format: MboxFormat,
) -> io::Result<u64> {
    let mut out = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut from_line = b"From ".to_vec();
    match envelope {
        Some(envelope) => from_line.extend_from_slice(envelope),
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            from_line.extend_from_slice(format!("MAILER-DAEMON {}", asctime(now)).as_bytes());
        }
    }
    if !is_from_line(&from_line) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "not a valid mbox envelope: {:?}",
                String::from_utf8_lossy(&from_line)
            ),
        ));
    }
    from_line.push(b'\n');
    out.write_all(&from_line)?;

    let mut quoter = Quoter {
        format,
        state: QuoteState::LineStart { quotes: 0, from: 0 },
        last: None,
    };
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        quoter.write(&mut out, &buf[..n])?;
    }
    quoter.finish(&mut out)?;
    if quoter.last.is_some_and(|b| b != b'\n') {
        out.write_all(b"\n")?;
    }
    out.write_all(b"\n")?;
    Ok(out.count)
}

struct CountingWriter<'a, W: ?Sized> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write + ?Sized> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where the quoter is within a line.
#[derive(Clone, Copy)]
enum QuoteState {
    /// At a line start, having held back `quotes` `>` and then the first
    /// `from` bytes of `From `.
    LineStart { quotes: u64, from: usize },
    /// Past the point where quoting is decided.
    InLine,
}

/// Adds `>` quoting to content as it streams through, whatever the chunk
/// boundaries.
struct Quoter {
    format: MboxFormat,
    state: QuoteState,
    last: Option<u8>,
}

impl Quoter {
    fn write(&mut self, out: &mut impl Write, chunk: &[u8]) -> io::Result<()> {
        if let Some(&b) = chunk.last() {
            self.last = Some(b);
        }
        let mut at = 0;
        while at < chunk.len() {
            match self.state {
                QuoteState::InLine => match memchr(b'\n', &chunk[at..]) {
                    Some(i) => {
                        out.write_all(&chunk[at..at + i + 1])?;
                        at += i + 1;
                        self.state = QuoteState::LineStart { quotes: 0, from: 0 };
                    }
                    None => {
                        out.write_all(&chunk[at..])?;
                        at = chunk.len();
                    }
                },
                QuoteState::LineStart { quotes, from } => {
                    let b = chunk[at];
                    if from == 0 && b == b'>' {
                        self.state = QuoteState::LineStart {
                            quotes: quotes + 1,
                            from,
                        };
                        at += 1;
                    } else if b == b"From "[from] {
                        at += 1;
                        if from + 1 == 5 {
                            let quote = match self.format {
                                MboxFormat::Mboxrd => true,
                                MboxFormat::Mboxo => quotes == 0,
                            };
                            if quote {
                                out.write_all(b">")?;
                            }
                            write_quotes(out, quotes)?;
                            out.write_all(b"From ")?;
                            self.state = QuoteState::InLine;
                        } else {
                            self.state = QuoteState::LineStart {
                                quotes,
                                from: from + 1,
                            };
                        }
                    } else {
                        self.flush_held(out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes what was held back at a line start that is not a From line.
    fn flush_held(&mut self, out: &mut impl Write) -> io::Result<()> {
        if let QuoteState::LineStart { quotes, from } = self.state {
            write_quotes(out, quotes)?;
            out.write_all(&b"From "[..from])?;
        }
        self.state = QuoteState::InLine;
        Ok(())
    }

    fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.flush_held(out)
    }
}

fn write_quotes(out: &mut impl Write, mut n: u64) -> io::Result<()> {
    const QUOTES: [u8; 64] = [b'>'; 64];
    while n > 0 {
        let k = n.min(64) as usize;
        out.write_all(&QUOTES[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// A Unix time as C's `asctime` writes it (UTC), e.g.
/// `Thu Jan  1 00:00:00 1970`: the date format of From_ lines.
pub fn asctime(unix_seconds: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        year
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DATE: &str = "Mon Jan  1 00:00:00 2001";

    /// A reader that hands out at most `chunk` bytes per call, to push the
    /// splitter across its buffer refills at awkward places.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.chunk).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// (envelope, content) of every message, also checking that a
    /// byte-at-a-time read and a 7-byte-chunk read agree with it.
    fn split_all(input: &[u8], format: MboxFormat) -> Vec<(Option<String>, Vec<u8>)> {
        let whole = split_with(input, format, usize::MAX);
        assert_eq!(split_with(input, format, 1), whole, "1-byte reads");
        assert_eq!(split_with(input, format, 7), whole, "7-byte reads");
        whole
    }

    fn split_with(
        input: &[u8],
        format: MboxFormat,
        chunk: usize,
    ) -> Vec<(Option<String>, Vec<u8>)> {
        split_messages(Trickle { data: input, chunk }, format)
            .into_iter()
            .map(|(envelope, content, _)| (envelope, content))
            .collect()
    }

    /// (envelope, content, message) of every message.
    fn split_messages(
        input: impl Read,
        format: MboxFormat,
    ) -> Vec<(Option<String>, Vec<u8>, Message)> {
        MboxSplitter::new(input, format)
            .map(|message| {
                let mut message = message.unwrap();
                let mut content = Vec::new();
                message.content.copy_to(&mut content).unwrap();
                let envelope = message
                    .envelope
                    .as_ref()
                    .map(|e| String::from_utf8_lossy(e).into_owned());
                (envelope, content, message)
            })
            .collect()
    }

    fn env(sender: &str) -> Option<String> {
        Some(format!("{sender} {DATE}"))
    }

    #[test]
    fn empty_input_has_no_messages() {
        assert!(split_all(b"", MboxFormat::Mboxrd).is_empty());
        assert!(split_all(b"\n\n\r\n", MboxFormat::Mboxrd).is_empty());
    }

    #[test]
    fn splits_at_from_lines_after_blank_lines() {
        let input = format!(
            "From a@b {DATE}\nSubject: one\n\nbody\n\nFrom c@d {DATE}\nSubject: two\n\nx\n\n"
        );
        let got = split_messages(input.as_bytes(), MboxFormat::Mboxo);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, env("a@b"));
        assert_eq!(got[0].1, b"Subject: one\n\nbody\n");
        assert_eq!(got[0].2.header, b"Subject: one\n\n");
        assert_eq!((got[0].2.index, got[0].2.offset), (1, 0));
        assert_eq!(got[1].0, env("c@d"));
        assert_eq!(got[1].1, b"Subject: two\n\nx\n");
        let second = input.find("From c@d").unwrap() as u64;
        assert_eq!((got[1].2.index, got[1].2.offset), (2, second));
    }

    #[test]
    fn separator_and_final_newline() {
        // No trailing separator, no final newline: kept as they are.
        let got = split_all(
            format!("From a {DATE}\nS: x\n\nbody").as_bytes(),
            MboxFormat::Mboxo,
        );
        assert_eq!(got, vec![(env("a"), b"S: x\n\nbody".to_vec())]);
        // A message that ends in a blank line keeps it; the last blank
        // line is the separator.
        let got = split_all(
            format!("From a {DATE}\nS: x\n\nbody\n\n\nFrom b {DATE}\nS: y\n\n").as_bytes(),
            MboxFormat::Mboxo,
        );
        assert_eq!(got[0].1, b"S: x\n\nbody\n\n");
        assert_eq!(got[1].1, b"S: y\n");
    }

    #[test]
    fn text_before_the_first_from_line_is_a_message_without_envelope() {
        let got = split_all(
            format!("Subject: stray\n\ntext\n\nFrom a {DATE}\nS: x\n").as_bytes(),
            MboxFormat::Mboxo,
        );
        assert_eq!(
            got,
            vec![
                (None, b"Subject: stray\n\ntext\n".to_vec()),
                (env("a"), b"S: x\n".to_vec())
            ]
        );
        // Blank lines alone before it are not a message.
        let got = split_all(
            format!("\n\r\n\nFrom a {DATE}\nS: x\n").as_bytes(),
            MboxFormat::Mboxo,
        );
        assert_eq!(got, vec![(env("a"), b"S: x\n".to_vec())]);
    }

    #[test]
    fn body_from_text_does_not_split() {
        let input = format!(
            "From a {DATE}\nS: x\n\nFrom here on, all is quiet.\n\nFrom the desk of Mon Jan\n\
             From b {DATE}\nno blank line before the From line above\n"
        );
        let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
        assert_eq!(got.len(), 1);
        assert!(got[0].1.ends_with(b"above\n"));
    }

    #[test]
    fn from_line_forms() {
        for line in [
            "From MAILER-DAEMON Thu Jan  1 00:00:00 1970",
            // Postfix and procmail write two spaces before the date.
            "From MAILER-DAEMON  Sat Nov 28 09:53:43 2026",
            "From root@vm  Sat Nov 28 09:40:32 2026",
            "From \"a b\"@x  Sat Nov  8 09:40:32 2026",
            "From user@example.com Sat Nov 28 09:27:34 2026",
            "From  Mon Jan  1 00:00:00 2001",
            "From Mon Jan 1 00:00 2001",
            "From \"john doe\"@example.com Tue Feb 29 12:00:00 2000",
            "From x@y Wed Aug  2 00:39:12 MET DST 1995",
            "From x@y Wed Aug  2 00:39:12 +0200 1995",
            "From x@y Thu Nov  9 22:33:52 2001 +0300",
            "From uucp Thu Nov  9 22:33:52 2001 remote from host",
            "From x@y\tfri\tdec 31 23:59:59 99",
            "From 66.133.153.18 Thu Oct 21 04:52:30 2004",
            "From Mon Mon Jan  1 00:00:00 2001",
        ] {
            assert!(is_from_line(line.as_bytes()), "{line}");
        }
        for line in [
            "From here on, all is quiet.",
            "From x@y",
            "From x@y Mon Jan  1 2001",
            "From x@y Mon Foo  1 00:00:00 2001",
            "From x@y Mon Jan  1 00:00:00",
            "From x@y Mon Jan  1 00:00:00 20011",
            "From x@y Mon Jan 123 00:00:00 2001",
            "From x@y Mon Jan  1 0:0:00 2001",
            "From a b Mon Jan  1 00:00:00 2001",
            "From x\0y Mon Jan  1 00:00:00 2001",
            "from x@y Mon Jan  1 00:00:00 2001",
            ">From x@y Mon Jan  1 00:00:00 2001",
        ] {
            assert!(!is_from_line(line.as_bytes()), "{line}");
        }
        let long = format!("From {}@y {DATE}", "x".repeat(MAX_FROM_LINE));
        assert!(!is_from_line(long.as_bytes()));
    }

    #[test]
    fn crlf_input_keeps_its_bytes() {
        let input =
            format!("From a {DATE}\r\nS: x\r\n\r\nbody\r\n\r\nFrom b {DATE}\r\nS: y\r\n\r\n\r\n");
        let got = split_all(input.as_bytes(), MboxFormat::Mboxrd);
        assert_eq!(
            got,
            vec![
                (env("a"), b"S: x\r\n\r\nbody\r\n".to_vec()),
                (env("b"), b"S: y\r\n\r\n".to_vec())
            ]
        );
    }

    #[test]
    fn mboxrd_unquotes_one_level_and_mboxo_none() {
        let input = format!(
            "From a {DATE}\nS: x\n\n>From me\n>>From you\n> From no\n>Fromage\n>>>>\nFrom inside\n"
        );
        let rd = split_all(input.as_bytes(), MboxFormat::Mboxrd);
        assert_eq!(
            rd[0].1,
            b"S: x\n\nFrom me\n>From you\n> From no\n>Fromage\n>>>>\nFrom inside\n"
        );
        let o = split_all(input.as_bytes(), MboxFormat::Mboxo);
        assert_eq!(o[0].1, input.split_once('\n').unwrap().1.as_bytes());
    }

    #[test]
    fn nul_and_8bit_bytes_pass_through() {
        let mut input = format!("From a {DATE}\n").into_bytes();
        let content = b"S: \xe9t\xe9\n\nnul \0 here\n\xff\xfe\0\n".to_vec();
        input.extend_from_slice(&content);
        let got = split_all(&input, MboxFormat::Mboxrd);
        assert_eq!(got, vec![(env("a"), content)]);
    }

    #[test]
    fn megabyte_header_line() {
        let long = format!("X-Long: {}\n", "a".repeat(1 << 20));
        let content = format!("{long}Subject: after\n\nbody\n");
        let input = format!("From a {DATE}\n{content}\nFrom b {DATE}\nS: y\n");
        let got = split_messages(input.as_bytes(), MboxFormat::Mboxrd);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, content.as_bytes());
        assert_eq!(
            got[0].2.header,
            format!("{long}Subject: after\n\n").as_bytes()
        );
    }

    #[test]
    fn empty_messages() {
        let input = format!("From a {DATE}\nFrom b {DATE}\n\nFrom c {DATE}\n\nFrom d {DATE}");
        let got = split_all(input.as_bytes(), MboxFormat::Mboxrd);
        assert_eq!(
            got,
            vec![
                (env("a"), vec![]),
                (env("b"), vec![]),
                (env("c"), vec![]),
                (env("d"), vec![])
            ]
        );
    }

    #[test]
    fn content_length_is_trusted_when_a_from_line_follows_it() {
        // Solaris-style mboxo: an unquoted From line after a blank line in
        // the body, covered by a right Content-Length.
        let body = format!("hi\n\nFrom b {DATE}\nstill the same message\n");
        let input = format!(
            "From a {DATE}\nContent-Length: {}\n\n{body}\nFrom c {DATE}\nS: z\n",
            body.len()
        );
        let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
        assert_eq!(got.len(), 2);
        assert!(got[0].1.ends_with(body.as_bytes()));
        assert_eq!(got[1], (env("c"), b"S: z\n".to_vec()));
        // The same length followed by end of input right away is not
        // enough (the separator line is missing): From_ lines decide.
        let input = format!("From a {DATE}\nContent-Length: {}\n\n{body}", body.len());
        assert_eq!(split_all(input.as_bytes(), MboxFormat::Mboxo).len(), 2);
    }

    #[test]
    fn content_length_covers_a_body_that_starts_with_a_from_line() {
        let body = format!("From b {DATE}\nbody\n");
        for (length, count) in [(body.len(), 2), (0, 3), (body.len() - 1, 3), (99, 3)] {
            let input =
                format!("From a {DATE}\nContent-Length: {length}\n\n{body}\nFrom c {DATE}\nS: z\n");
            let got = split_messages(input.as_bytes(), MboxFormat::Mboxo);
            assert_eq!(got.len(), count, "length {length}");
            assert_eq!(split_all(input.as_bytes(), MboxFormat::Mboxo).len(), count);
            let header = format!("Content-Length: {length}\n");
            if count == 2 {
                assert_eq!(got[0].1, format!("{header}\n{body}").as_bytes());
                assert_eq!(got[0].2.header, format!("{header}\n").as_bytes());
            } else {
                assert_eq!(got[0].1, header.as_bytes());
                assert_eq!(got[0].2.header, header.as_bytes());
                assert_eq!(got[1].1, b"body\n");
            }
        }
    }

    #[test]
    fn content_length_may_end_mid_line() {
        let input = format!("From a {DATE}\ncontent-length:\t3 \n\nabc\nFrom b {DATE}\nS: y\n");
        let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
        assert_eq!(
            got,
            vec![
                (env("a"), b"content-length:\t3 \n\nabc".to_vec()),
                (env("b"), b"S: y\n".to_vec())
            ]
        );
    }

    #[test]
    fn wrong_content_length_falls_back_to_from_lines() {
        let third = format!("From c {DATE}\nS: z\n\nend\n\n");
        for length in [0, 1, 5, 9, 10, 40, 1000, 10_000_000, u64::MAX] {
            let input = format!(
                "From a {DATE}\nContent-Length: {length}\n\nbody one\n\nFrom b {DATE}\n\
                 Content-Length: {length}\n\nbody two\n\n{third}"
            );
            let got = split_messages(input.as_bytes(), MboxFormat::Mboxrd);
            let summary: Vec<_> = got.iter().map(|(e, c, _)| (e.clone(), c.clone())).collect();
            assert_eq!(
                summary,
                vec![
                    (
                        env("a"),
                        format!("Content-Length: {length}\n\nbody one\n").into_bytes()
                    ),
                    (
                        env("b"),
                        format!("Content-Length: {length}\n\nbody two\n").into_bytes()
                    ),
                    (env("c"), b"S: z\n\nend\n".to_vec()),
                ],
                "length {length}"
            );
            assert_eq!(split_all(input.as_bytes(), MboxFormat::Mboxrd), summary);
            let offsets: Vec<u64> = got.iter().map(|m| m.2.offset).collect();
            let want: Vec<u64> = ["From a", "From b", "From c"]
                .iter()
                .map(|s| input.find(s).unwrap() as u64)
                .collect();
            assert_eq!(offsets, want, "length {length}");
        }
    }

    #[test]
    fn content_length_off_by_one_in_crlf_mbox() {
        for extra in [0, 1, 2, 3] {
            let body = "line\r\n";
            let input = format!(
                "From a {DATE}\r\nContent-Length: {}\r\n\r\n{body}\r\nFrom b {DATE}\r\n\
                 S: y\r\n\r\nline\r\nFrom c {DATE}\r\n",
                body.len() + extra
            );
            let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
            let envelopes: Vec<_> = got.iter().map(|m| m.0.clone()).collect();
            assert_eq!(envelopes, vec![env("a"), env("b")], "extra {extra}");
            let want = format!("Content-Length: {}\r\n\r\n{body}", body.len() + extra);
            assert_eq!(got[0].1, want.as_bytes(), "extra {extra}");
        }
        // A length that ends between CR and LF of a text line followed by
        // a From_ line (not a boundary: no blank line before it).
        let input =
            format!("From a {DATE}\r\nContent-Length: 5\r\n\r\nline\r\nFrom b {DATE}\r\nmore\r\n");
        let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
        assert_eq!(got.len(), 1);
        assert!(got[0].1.ends_with(b"more\r\n"));
    }

    #[test]
    fn content_length_reaching_a_later_boundary_is_trusted() {
        // A length that reaches exactly to a later boundary is trusted
        // (Dovecot's rule): the two messages are one.
        let body = format!("one\n\nFrom b {DATE}\nS: y\n\ntwo\n");
        let input = format!(
            "From a {DATE}\nContent-Length: {}\n\n{body}\nFrom c {DATE}\nS: z\n",
            body.len()
        );
        let got = split_all(input.as_bytes(), MboxFormat::Mboxrd);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, env("c"));
    }

    #[test]
    fn big_message_spills_and_stays_exact() {
        let mut body: Vec<u8> = (0..9 << 20).map(|i| b"abcdefghij\n"[i % 11]).collect();
        body.push(b'\n');
        let mut input = format!("From a {DATE}\nS: big\n\n").into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(format!("\nFrom b {DATE}\nS: small\n").as_bytes());
        let got = split_messages(&input[..], MboxFormat::Mboxrd);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].2.content.len(), body.len() as u64 + 8);
        assert!(got[0].1[8..] == body[..]);
    }

    #[test]
    fn bytes_read_past_a_wrong_length_are_read_again_from_disk() {
        // Message a's length points far past the end, so everything after
        // its From_ boundary (more than the pushback memory) is kept in a
        // spool that spills to disk, then read again.
        let mut big: Vec<u8> = (0..PUSHBACK_MEMORY + 4096)
            .map(|i| b"0123456789abcdef>From \n"[i % 23])
            .collect();
        big.push(b'\n');
        let mut input =
            format!("From a {DATE}\nContent-Length: 999999999\n\nsmall\n\n").into_bytes();
        input.extend_from_slice(format!("From b {DATE}\nS: big\n\n").as_bytes());
        input.extend_from_slice(&big);
        input.extend_from_slice(format!("\nFrom c {DATE}\nS: z\n\n").as_bytes());
        let got = split_messages(&input[..], MboxFormat::Mboxo);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, b"Content-Length: 999999999\n\nsmall\n");
        assert_eq!(got[1].0, env("b"));
        assert!(got[1].1[8..] == big[..]);
        assert_eq!(got[2].1, b"S: z\n");
        let c_offset = input.len() - format!("From c {DATE}\nS: z\n\n").len();
        assert_eq!(got[2].2.offset, c_offset as u64);
    }

    #[test]
    fn read_errors_name_message_and_offset() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let input = format!("From a {DATE}\nS: x\n\nFrom b {DATE}\nS: y\n");
        let mut splitter = MboxSplitter::new(Failing(input.as_bytes()), MboxFormat::Mboxrd);
        let err = splitter.find_map(Result::err).unwrap();
        match &err {
            SplitError::Read { index, offset, .. } => {
                assert_eq!(*index, 1);
                assert!(*offset <= input.len() as u64);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("message 1"), "{err}");
        assert!(splitter.next().is_none());
    }

    #[test]
    fn writer_quotes_and_terminates() {
        let mut out = Vec::new();
        let n = write_message(
            &mut out,
            Some(b"a@b Mon Jan  1 00:00:00 2001"),
            &b"S: x\n\nFrom me\n>From you\nlast"[..],
            MboxFormat::Mboxrd,
        )
        .unwrap();
        assert_eq!(
            out,
            b"From a@b Mon Jan  1 00:00:00 2001\nS: x\n\n>From me\n>>From you\nlast\n\n"
        );
        assert_eq!(n, out.len() as u64);

        let mut out = Vec::new();
        write_message(
            &mut out,
            None,
            &b"From me\n>From you\n"[..],
            MboxFormat::Mboxo,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (from_line, rest) = text.split_once('\n').unwrap();
        assert!(from_line.starts_with("From MAILER-DAEMON "), "{from_line}");
        assert!(is_from_line(from_line.as_bytes()), "{from_line}");
        assert_eq!(rest, ">From me\n>From you\n\n");

        let err = write_message(
            &mut Vec::new(),
            Some(b"not a date"),
            &b""[..],
            MboxFormat::Mboxrd,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn asctime_matches_c() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(asctime(1_000_000_000), "Sun Sep  9 01:46:40 2001");
        assert_eq!(asctime(1_795_858_054), "Sat Nov 28 09:27:34 2026");
    }

    fn join(messages: &[(Option<String>, Vec<u8>)], format: MboxFormat) -> Vec<u8> {
        let mut out = Vec::new();
        for (envelope, content) in messages {
            write_message(
                &mut out,
                envelope.as_deref().map(str::as_bytes),
                &content[..],
                format,
            )
            .unwrap();
        }
        out
    }

    fn envelope_strategy() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![
                "MAILER-DAEMON",
                "a@b.example",
                "\"x y\"@z",
                "66.1.2.3",
            ]),
            prop::sample::select(vec![
                "Mon Jan  1 00:00:00 2001",
                "Thu Oct 21 04:52:30 2004 +0000",
                "Wed Aug  2 00:39 MET DST 95",
            ]),
        )
            .prop_map(|(sender, date)| format!("{sender} {date}"))
    }

    /// Body lines that stress the splitter; `with_from` adds lines that
    /// mboxo cannot carry unchanged.
    fn line_strategy(with_from: bool) -> impl Strategy<Value = Vec<u8>> {
        let mut lines: Vec<&'static [u8]> = vec![
            b"\n",
            b"\r\n",
            b"text\n",
            b"text\r\n",
            b">From quoted\n",
            b">>From twice\n",
            b">\n",
            b"F\n",
            b"Fro\n",
            b"nul \0 and \xff\xfe 8-bit\n",
            b"lone \r cr\n",
            b"Content-Length: 3\n",
        ];
        if with_from {
            lines.extend_from_slice(&[
                b"From here on\n",
                b"From x@y Mon Jan  1 00:00:00 2001\n",
                b"From x@y Mon Jan  1 00:00:00 2001\r\n",
            ]);
        }
        prop_oneof![
            prop::sample::select(lines).prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut line| {
                line.retain(|&b| b != b'\n');
                line.push(b'\n');
                line
            }),
        ]
    }

    /// Message contents end with a newline (or are empty), since the
    /// writer adds a missing one.
    fn content_strategy(with_from: bool) -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec![None, Some(0u64), Some(7), Some(1 << 40)]),
            prop::collection::vec(line_strategy(with_from), 0..12),
            prop::collection::vec(line_strategy(with_from), 0..12),
        )
            .prop_map(|(length, header, body)| {
                let mut content = Vec::new();
                if let Some(length) = length {
                    content.extend_from_slice(format!("Content-Length: {length}\n").as_bytes());
                }
                for line in header
                    .iter()
                    .filter(|l| !l.starts_with(b"\n") && !l.starts_with(b"\r\n"))
                {
                    content.extend_from_slice(line);
                }
                if !body.is_empty() {
                    content.push(b'\n');
                    body.iter().for_each(|line| content.extend_from_slice(line));
                }
                content
            })
    }

    fn messages_strategy(with_from: bool) -> impl Strategy<Value = Vec<(Option<String>, Vec<u8>)>> {
        prop::collection::vec(
            (
                envelope_strategy().prop_map(Some),
                content_strategy(with_from),
            ),
            0..8,
        )
    }

    proptest! {
        #[test]
        fn mboxrd_round_trips(messages in messages_strategy(true)) {
            let joined = join(&messages, MboxFormat::Mboxrd);
            prop_assert_eq!(split_all(&joined, MboxFormat::Mboxrd), messages);
        }

        #[test]
        fn mboxo_round_trips_without_body_from_lines(messages in messages_strategy(false)) {
            let joined = join(&messages, MboxFormat::Mboxo);
            prop_assert_eq!(split_all(&joined, MboxFormat::Mboxo), messages);
        }

        /// Solaris-style mboxo: nothing quoted, a right `Content-Length`
        /// on every message, bodies full of unquoted From_ lines after
        /// blank lines and without final newlines: the lengths hold it
        /// together.
        #[test]
        fn mboxo_with_right_content_lengths_round_trips(
            messages in prop::collection::vec(
                (
                    envelope_strategy(),
                    prop::collection::vec(line_strategy(true), 0..6),
                    prop::collection::vec(line_strategy(true), 0..12),
                    prop::collection::vec(any::<u8>(), 0..5),
                ),
                0..6,
            )
        ) {
            let mut joined = Vec::new();
            let mut want = Vec::new();
            for (envelope, header, body, unterminated) in messages {
                let mut body: Vec<u8> = body.concat();
                body.extend_from_slice(&unterminated);
                if body.ends_with(b"\r") {
                    body.push(b'x');
                }
                let mut content = format!("Content-Length: {}\n", body.len()).into_bytes();
                for line in header.iter().filter(|l| l[0] != b'\n' && !l.starts_with(b"\r\n")) {
                    content.extend_from_slice(line);
                }
                content.push(b'\n');
                content.extend_from_slice(&body);
                joined.extend_from_slice(format!("From {envelope}\n").as_bytes());
                joined.extend_from_slice(&content);
                joined.push(b'\n');
                want.push((Some(envelope), content));
            }
            prop_assert_eq!(split_all(&joined, MboxFormat::Mboxo), want);
        }

        /// With `From ` lines in bodies, mboxo still keeps every message
        /// apart; those lines come back as `>From `.
        #[test]
        fn mboxo_keeps_messages_apart(messages in messages_strategy(true)) {
            let joined = join(&messages, MboxFormat::Mboxo);
            let got = split_all(&joined, MboxFormat::Mboxo);
            let want: Vec<_> = messages
                .iter()
                .map(|(envelope, content)| {
                    let mut quoted = Vec::new();
                    for line in content.split_inclusive(|&b| b == b'\n') {
                        if line.starts_with(b"From ") {
                            quoted.push(b'>');
                        }
                        quoted.extend_from_slice(line);
                    }
                    (envelope.clone(), quoted)
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
