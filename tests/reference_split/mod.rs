//! A slow, obviously correct mbox splitter to check `MboxSplitter` against:
//! the whole input in memory, cut into lines, and each rule of the
//! `engine::mbox` module documentation applied by looking at the bytes
//! directly (no buffer, no look-ahead spool, no state machine). Used by
//! tests/split_reference.rs and by the fuzz target `split_reference`.
//! Only `is_from_line` (the grammar of one line, tested on its own) is
//! shared with the product.

use mailhaul::engine::filing::MboxFormat;
use mailhaul::engine::mbox::{is_from_line, MAX_FROM_LINE, MAX_LENGTH_CHECKED, MAX_QUOTE_RUN};
use mailhaul::engine::message::Message;

/// One message as the reference splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefMessage {
    /// Byte offset of its From_ line (0 for text before the first one).
    pub offset: u64,
    /// The From_ line after `From `, without its line ending.
    pub envelope: Option<Vec<u8>>,
    /// The header section as filter rules see it.
    pub header: Vec<u8>,
    /// The message's bytes.
    pub content: Vec<u8>,
}

/// The end (just past its `\n`, or the input's end) of the line at `at`.
fn line_end(input: &[u8], at: usize) -> usize {
    input[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |i| at + i + 1)
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The length of the From_ line starting at `at`: at most MAX_FROM_LINE
/// bytes with its `\n` (a last line without one: shorter than that).
fn from_line_at(input: &[u8], at: usize) -> Option<usize> {
    let line = &input[at..line_end(input, at)];
    let fits = if line.ends_with(b"\n") {
        line.len() <= MAX_FROM_LINE
    } else {
        line.len() < MAX_FROM_LINE
    };
    (fits && is_from_line(strip_line_ending(line))).then_some(line.len())
}

/// The value of a `Content-Length:` header line at `at`, if the line (with
/// its `\n`) is at most 128 bytes and the value is a number.
fn content_length_at(input: &[u8], at: usize) -> Option<u64> {
    const NAME: &[u8] = b"content-length:";
    let end = line_end(input, at);
    let line = &input[at..end];
    if !line.ends_with(b"\n") || line.len() > 128 {
        return None;
    }
    let line = strip_line_ending(line);
    if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return None;
    }
    std::str::from_utf8(&line[NAME.len()..])
        .ok()?
        .trim_matches([' ', '\t'])
        .parse()
        .ok()
}

/// Whether a length ending at `cl_end` holds: a blank line there (not the
/// LF of a CRLF), then the end of the input or a From_ line.
fn length_holds(input: &[u8], cl_end: usize) -> Option<usize> {
    let rest = input.get(cl_end..)?;
    let blank = if rest.starts_with(b"\n") && input[cl_end - 1] != b'\r' {
        1
    } else if rest.starts_with(b"\r\n") {
        2
    } else {
        return None;
    };
    let after = cl_end + blank;
    (after == input.len() || from_line_at(input, after).is_some()).then_some(blank)
}

/// Whether the line at `at` is quoted under mboxrd: 1 to MAX_QUOTE_RUN `>`
/// and then `From `.
fn is_quoted(input: &[u8], at: usize) -> bool {
    let run = input[at..].iter().take_while(|&&b| b == b'>').count();
    (1..=MAX_QUOTE_RUN).contains(&run) && input[at + run..].starts_with(b"From ")
}

/// Splits `input` as the module documentation of `engine::mbox` says.
pub fn split(input: &[u8], format: MboxFormat) -> Vec<RefMessage> {
    let mut messages = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let start = pos;
        let (envelope, body) = match from_line_at(input, pos) {
            Some(len) => (
                Some(strip_line_ending(&input[pos..pos + len])[5..].to_vec()),
                pos + len,
            ),
            None => {
                assert_eq!(pos, 0, "a message starts at a From_ line");
                (None, pos)
            }
        };
        // The lines of the rest of the input, up to the first boundary: a
        // From_ line right after the envelope, or after a blank line of
        // this message.
        let mut lines: Vec<(usize, usize)> = Vec::new();
        let mut boundary = None;
        let mut at = body;
        while at < input.len() && boundary.is_none() {
            let first = lines.is_empty() && envelope.is_some();
            let after_blank = lines.last().is_some_and(|&(s, e)| is_blank(&input[s..e]));
            if (first || after_blank) && from_line_at(input, at).is_some() {
                boundary = Some(lines.len());
            }
            let end = line_end(input, at);
            lines.push((at, end));
            at = end;
        }
        let blank = |i: usize| is_blank(&input[lines[i].0..lines[i].1]);
        // The first blank line ends the header; its Content-Length is the
        // first header line's that is a number.
        let header_blank = (0..lines.len()).find(|&i| blank(i));
        let header_lines = header_blank.unwrap_or(lines.len());
        let content_length = (0..header_lines)
            .filter(|&i| matches!(input[lines[i].0], b'C' | b'c'))
            .find_map(|i| content_length_at(input, lines[i].0));
        // A length counts when the header ends (a line follows its blank
        // line), it is small enough, and it holds.
        let trusted = match (header_blank, content_length) {
            (Some(h), Some(n)) if h + 1 < lines.len() && n <= MAX_LENGTH_CHECKED => {
                let cl_end = lines[h].1 + n as usize;
                length_holds(input, cl_end).map(|blank| (cl_end, cl_end + blank))
            }
            _ => None,
        };
        // A trusted length may reach past the first boundary.
        if let Some((cl_end, _)) = trusted {
            while at < cl_end {
                let end = line_end(input, at);
                lines.push((at, end));
                at = end;
            }
        }
        let (content_end, next) = match (trusted, boundary) {
            // A From_ line right after the envelope: an empty message.
            (_, Some(0)) => (body, body),
            (Some((cl_end, next)), _) => (cl_end, next),
            (None, Some(i)) => (lines[i - 1].0, lines[i].0),
            (None, None) => match lines.last() {
                Some(&(s, e)) if is_blank(&input[s..e]) => (s, input.len()),
                _ => (input.len(), input.len()),
            },
        };
        pos = next;
        // Text before the first From_ line that is only blank lines is no
        // message.
        let text = lines
            .iter()
            .take_while(|l| l.0 < content_end)
            .any(|&(s, e)| !is_blank(&input[s..e]));
        if envelope.is_none() && !text {
            continue;
        }
        let mut content = Vec::new();
        for &(s, e) in lines.iter().take_while(|l| l.0 < content_end) {
            let drop = format == MboxFormat::Mboxrd && is_quoted(input, s);
            content.extend_from_slice(&input[s + usize::from(drop)..e.min(content_end)]);
        }
        let header_len = content
            .split_inclusive(|&b| b == b'\n')
            .scan(0, |len, line| {
                *len += line.len();
                Some((*len, is_blank(line)))
            })
            .find(|&(_, blank)| blank)
            .map_or(content.len(), |(len, _)| len);
        let header = content[..header_len.min(Message::HEADER_CAP)].to_vec();
        messages.push(RefMessage {
            offset: start as u64,
            envelope,
            header,
            content,
        });
    }
    messages
}
