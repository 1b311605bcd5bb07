//! One message as the mbox splitter hands it to the filter and delivery:
//! its position in the input (for error reports and idempotent names), its
//! envelope, and its exact bytes, kept in memory when small and spilled to an
//! anonymous temporary file when large, so memory stays bounded (I4).

use std::io::{self, Read, Seek, SeekFrom, Write};

/// A message split out of an mbox.
#[derive(Debug)]
pub struct Message {
    /// 1-based position in the input.
    pub index: u64,
    /// Byte offset of the message's first byte (its From_ line, if any) in the input.
    pub offset: u64,
    /// The From_ line's content after `From ` (sender and date), without the
    /// line ending; `None` when the input did not start with a From_ line.
    pub envelope: Option<Vec<u8>>,
    /// The header section (up to and including the blank line, or everything
    /// if there is no blank line), capped at [`Message::HEADER_CAP`] bytes;
    /// this is what filter rules look at.
    pub header: Vec<u8>,
    /// The message's bytes, exactly as delivered: headers and body, with
    /// mboxrd quoting undone if the source is mboxrd.
    pub content: Content,
}

impl Message {
    /// How much of the header section is kept in memory for filtering.
    pub const HEADER_CAP: usize = 4 << 20;
}

/// The bytes of one message: in memory up to a threshold, then in an
/// unlinked temporary file.
#[derive(Debug)]
pub struct Content {
    inner: tempfile::SpooledTempFile,
    len: u64,
}

impl Content {
    /// In-memory size above which content spills to disk.
    pub const SPILL_AT: usize = 8 << 20;

    /// An empty content buffer.
    pub fn new() -> Content {
        Content {
            inner: tempfile::SpooledTempFile::new(Self::SPILL_AT),
            len: 0,
        }
    }

    /// Number of bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the message has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes.
    pub fn extend(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// A reader over the whole content from its start.
    pub fn reader(&mut self) -> io::Result<impl Read + '_> {
        self.inner.seek(SeekFrom::Start(0))?;
        Ok((&mut self.inner).take(self.len))
    }

    /// Copies the whole content into `out`.
    pub fn copy_to(&mut self, out: &mut dyn Write) -> io::Result<u64> {
        io::copy(&mut self.reader()?, out)
    }

    /// Drops everything from byte `at` on.
    pub fn truncate(&mut self, at: u64) -> io::Result<()> {
        if at < self.len {
            self.inner.set_len(at)?;
            self.len = at;
            self.inner.seek(SeekFrom::End(0))?;
        }
        Ok(())
    }
}

impl Default for Content {
    fn default() -> Self {
        Content::new()
    }
}
