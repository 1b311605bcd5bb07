//! The splitter against real mail: every message of the shared corpus (when
//! present) and of the committed sample spool must come out byte-exact, in
//! order, as their manifests' md5 sums say.

use std::fs::File;
use std::path::{Path, PathBuf};

use mailhaul::config::MboxFormat;
use mailhaul::engine::mbox::MboxSplitter;
use md5::{Digest, Md5};

/// The md5 (hex) of every message of the mbox at `path`, split as mboxrd.
fn split_md5s(path: &Path) -> Vec<String> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    MboxSplitter::new(file, MboxFormat::Mboxrd)
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
