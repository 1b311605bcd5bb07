//! One message as the mbox splitter hands it to the filter and delivery:
//! its position in the input (for error reports and idempotent names), its
//! envelope, and its exact bytes, kept in memory when small and spilled to an
//! anonymous temporary file when large, so memory stays bounded (bounded-memory, docs/design.md).

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
    store: Store,
    len: u64,
}

/// Where a [`Content`]'s bytes are.
#[derive(Debug)]
enum Store {
    Memory(Vec<u8>),
    File(std::fs::File),
}

impl Content {
    /// In-memory size above which content spills to disk.
    pub const SPILL_AT: usize = 8 << 20;

    /// An empty content buffer.
    pub fn new() -> Content {
        Content {
            store: Store::Memory(Vec::new()),
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
        if let Store::Memory(held) = &mut self.store {
            if held.len() + bytes.len() > Self::SPILL_AT {
                let mut file = tempfile::tempfile()?;
                file.write_all(held)?;
                self.store = Store::File(file);
            }
        }
        match &mut self.store {
            Store::Memory(held) => held.extend_from_slice(bytes),
            Store::File(file) => file.write_all(bytes)?,
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// A reader over the whole content from its start.
    pub fn reader(&mut self) -> io::Result<impl Read + '_> {
        Ok(match &mut self.store {
            Store::Memory(held) => ContentReader::Memory(&held[..]),
            Store::File(file) => {
                file.seek(SeekFrom::Start(0))?;
                ContentReader::File(Read::take(file, self.len))
            }
        })
    }

    /// Copies the whole content into `out` (in one write when it is in memory).
    pub fn copy_to(&mut self, out: &mut dyn Write) -> io::Result<u64> {
        if let Store::Memory(held) = &self.store {
            out.write_all(held)?;
            return Ok(self.len);
        }
        io::copy(&mut self.reader()?, out)
    }

    /// Bytes held in memory (0 once spilled to a file).
    pub fn memory(&self) -> usize {
        match &self.store {
            Store::Memory(held) => held.capacity(),
            Store::File(_) => 0,
        }
    }

    /// Gives back the memory a growing buffer reserved beyond its bytes,
    /// once no more are coming.
    pub fn shrink_to_fit(&mut self) {
        if let Store::Memory(held) = &mut self.store {
            held.shrink_to_fit();
        }
    }
}

/// What [`Content::reader`] reads from.
enum ContentReader<'a> {
    Memory(&'a [u8]),
    File(io::Take<&'a mut std::fs::File>),
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ContentReader::Memory(bytes) => bytes.read(buf),
            ContentReader::File(file) => file.read(buf),
        }
    }
}

impl Default for Content {
    fn default() -> Self {
        Content::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(content: &mut Content) -> Vec<u8> {
        let mut bytes = Vec::new();
        content.reader().unwrap().read_to_end(&mut bytes).unwrap();
        let mut copied = Vec::new();
        assert_eq!(content.copy_to(&mut copied).unwrap(), content.len());
        assert_eq!(copied, bytes, "copy_to and reader agree");
        bytes
    }

    #[test]
    fn small_content_stays_in_memory_and_shrinks() {
        let mut content = Content::new();
        content.extend(b"Subject: x\n\n").unwrap();
        content.extend(b"body\n").unwrap();
        assert!(matches!(content.store, Store::Memory(_)));
        assert_eq!(read_all(&mut content), b"Subject: x\n\nbody\n");
        content.extend(&[b'x'; 5000]).unwrap();
        content.extend(b"!").unwrap();
        assert!(content.memory() > 5018, "{}", content.memory());
        content.shrink_to_fit();
        assert_eq!(content.memory(), 5018);
        assert_eq!(content.len(), 5018);
    }

    #[test]
    fn large_content_spills_to_a_file_intact() {
        let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        let mut content = Content::new();
        for _ in 0..9 {
            content.extend(&chunk).unwrap();
        }
        assert!(
            matches!(content.store, Store::File(_)),
            "spilled past 8 MiB"
        );
        let all = read_all(&mut content);
        assert_eq!(all.len(), 9 << 20);
        assert!(all.chunks(1 << 20).all(|c| c == chunk));
        assert_eq!(content.memory(), 0);
    }
}
