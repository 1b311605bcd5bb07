//! Writing messages to an mbox: the From_ line, `>From` quoting and the
//! separator; the inverse of the splitter, used by delivery to mbox files.

use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memchr;

use super::from_line::is_from_line;
use crate::engine::civil::UtcTime;
use crate::engine::filing::MboxFormat;

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
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = UtcTime::from_unix(unix_seconds);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[t.weekday as usize],
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Bytes held back at a line start (a `>` run, the first bytes of
    /// `From `) are written when the content ends there: the last line of
    /// a message is never cut short.
    #[test]
    fn a_partial_from_at_the_end_of_the_content_is_written() {
        for end in ["Fro", ">>", ">Fr", "From", "F"] {
            let mut out = Vec::new();
            let content = format!("S: x\n\nbody\n{end}");
            let envelope = Some(&b"a@b Mon Jan  1 00:00:00 2001"[..]);
            write_message(&mut out, envelope, content.as_bytes(), MboxFormat::Mboxrd).unwrap();
            let want = format!("From a@b Mon Jan  1 00:00:00 2001\n{content}\n\n");
            assert_eq!(String::from_utf8(out).unwrap(), want, "{end:?}");
        }
    }

    /// Content that fails its first read with `kind`, then gives `data`.
    struct FailsOnce {
        kind: Option<io::ErrorKind>,
        data: &'static [u8],
    }

    impl Read for FailsOnce {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(kind) = self.kind.take() {
                return Err(io::Error::new(kind, "once"));
            }
            let n = self.data.len().min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// An interrupted read of the content is retried; any other read error
    /// fails the write (the append is then undone and the message kept),
    /// never skipped past.
    #[test]
    fn an_interrupted_read_is_retried_and_other_read_errors_fail() {
        let envelope = Some(&b"a@b Mon Jan  1 00:00:00 2001"[..]);
        let content = |kind| FailsOnce {
            kind: Some(kind),
            data: b"S: x\n\nbody\n",
        };
        let mut out = Vec::new();
        let interrupted = content(io::ErrorKind::Interrupted);
        write_message(&mut out, envelope, interrupted, MboxFormat::Mboxrd).unwrap();
        assert_eq!(out, b"From a@b Mon Jan  1 00:00:00 2001\nS: x\n\nbody\n\n");
        let broken = content(io::ErrorKind::Other);
        let err = write_message(&mut Vec::new(), envelope, broken, MboxFormat::Mboxrd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
    }

    #[test]
    fn asctime_matches_c() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(asctime(1_000_000_000), "Sun Sep  9 01:46:40 2001");
        assert_eq!(asctime(1_795_858_054), "Sat Nov 28 09:27:34 2026");
    }
}
