//! Differential: the mbox splitter against the slow, obviously correct
//! reference in tests/reference_split (the same one `cargo test` runs), on
//! any bytes, in both dialects, read whole and in 7-byte pieces.
#![no_main]

#[path = "../../tests/reference_split/mod.rs"]
mod reference_split;

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use mailhaul::engine::filing::MboxFormat;
use mailhaul::engine::mbox::MboxSplitter;
use reference_split::RefMessage;

struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(self.1).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn product(input: &[u8], format: MboxFormat, chunk: usize) -> Vec<RefMessage> {
    MboxSplitter::new(Trickle(input, chunk), format)
        .map(|m| {
            let mut m = m.expect("reading a slice cannot fail");
            let mut content = Vec::new();
            m.content.copy_to(&mut content).unwrap();
            RefMessage {
                offset: m.offset,
                envelope: m.envelope,
                header: m.header,
                content,
            }
        })
        .collect()
}

fuzz_target!(|input: &[u8]| {
    for format in [MboxFormat::Mboxo, MboxFormat::Mboxrd] {
        let want = reference_split::split(input, format);
        assert_eq!(product(input, format, usize::MAX), want, "{format:?}");
        assert_eq!(product(input, format, 7), want, "{format:?}, 7-byte reads");
    }
});
