//! Reading a message the way sendmail does: from a stream, with `-t`
//! (recipients from the headers), `-i` (a line of a lone dot is data) and
//! Bcc removed, in bounded memory whatever the message's size.
//!
//! Line ends are normalised to LF (CRLF input from a Windows-made file or an
//! SMTP-minded client becomes the Unix form the server's sendmail expects);
//! every other byte, 8-bit included, passes unchanged. Input that is not
//! RFC 5322 (no header block) is queued as it is, as sendmail does, provided
//! there are recipients.

use std::io::Read;

/// Bytes of header block kept in memory at most; a longer block is passed
/// on unparsed (with `-t` that means no recipients from it).
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

/// sendmail's options that shape how the message is read and addressed.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// `-t`: take recipients from To, Cc and Bcc (added to `recipients`, as
    /// Postfix does).
    pub extract_recipients: bool,
    /// `-i`/`-oi`: a line with a lone `.` is data, not the end of input.
    pub ignore_dots: bool,
    /// `-f`/`-r`: the envelope sender.
    pub sender: Option<String>,
    /// `-F`: the full name for a From: header the server's sendmail adds.
    pub full_name: Option<String>,
    /// Recipients given as arguments (each may be a comma-separated list).
    pub recipients: Vec<String>,
}

/// Who the message goes to and comes from, as handed to the server's
/// `sendmail -f FROM -F NAME -- RCPT...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Envelope sender (`-f`); `None`: the server's default (the login).
    pub sender: Option<String>,
    /// Full name (`-F`).
    pub full_name: Option<String>,
    /// The recipients, each one address.
    pub recipients: Vec<String>,
}

