//! The splitter proper: where each message ends (see the [`super`] module
//! documentation for the rules).

use std::io::{self, Read};

use memchr::memchr;

use super::from_line::{from_line_len_in, strip_line_ending};
use super::input::{Failure, Input};
use super::{MAX_FROM_LINE, MAX_LENGTH_CHECKED, MAX_QUOTE_RUN};
use crate::engine::filing::MboxFormat;
use crate::engine::message::{Content, Message};

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
    /// Input offset where the message ends by a `Content-Length` that was
    /// checked and holds.
    cl_end: Option<u64>,
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

    /// The pending blank line turned out to be message text; if it ends
    /// the header, the body ends at `cl_end` (a length that holds) or by
    /// the From_ line rule (`None`).
    fn flush_blank(&mut self, cl_end: Option<u64>) -> Result<(), Failure> {
        if let Some((len, _)) = self.pending_blank.take() {
            self.append(&b"\r\n"[2 - len..])?;
            if self.in_header {
                self.in_header = false;
                self.cl_end = cl_end;
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

    /// Bytes the splitter has moved so far (read from the input, into and
    /// out of its look-ahead spool, looked at to check a length): its work,
    /// which stays within about twice the input's size.
    pub fn bytes_moved(&self) -> u64 {
        self.input.moved
    }

    /// Bytes its look-ahead spool holds now.
    #[cfg(test)]
    pub(super) fn ahead_held(&self) -> u64 {
        self.input.ahead_held()
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
                self.input.consume(len);
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
        };
        self.read_lines(&mut draft)?;
        if envelope.is_none() && !draft.saw_text {
            return Ok(Some(None));
        }
        // A message may wait in memory for a while: it keeps only its bytes.
        draft.content.shrink_to_fit();
        draft.header.shrink_to_fit();
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
            if draft.cl_end == Some(self.input.offset) {
                // The length holds: what follows is the separator line.
                draft.flush_blank(None)?;
                if let Some(Line::Blank(len)) = self.peek_blank()? {
                    self.input.consume(len);
                }
                return Ok(());
            }
            if draft.mid_line {
                self.copy_text(draft)?;
                continue;
            }
            let line = self.classify(draft)?;
            match line {
                Line::End => return Ok(()),
                Line::From
                    if draft.cl_end.is_none()
                        && (draft.pending_blank.is_some() || draft.first_line) =>
                {
                    // A body that starts with a From_ line may still be
                    // covered by the header's Content-Length.
                    let cl_end = self.header_end_length(draft)?;
                    if cl_end.is_none() {
                        return Ok(());
                    }
                    draft.flush_blank(cl_end)?;
                    continue;
                }
                _ if draft.pending_blank.is_some() => {
                    let cl_end = self.header_end_length(draft)?;
                    draft.flush_blank(cl_end)?;
                    continue;
                }
                _ => {}
            }
            draft.first_line = false;
            match line {
                Line::Blank(len) => {
                    self.input.consume(len);
                    draft.pending_blank = Some((len, self.input.offset));
                }
                Line::Quoted => {
                    self.input.consume(1);
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

    /// Where the body ends by the header's `Content-Length`, when the
    /// pending blank line ends the header, there is such a length, it is at
    /// most [`MAX_LENGTH_CHECKED`] and it holds; else `None`.
    fn header_end_length(&mut self, draft: &Draft) -> Result<Option<u64>, Failure> {
        let (Some((_, end)), true, Some(length)) =
            (draft.pending_blank, draft.in_header, draft.content_length)
        else {
            return Ok(None);
        };
        if length > MAX_LENGTH_CHECKED {
            return Ok(None);
        }
        debug_assert_eq!(end, self.input.offset);
        let cl_end = end + length;
        Ok(self.content_length_holds(cl_end)?.then_some(cl_end))
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
        self.input.consume(n);
        Ok(())
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

    /// Whether the input at `cl_end` (not before the current offset) is
    /// what a correct `Content-Length` leads to: the separator blank line,
    /// followed by the end or a From_ line. A length that ends between the
    /// CR and LF of a line ending is wrong.
    fn content_length_holds(&mut self, cl_end: u64) -> Result<bool, Failure> {
        let (before, bytes) = if cl_end == self.input.offset {
            (self.input.last, self.input.peek(cl_end, 2 + MAX_FROM_LINE)?)
        } else {
            let mut bytes = self.input.peek(cl_end - 1, 3 + MAX_FROM_LINE)?;
            if bytes.is_empty() {
                return Ok(false);
            }
            (bytes.remove(0), bytes)
        };
        let blank = if bytes.starts_with(b"\n") && before != b'\r' {
            1
        } else if bytes.starts_with(b"\r\n") {
            2
        } else {
            return Ok(false);
        };
        let after = &bytes[blank..];
        Ok(after.is_empty() || from_line_len_in(after).is_some())
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
