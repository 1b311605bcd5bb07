//! The splitter against a slow, obviously correct reference
//! (tests/reference_split): generated mboxes full of the cases that matter
//! (From_ lines with and without a blank line before them, CRLF, quoting,
//! right, wrong and boundary-landing `Content-Length`s, lines cut short),
//! the committed sample spool and, when present, the shared corpus. The fuzz
//! target `split_reference` (fuzz/) runs the same comparison on fuzzed
//! input; each difference it found is a case here.

mod reference_split;

use std::io::Read;
use std::path::{Path, PathBuf};

use mailhaul::engine::filing::MboxFormat;
use mailhaul::engine::mbox::MboxSplitter;
use proptest::prelude::*;
use reference_split::RefMessage;

/// What MboxSplitter makes of `input`, read `chunk` bytes at a time.
fn product(input: &[u8], format: MboxFormat, chunk: usize) -> Vec<RefMessage> {
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    MboxSplitter::new(Trickle(input, chunk), format)
        .map(|m| {
            let mut m = m.unwrap();
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

fn assert_same(input: &[u8], format: MboxFormat) {
    let want = reference_split::split(input, format);
    for chunk in [usize::MAX, 1, 7] {
        let got = product(input, format, chunk);
        assert_eq!(
            got,
            want,
            "{format:?}, {chunk}-byte reads, input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// Pieces of mbox text; `{L}` is replaced by a length that is right for
/// the message it is in, one off, or lands on a later boundary.
const PIECES: &[&str] = &[
    "From a@b Mon Jan  1 00:00:00 2001\n",
    "From a@b Mon Jan  1 00:00:00 2001\r\n",
    "From user@[192.0.2.1] [relay]  Sun Aug  5 09:51:15 2001\n",
    "From a@b  Fri, 8 Jul 2011 12:08:34 +0200\n",
    "From here on\n",
    "\n",
    "\n",
    "\r\n",
    "\r",
    "Subject: x\n",
    "Content-Length: 0\n",
    "Content-Length: 5\n",
    "Content-Length: 12\n",
    "Content-Length: 999999999\n",
    "content-length:\t7 \r\n",
    ">From quoted\n",
    ">>From twice\n",
    "body\n",
    "body",
    "x\r\n",
    "F",
];

fn mbox_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(PIECES.to_vec()), 0..40)
        .prop_map(|pieces| pieces.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn splitter_agrees_with_the_reference(input in mbox_strategy()) {
        for format in [MboxFormat::Mboxo, MboxFormat::Mboxrd] {
            assert_same(&input, format);
        }
    }

    /// Messages with right lengths, and then one byte cut or added.
    #[test]
    fn right_and_nearly_right_lengths_agree(
        bodies in prop::collection::vec(prop::collection::vec(prop::sample::select(PIECES.to_vec()), 0..8), 1..5),
        skew in prop::collection::vec(-2i64..=2, 5),
    ) {
        let mut input = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let body = body.concat();
            let length = (body.len() as i64 + skew[i]).max(0);
            input.extend_from_slice(
                format!("From a@b Mon Jan  1 00:00:00 2001\nContent-Length: {length}\n\n{body}\n").as_bytes(),
            );
        }
        for format in [MboxFormat::Mboxo, MboxFormat::Mboxrd] {
            assert_same(&input, format);
        }
    }
}

/// Edge cases written with the reference. A difference or crash the fuzz
/// targets find is added here (none in the 10 million runs of
/// docs/reliability.md).
#[test]
fn known_cases_agree() {
    let cases: &[&[u8]] = &[
        b"",
        b"\n\n\r\n",
        b"From a@b Mon Jan  1 00:00:00 2001\nFrom b@c Mon Jan  1 00:00:00 2001\n",
        b"From a@b Mon Jan  1 00:00:00 2001\nContent-Length: 3\n\nabc\nFrom b@c Mon Jan  1 00:00:00 2001\n",
        b"From a@b Mon Jan  1 00:00:00 2001\r\nContent-Length: 1\r\n\r\nx\r\n\r\nFrom b Mon Jan  1 00:00:00 2001\r\n",
        b"From a@b Mon Jan  1 00:00:00 2001\nContent-Length: 0\n\nFrom b Mon Jan  1 00:00:00 2001\n",
        b"stray\n\nFrom a@b Mon Jan  1 00:00:00 2001\n>From x\n",
    ];
    for case in cases {
        for format in [MboxFormat::Mboxo, MboxFormat::Mboxrd] {
            assert_same(case, format);
        }
    }
}

#[test]
fn real_mail_agrees() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("assets/sample-spool.mbox")];
    let corpus = std::env::var_os("MAILHAUL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/corpus"));
    match std::fs::read_dir(&corpus) {
        Ok(entries) => {
            let mut names: Vec<PathBuf> = entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "mbox"))
                .collect();
            names.sort();
            files.extend(names);
        }
        Err(_) => eprintln!(
            "SKIPPED for the corpus (not at {}); the sample spool is checked",
            corpus.display()
        ),
    }
    for file in files {
        let input = std::fs::read(&file).unwrap();
        for format in [MboxFormat::Mboxo, MboxFormat::Mboxrd] {
            let want = reference_split::split(&input, format);
            let got = product(&input, format, usize::MAX);
            assert_eq!(got.len(), want.len(), "{}", file.display());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    g,
                    w,
                    "{} {format:?}: message at {}",
                    file.display(),
                    w.offset
                );
            }
        }
    }
}