/// Why a message is refused before anything is queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Nothing to send it to (sendmail's EX_USAGE).
    #[error("no recipients: give them as arguments, or use -t to take them from To/Cc/Bcc")]
    NoRecipients,
    /// An address or name holds a line break or NUL, which no sendmail
    /// command line can carry (EX_DATAERR).
    #[error("{what} {value:?} holds a line break or NUL")]
    BadAddress {
        /// `recipient`, `sender` or `full name`.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// Reading the input failed (EX_IOERR).
    #[error("reading the message: {0}")]
    Read(#[source] std::io::Error),
}

/// A message whose header block has been read: its envelope is known, the
/// rest of the input is still to be streamed (see [`Submission::copy_rest`]).
pub struct Submission<R: Read> {
    input: R,
    normalizer: Normalizer,
    /// The header block as it will be written (Bcc removed), then whatever
    /// of the body was read with it.
    pub(crate) head: Vec<u8>,
    /// The envelope.
    pub envelope: Envelope,
    /// The address of the From: header, if any (for choosing an account).
    pub header_from: Option<String>,
    ended: bool,
}

impl<R: Read> Submission<R> {
    /// Reads the header block from `input` and works out the envelope.
    pub fn begin(mut input: R, options: &SubmitOptions) -> Result<Submission<R>, SubmitError> {
        let mut normalizer = Normalizer::new(!options.ignore_dots);
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut ended = false;
        let header_end = loop {
            if let Some(end) = header_block_end(&raw) {
                break Some(end);
            }
            if ended || raw.len() > MAX_HEADER_BLOCK {
                break None;
            }
            let n = read_retrying(&mut input, &mut buf).map_err(SubmitError::Read)?;
            if n == 0 {
                normalizer.finish(&mut raw);
                ended = true;
            } else {
                ended = normalizer.feed(&buf[..n], &mut raw);
            }
        };
        let (headers, fields) = match header_end {
            Some(end) => {
                let fields = header_fields(&raw[..end]);
                (end, fields)
            }
            None if ended => {
                let fields = header_fields(&raw);
                (raw.len(), fields)
            }
            None => (0, Vec::new()),
        };
        let mut recipients = Vec::new();
        for arg in &options.recipients {
            recipients.extend(argument_addresses(arg));
        }
        let mut header_from = None;
        for (name, value) in &fields {
            let name = name.to_ascii_lowercase();
            if options.extract_recipients && matches!(name.as_str(), "to" | "cc" | "bcc") {
                recipients.extend(addresses(value));
            }
            if name == "from" && header_from.is_none() {
                header_from = addresses(value).into_iter().next();
            }
        }
        let mut seen = std::collections::HashSet::new();
        recipients.retain(|r| seen.insert(r.to_ascii_lowercase()));
        if recipients.is_empty() {
            return Err(SubmitError::NoRecipients);
        }
        for r in &recipients {
            check_line_free("recipient", r)?;
        }
        if let Some(s) = &options.sender {
            check_line_free("sender", s)?;
        }
        if let Some(n) = &options.full_name {
            check_line_free("full name", n)?;
        }
        let mut head = strip_bcc(&raw[..headers]);
        head.extend_from_slice(&raw[headers..]);
        Ok(Submission {
            input,
            normalizer,
            head,
            envelope: Envelope {
                sender: options.sender.clone().filter(|s| !s.is_empty()),
                full_name: options.full_name.clone().filter(|n| !n.is_empty()),
                recipients,
            },
            header_from,
            ended,
        })
    }

    /// Writes the message (header block, then the rest of the input,
    /// normalised) to `out`, returning its size.
    pub fn copy_rest(mut self, out: &mut impl std::io::Write) -> std::io::Result<u64> {
        out.write_all(&self.head)?;
        let mut total = self.head.len() as u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut normalized = Vec::with_capacity(buf.len() + 2);
        while !self.ended {
            normalized.clear();
            let n = read_retrying(&mut self.input, &mut buf)?;
            if n == 0 {
                self.normalizer.finish(&mut normalized);
                self.ended = true;
            } else {
                self.ended = self.normalizer.feed(&buf[..n], &mut normalized);
            }
            out.write_all(&normalized)?;
            total += normalized.len() as u64;
        }
        Ok(total)
    }
}

fn read_retrying(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn check_line_free(what: &'static str, value: &str) -> Result<(), SubmitError> {
    if value.bytes().any(|b| matches!(b, b'\n' | b'\r' | 0)) {
        return Err(SubmitError::BadAddress {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Where the header block ends (just past its last header line, before the
/// empty line), if the input so far holds its end. An input whose first
/// line is not a header field has an empty header block.
fn header_block_end(data: &[u8]) -> Option<usize> {
    let first_line_end = memchr::memchr(b'\n', data)?;
    if !is_field_start(&data[..first_line_end]) {
        return Some(0);
    }
    let mut start = first_line_end + 1;
    loop {
        let end = start + memchr::memchr(b'\n', &data[start..])?;
        let line = &data[start..end];
        if line.is_empty() {
            return Some(start);
        }
        if !(line[0] == b' ' || line[0] == b'\t' || is_field_start(line)) {
            // Not a header line: the block ends here (the rest is body).
            return Some(start);
        }
        start = end + 1;
    }
}

/// Whether `line` starts a header field: a name of printable ASCII
/// without spaces, then a colon.
fn is_field_start(line: &[u8]) -> bool {
    match memchr::memchr(b':', line) {
        Some(colon) if colon > 0 => line[..colon].iter().all(|&b| (33..=126).contains(&b)),
        _ => false,
    }
}

/// The (name, unfolded value) of each field of a header block.
fn header_fields(block: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in block.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        if let Some(colon) = memchr::memchr(b':', line) {
            fields.push((
                String::from_utf8_lossy(&line[..colon]).trim().to_string(),
                String::from_utf8_lossy(&line[colon + 1..])
                    .trim()
                    .to_string(),
            ));
        }
    }
    fields
}

/// The header block without Bcc fields (and their continuation lines):
/// blind copies stay blind, whether or not `-t` was given (Postfix's
/// cleanup does the same).
fn strip_bcc(block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len());
    let mut skipping = false;
    for line in block.split_inclusive(|&b| b == b'\n') {
        let continuation = line[0] == b' ' || line[0] == b'\t';
        if !continuation {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out
}

/// The recipients of one command-line argument: taken verbatim (shell
/// metacharacters, leading dashes and all), unless it holds a comma or an
/// angle bracket, when it is read as an address list as sendmail does.
pub fn argument_addresses(arg: &str) -> Vec<String> {
    let arg = arg.trim();
    if arg.contains([',', '<']) {
        addresses(arg)
    } else if arg.is_empty() {
        Vec::new()
    } else {
        vec![arg.to_string()]
    }
}

/// The addr-specs of an address list (`"A" <a@x>, b@y, group: c@z;`), as
/// mailparse reads them; a value it cannot parse is taken as one address
/// when it has no spaces, commas or angle brackets, else dropped.
pub fn addresses(list: &str) -> Vec<String> {
    let list = list.trim();
    if list.is_empty() {
        return Vec::new();
    }
    match mailparse::addrparse(list) {
        Ok(parsed) => {
            let mut out = Vec::new();
            for a in parsed.iter() {
                match a {
                    mailparse::MailAddr::Single(s) => out.push(s.addr.clone()),
                    mailparse::MailAddr::Group(g) => {
                        out.extend(g.addrs.iter().map(|s| s.addr.clone()))
                    }
                }
            }
            out.retain(|a| !a.is_empty());
            out
        }
        Err(_) if !list.contains([' ', ',', '<', '>']) => vec![list.to_string()],
        Err(_) => Vec::new(),
    }
}

/// CRLF to LF, and (without `-i`) the end of input at a line holding only
/// a dot, over a stream cut anywhere.
struct Normalizer {
    stop_at_dot: bool,
    at_line_start: bool,
    /// A CR seen last, not written yet (it may be the CR of a CRLF).
    pending_cr: bool,
    /// A dot at the start of a line seen last, not written yet.
    pending_dot: bool,
    done: bool,
}

impl Normalizer {
    fn new(stop_at_dot: bool) -> Normalizer {
        Normalizer {
            stop_at_dot,
            at_line_start: true,
            pending_cr: false,
            pending_dot: false,
            done: false,
        }
    }

    /// Appends the normalised form of `data` to `out`; true once the end
    /// of the message (a lone dot line) has been seen.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in data {
            if self.done {
                break;
            }
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.end_line(out);
                    continue;
                }
                self.flush_dot(out);
                out.push(b'\r');
                self.at_line_start = false;
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => self.end_line(out),
                b'.' if self.stop_at_dot && self.at_line_start && !self.pending_dot => {
                    self.pending_dot = true;
                }
                _ => {
                    self.flush_dot(out);
                    out.push(b);
                    self.at_line_start = false;
                }
            }
        }
        self.done
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        if self.pending_dot && self.at_line_start {
            self.pending_dot = false;
            self.done = true;
            return;
        }
        self.flush_dot(out);
        out.push(b'\n');
        self.at_line_start = true;
    }

    fn flush_dot(&mut self, out: &mut Vec<u8>) {
        if self.pending_dot {
            out.push(b'.');
            self.pending_dot = false;
            self.at_line_start = false;
        }
    }

    /// End of input: writes what is held back.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.pending_dot {
            // A lone dot at the very end, without a line end, ends the
            // message as a dot line would.
            self.pending_dot = false;
            if self.pending_cr {
                self.pending_cr = false;
            }
            self.done = true;
            return;
        }
        if self.pending_cr {
            out.push(b'\r');
            self.pending_cr = false;
        }
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(input: &[u8], options: &SubmitOptions) -> (Envelope, Vec<u8>) {
        let sub = Submission::begin(input, options).unwrap();
        let env = sub.envelope.clone();
        let mut out = Vec::new();
        let n = sub.copy_rest(&mut out).unwrap();
        assert_eq!(n as usize, out.len());
        (env, out)
    }

    fn t() -> SubmitOptions {
        SubmitOptions {
            extract_recipients: true,
            ignore_dots: true,
            ..SubmitOptions::default()
        }
    }

    #[test]
    fn dash_t_takes_to_cc_bcc_and_removes_bcc() {
        let msg = b"From: Me <me@x.org>\nTo: A <a@x.org>, b@y.org\nBcc: secret@z.org,\n  other@z.org\nCc: \"C, D\" <c@w.org>\nSubject: hi\n\nBcc: in the body stays\n";
        let (env, out) = submit(msg, &t());
        assert_eq!(
            env.recipients,
            [
                "a@x.org",
                "b@y.org",
                "secret@z.org",
                "other@z.org",
                "c@w.org"
            ]
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: Me <me@x.org>\nTo: A <a@x.org>, b@y.org\nCc: \"C, D\" <c@w.org>\nSubject: hi\n\nBcc: in the body stays\n"
        );
    }

    #[test]
    fn no_recipients_is_refused() {
        let r = Submission::begin(&b"Subject: x\n\nbody\n"[..], &t());
        assert!(matches!(r, Err(SubmitError::NoRecipients)));
        let r = Submission::begin(&b"To: a@b\n\nbody\n"[..], &SubmitOptions::default());
        assert!(matches!(r, Err(SubmitError::NoRecipients)));
    }

    #[test]
    fn arguments_add_to_header_recipients_once_each() {
        let opts = SubmitOptions {
            recipients: vec![
                "-dash@x.org".into(),
                "a@x.org, B <b@y.org>".into(),
                "$(touch /tmp/x);'@y".into(),
            ],
            ..t()
        };
        let (env, _) = submit(b"To: A@x.org\n\nhi\n", &opts);
        assert_eq!(
            env.recipients,
            ["-dash@x.org", "a@x.org", "b@y.org", "$(touch /tmp/x);'@y"]
        );
    }

    #[test]
    fn crlf_becomes_lf_and_8bit_passes() {
        let msg = b"To: a@b.c\r\nSubject: caf\xc3\xa9\r\n\r\nline\r\nlone\rcr\r\n\xff\xfe\r\n";
        let (env, out) = submit(msg, &t());
        assert_eq!(env.recipients, ["a@b.c"]);
        assert_eq!(
            out,
            b"To: a@b.c\nSubject: caf\xc3\xa9\n\nline\nlone\rcr\n\xff\xfe\n".to_vec()
        );
    }

    #[test]
    fn a_lone_dot_ends_input_without_dash_i_only() {
        let msg = b"To: a@b.c\n\none\n..two\n.\nafter\n";
        let opts = SubmitOptions {
            ignore_dots: false,
            ..t()
        };
        let (_, out) = submit(msg, &opts);
        assert_eq!(out, b"To: a@b.c\n\none\n..two\n".to_vec());
        let (_, out) = submit(msg, &t());
        assert_eq!(out, msg.to_vec());
        // Fed one byte at a time, with CRLF, the same.
        let mut n = Normalizer::new(true);
        let mut out = Vec::new();
        for b in b"a\r\n.b\r\n.\r\nrest" {
            if n.feed(&[*b], &mut out) {
                break;
            }
        }
        assert_eq!(out, b"a\n.b\n".to_vec());
    }

    #[test]
    fn input_without_headers_is_kept_as_is() {
        let opts = SubmitOptions {
            recipients: vec!["a@b.c".into()],
            ..t()
        };
        let msg = b"just some text\nBcc: not a header here\n";
        let (env, out) = submit(msg, &opts);
        assert_eq!(env.recipients, ["a@b.c"]);
        assert_eq!(out, msg.to_vec());
    }

    #[test]
    fn line_breaks_in_addresses_are_refused() {
        let opts = SubmitOptions {
            recipients: vec!["a@b.c".into()],
            sender: Some("x@y\nRCPT TO:<evil>".into()),
            ..SubmitOptions::default()
        };
        let r = Submission::begin(&b"To: a@b.c\n\n"[..], &opts);
        assert!(matches!(
            r,
            Err(SubmitError::BadAddress { what: "sender", .. })
        ));
    }
}
