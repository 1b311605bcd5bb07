//! The splitter's input: a fixed read buffer over the reader, with
//! offset tracking, the tail of bytes recorded while a `Content-Length` is
//! checked, and pushback to read such bytes again.

use std::io::{self, Read, Seek, SeekFrom, Write};

use tempfile::SpooledTempFile;

/// Size of the read buffer.
pub(super) const BUFFER_SIZE: usize = 256 * 1024;

/// Memory that pushed-back bytes may take in all before they spill to disk.
pub(super) const PUSHBACK_MEMORY: usize = 8 << 20;

/// An I/O failure before it is tagged with the message index and offset.
pub(super) enum Failure {
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
pub(super) struct Tail {
    spool: SpooledTempFile,
    memory: usize,
    /// Input offset of its first byte.
    offset: u64,
    len: u64,
}

/// The buffered input with pushback and offset tracking.
pub(super) struct Input<R> {
    inner: R,
    inner_done: bool,
    pushback: Vec<Pushback>,
    pushback_memory: usize,
    pub(super) buf: Box<[u8]>,
    pub(super) start: usize,
    end: usize,
    /// Input offset of `buf[start]`.
    pub(super) offset: u64,
    /// The byte before `offset` (`\n` at the start).
    pub(super) last: u8,
    pub(super) tail: Option<Tail>,
}

impl<R: Read> Input<R> {
    pub(super) fn new(inner: R) -> Self {
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
    pub(super) fn consume(&mut self, n: usize) -> Result<(), Failure> {
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
    pub(super) fn start_tail(&mut self) {
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
    pub(super) fn push_back_tail(&mut self) -> Result<(), Failure> {
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
