//! The splitter's input: a fixed read buffer over the reader, with offset
//! tracking, and a look far ahead (to check a `Content-Length`) that keeps
//! the bytes it passes in a spool until the buffer reaches them. Every input
//! byte is read once and moved at most twice (into the spool, then into the
//! buffer): the splitter's work is linear in its input whatever the lengths
//! claim.

use std::io::{self, Read, Seek, SeekFrom, Write};

use tempfile::SpooledTempFile;

/// Size of the read buffer.
pub(super) const BUFFER_SIZE: usize = 256 * 1024;

/// Memory the bytes read ahead may take before they spill to a temporary
/// file.
pub(super) const AHEAD_MEMORY: usize = 8 << 20;

/// How much is read from the input at once when reading ahead.
const AHEAD_CHUNK: usize = 64 * 1024;

/// Bytes read out of the spool after which its unread rest is moved to a
/// new one (when the rest is no bigger), so that a spool kept alive by one
/// look-ahead after another holds only what is still to be read.
const AHEAD_COMPACT_AT: u64 = 1 << 20;

/// An I/O failure before it is tagged with the message index and offset.
pub(super) enum Failure {
    Read(io::Error),
    Spool(io::Error),
}

/// Input bytes read ahead of the buffer: the spool's byte `read` is the
/// input byte just after the buffer's last.
struct Ahead {
    spool: SpooledTempFile,
    written: u64,
    read: u64,
}

/// The buffered input with look-ahead and offset tracking.
pub(super) struct Input<R> {
    inner: R,
    inner_done: bool,
    ahead: Option<Ahead>,
    pub(super) buf: Box<[u8]>,
    pub(super) start: usize,
    end: usize,
    /// Input offset of `buf[start]`.
    pub(super) offset: u64,
    /// The byte before `offset` (`\n` at the start).
    pub(super) last: u8,
    /// Bytes moved from the reader, the spool or the buffer in all: the
    /// measure of the splitter's work.
    pub(super) moved: u64,
}

impl<R: Read> Input<R> {
    pub(super) fn new(inner: R) -> Self {
        Input {
            inner,
            inner_done: false,
            ahead: None,
            buf: vec![0; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            last: b'\n',
            moved: 0,
        }
    }

    pub(super) fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Makes at least `n` bytes (at most the buffer size) available; false
    /// when the input ends first.
    pub(super) fn fill_to(&mut self, n: usize) -> Result<bool, Failure> {
        debug_assert!(n <= BUFFER_SIZE);
        while self.end - self.start < n {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.read_more()? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Moves more bytes into the buffer: from the spool while it holds
    /// some, else from the reader. 0 at the end of the input.
    fn read_more(&mut self) -> Result<usize, Failure> {
        if let Some(ahead) = &mut self.ahead {
            let want = ((ahead.written - ahead.read) as usize).min(self.buf.len() - self.end);
            let space = &mut self.buf[self.end..self.end + want];
            ahead
                .spool
                .seek(SeekFrom::Start(ahead.read))
                .and_then(|_| ahead.spool.read_exact(space))
                .map_err(Failure::Spool)?;
            ahead.read += want as u64;
            self.end += want;
            self.moved += want as u64;
            let unread = ahead.written - ahead.read;
            if unread == 0 {
                self.ahead = None;
            } else if ahead.read >= AHEAD_COMPACT_AT && ahead.read >= unread {
                let mut rest = SpooledTempFile::new(AHEAD_MEMORY);
                ahead
                    .spool
                    .seek(SeekFrom::Start(ahead.read))
                    .and_then(|_| io::copy(&mut (&mut ahead.spool).take(unread), &mut rest))
                    .map_err(Failure::Spool)?;
                *ahead = Ahead {
                    spool: rest,
                    written: unread,
                    read: 0,
                };
                self.moved += unread;
            }
            return Ok(want);
        }
        let space = &mut self.buf[self.end..];
        let n = read_retrying(&mut self.inner, space, &mut self.inner_done)?;
        self.end += n;
        self.moved += n as u64;
        Ok(n)
    }

    /// Moves past `n` available bytes.
    pub(super) fn consume(&mut self, n: usize) {
        if n > 0 {
            self.last = self.buf[self.start + n - 1];
        }
        self.start += n;
        self.offset += n as u64;
    }

    /// The input bytes from offset `at` (not before the current offset) on,
    /// `n` of them or fewer at the end of the input. Reads the input up to
    /// there, keeping what is past the buffer in the spool.
    pub(super) fn peek(&mut self, at: u64, n: usize) -> Result<Vec<u8>, Failure> {
        debug_assert!(at >= self.offset);
        let buffer_end = self.offset + (self.end - self.start) as u64;
        let wanted_end = at.saturating_add(n as u64);
        let mut chunk = Vec::new();
        while !self.inner_done && buffer_end + self.ahead_len() < wanted_end {
            chunk.resize(AHEAD_CHUNK, 0);
            let got = read_retrying(&mut self.inner, &mut chunk, &mut self.inner_done)?;
            if got == 0 {
                break;
            }
            let ahead = self.ahead.get_or_insert_with(|| Ahead {
                spool: SpooledTempFile::new(AHEAD_MEMORY),
                written: 0,
                read: 0,
            });
            ahead
                .spool
                .seek(SeekFrom::Start(ahead.written))
                .and_then(|_| ahead.spool.write_all(&chunk[..got]))
                .map_err(Failure::Spool)?;
            ahead.written += got as u64;
            self.moved += got as u64;
        }
        let mut bytes = Vec::with_capacity(n);
        if at < buffer_end {
            let from = self.start + (at - self.offset) as usize;
            let to = self.end.min(from.saturating_add(n));
            bytes.extend_from_slice(&self.buf[from..to]);
        }
        let from_spool = (wanted_end.min(buffer_end + self.ahead_len()))
            .saturating_sub(at.max(buffer_end)) as usize;
        if let (Some(ahead), true) = (&mut self.ahead, from_spool > 0) {
            let skip = at.saturating_sub(buffer_end);
            let old = bytes.len();
            bytes.resize(old + from_spool, 0);
            ahead
                .spool
                .seek(SeekFrom::Start(ahead.read + skip))
                .and_then(|_| ahead.spool.read_exact(&mut bytes[old..]))
                .map_err(Failure::Spool)?;
        }
        self.moved += bytes.len() as u64;
        Ok(bytes)
    }

    /// Bytes read ahead and not yet in the buffer.
    pub(super) fn ahead_len(&self) -> u64 {
        self.ahead.as_ref().map_or(0, |a| a.written - a.read)
    }

    /// Bytes the look-ahead spool holds, read or not.
    #[cfg(test)]
    pub(super) fn ahead_held(&self) -> u64 {
        self.ahead.as_ref().map_or(0, |a| a.written)
    }
}

/// One `read` that retries on EINTR and notes the end of the input.
fn read_retrying(
    inner: &mut impl Read,
    space: &mut [u8],
    done: &mut bool,
) -> Result<usize, Failure> {
    if *done {
        return Ok(0);
    }
    loop {
        match inner.read(space) {
            Ok(0) => {
                *done = true;
                return Ok(0);
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Read(e)),
        }
    }
}
