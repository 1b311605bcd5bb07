//! The splitter against real mail: every message of the shared corpus (when
//! present) and of the committed sample spool must come out byte-exact, in
//! order, as their manifests' md5 sums say.

use std::fs::File;
use std::path::{Path, PathBuf};

use mailhaul::engine::filing::MboxFormat;
use mailhaul::engine::mbox::{is_from_line, MboxSplitter};
use md5::{Digest, Md5};

/// The md5 (hex) of every message of the mbox at `path`, split as mboxrd.
fn split_md5s(path: &Path) -> Vec<String> {
    split_md5s_as(path, MboxFormat::Mboxrd)
}

fn split_md5s_as(path: &Path, format: MboxFormat) -> Vec<String> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    MboxSplitter::new(file, format)
        .map(|message| {
            let mut message = message.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut hasher = Md5::new();
            message.content.copy_to(&mut hasher).unwrap();
            format!("{:x}", hasher.finalize())
        })
        .collect()
}

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MAILHAUL_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    };
    dir.join("MANIFEST.tsv").is_file().then_some(dir)
}

#[test]
fn every_corpus_message_round_trips() {
    let Some(dir) = corpus_dir() else {
        eprintln!(
            "SKIPPED: no corpus (set MAILHAUL_CORPUS or put it at ../shared/corpus); \
             the committed sample is still checked by sample_spool_round_trips"
        );
        return;
    };
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut expected: Vec<(String, Vec<String>)> = Vec::new();
    for row in manifest.lines().skip(1) {
        let fields: Vec<&str> = row.split('\t').collect();
        let (file, index, md5) = (fields[0], fields[1], fields[3]);
        if expected.last().map(|(f, _)| f.as_str()) != Some(file) {
            expected.push((file.to_string(), Vec::new()));
        }
        let md5s = &mut expected.last_mut().unwrap().1;
        assert_eq!(
            index.parse::<usize>().unwrap(),
            md5s.len() + 1,
            "{file} index order"
        );
        md5s.push(md5.to_string());
    }
    let mut total = 0;
    for (file, md5s) in &expected {
        let got = split_md5s(&dir.join(file));
        assert_eq!(got.len(), md5s.len(), "{file}: message count");
        for (i, (got, want)) in got.iter().zip(md5s).enumerate() {
            assert_eq!(got, want, "{file}: message {}", i + 1);
        }
        total += got.len();
    }
    assert_eq!(total, 7_885);
}

/// The committed sample (always present): 315 real messages, including
/// spam with wrong `Content-Length` headers that overshoot into the next
/// messages, >From quoting, NUL bytes and lone CRs.
#[test]
fn sample_spool_round_trips() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let want: Vec<String> = std::fs::read_to_string(assets.join("sample-spool.md5"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, row)| {
            let (index, md5) = row.split_once('\t').unwrap();
            assert_eq!(index.parse::<usize>().unwrap(), i + 1);
            md5.to_string()
        })
        .collect();
    assert_eq!(want.len(), 315);
    let got = split_md5s(&assets.join("sample-spool.mbox"));
    assert_eq!(got.len(), want.len(), "message count");
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "sample message {}", i + 1);
    }
}

/// Read as mboxo (what a server's MDA would assume), the sample splits into
/// the same messages; only those with quoted `>From ` lines keep their quote.
#[test]
fn sample_spool_splits_the_same_as_mboxo() {
    let spool = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-spool.mbox");
    let mboxrd = split_md5s_as(&spool, MboxFormat::Mboxrd);
    let mboxo = split_md5s_as(&spool, MboxFormat::Mboxo);
    assert_eq!(mboxo.len(), mboxrd.len());
    let differing = mboxrd.iter().zip(&mboxo).filter(|(a, b)| a != b).count();
    assert_eq!(differing, SAMPLE_MESSAGES_WITH_QUOTED_FROM);
}

/// Messages of the sample with a `>From ` line (see assets/SOURCES.md).
const SAMPLE_MESSAGES_WITH_QUOTED_FROM: usize = 13;

/// Body lines of real mail that begin with `From ` (quoted `>From ` in the
/// files, unquoted by the mboxrd reader) are text, not From_ lines: the
/// From_ line rule must not split an mboxo spool at them.
#[test]
fn body_lines_of_real_mail_are_not_from_lines() {
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-spool.mbox")];
    match corpus_dir() {
        Some(dir) => {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "mbox"))
                .collect();
            names.sort();
            files.extend(names);
        }
        None => eprintln!("SKIPPED for the corpus (not present); checking the sample spool"),
    }
    let mut body_lines = 0;
    for path in &files {
        let file = File::open(path).unwrap();
        for message in MboxSplitter::new(file, MboxFormat::Mboxrd) {
            let mut message = message.unwrap();
            let mut content = Vec::new();
            message.content.copy_to(&mut content).unwrap();
            for line in content.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.starts_with(b"From ") {
                    body_lines += 1;
                    assert!(
                        !is_from_line(line),
                        "{}: message {}: {:?}",
                        path.display(),
                        message.index,
                        String::from_utf8_lossy(line)
                    );
                }
            }
        }
    }
    assert!(body_lines >= 4, "{body_lines} body lines checked");
    eprintln!("{body_lines} body lines beginning with `From ` checked");
}
