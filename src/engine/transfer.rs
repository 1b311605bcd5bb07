//! Streams one claim from the server's `send` output into a local staging
//! file: decompressing (zstd or gzip) on the fly, hashing the raw bytes with
//! sha256 as they are written, then checking size and hash against what the
//! server computed, fsyncing, and only then giving the file its final name.
//! Memory stays bounded (one buffer), whatever the claim's size (bounded-memory,
//! docs/design.md).

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::engine::claim::{Method, RemoteClaim};
use crate::engine::os::sync_dir;
use crate::engine::ssh::hex;

/// Counts the bytes read through it (the compressed payload), and notes
/// whether the stream itself failed (the connection broke, or the fetch was
/// stopped), as opposed to what it carried not decoding.
struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    broke: Rc<Cell<bool>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.broke.set(true);
            }
        })?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// How a download ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Reading or decoding the stream failed (connection, server, corrupt data).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Writing the staging file failed (disk full, permissions).
    #[error("staging file {path}: {source}")]
    Local {
        /// The staging file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The download does not match the server's size or sha256.
    #[error("download of {path} does not verify: got {got_size} bytes sha256 {got_sha}, the server has {want_size} bytes sha256 {want_sha}")]
    Mismatch {
        /// The claim on the server.
        path: String,
        /// Bytes received (decompressed).
        got_size: u64,
        /// Their sha256.
        got_sha: String,
        /// The server's size.
        want_size: u64,
        /// The server's sha256.
        want_sha: String,
    },
}

fn local(path: &Path) -> impl Fn(io::Error) -> TransferError + '_ {
    move |source| TransferError::Local {
        path: path.display().to_string(),
        source,
    }
}

/// Counters of a finished download.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Decompressed bytes received in this download (after the kept prefix).
    pub raw: u64,
    /// Bytes as sent by the server's compressor.
    pub payload: u64,
    /// Where this download began: the length of the prefix an earlier,
    /// interrupted download had kept (0: from the start).
    pub resumed_from: u64,
}

/// How often (in decompressed bytes) a download in progress makes what it
/// has durable and says so through its checkpoint callback, so that a kill
/// or power cut loses at most this much of it.
pub const CHECKPOINT_EVERY: u64 = 4 << 20;

/// The first bytes of a claim that an interrupted download kept in its
/// partial file, read back and hashed, so that the next download asks the
/// server only for the rest and still checks the whole file's sha256.
#[derive(Clone)]
pub struct Prefix {
    len: u64,
    hasher: Sha256,
}

impl Prefix {
    /// Reads the first `len` bytes of `partial`, dropping anything after
    /// them (written after the last checkpoint, so not known durable);
    /// `None` when the file is missing or shorter than `len`.
    pub fn read(partial: &Path, len: u64) -> io::Result<Option<Prefix>> {
        let mut file = match OpenOptions::new().read(true).write(true).open(partial) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() < len {
            return Ok(None);
        }
        file.set_len(len)?;
        let mut hasher = Sha256::new();
        let copied = io::copy(&mut (&mut file).take(len), &mut hasher)?;
        Ok((copied == len).then_some(Prefix { len, hasher }))
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty (nothing kept).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sha256 of the prefix, lower-case hex (what the server checks its
    /// claim's first bytes against before it sends the rest).
    pub fn sha256(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

/// Where one claim's download goes.
pub struct Download<'a> {
    /// How the server compresses the stream.
    pub method: Method,
    /// The claim, with the server's size and sha256 of the whole file.
    pub claim: &'a RemoteClaim,
    /// The file the claim is decompressed into while it arrives.
    pub partial: &'a Path,
    /// The verified file's name.
    pub staged: &'a Path,
    /// The prefix an interrupted download kept: the stream is then the
    /// claim from `prefix.len()` on, appended to it.
    pub resume: Option<Prefix>,
    /// The dictionary the server compressed the zstd stream with
    /// (engine::fetch::dictionary), if it did.
    pub dictionary: Option<&'a [u8]>,
    /// Given each decoded piece of the stream once it is in the partial
    /// file, in order: the fetch files the claim while it arrives.
    pub tee: Option<&'a Tee<'a>>,
}

/// Where each decoded piece of a download also goes (see [`Download::tee`]).
pub type Tee<'a> = dyn Fn(&[u8]) + 'a;

/// Downloads `stream` (the output of the script's `send`) into
/// `to.partial`, verifies the whole file (kept prefix and stream) against
/// the claim's size and sha256, fsyncs it and renames it to `to.staged`.
/// `progress(raw, payload)` is called at most every `every` with the bytes
/// of the claim the file holds and the payload read. Every
/// [`CHECKPOINT_EVERY`] bytes, and when reading the stream fails (the link
/// broke, the fetch was stopped), the file is made durable and
/// `checkpoint(len)` told how long it is: the caller journals it, and the
/// partial file is kept for the next run to resume from. A stream that
/// does not decode, one that does not verify, and a local failure remove
/// the partial file.
pub fn stage(
    stream: impl Read,
    to: Download<'_>,
    every: Duration,
    progress: &mut dyn FnMut(u64, u64),
    checkpoint: &mut dyn FnMut(u64) -> io::Result<()>,
) -> Result<Transferred, TransferError> {
    let (claim, partial, staged) = (to.claim, to.partial, to.staged);
    let payload = Rc::new(Cell::new(0u64));
    let stream_broke = Rc::new(Cell::new(false));
    let counted = CountingReader {
        inner: stream,
        count: Rc::clone(&payload),
        broke: Rc::clone(&stream_broke),
    };
    let (from, mut hasher) = match to.resume {
        Some(p) => (p.len, p.hasher),
        None => (0, Sha256::new()),
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(from == 0)
        .append(from > 0)
        .mode(0o600)
        .open(partial)
        .map_err(local(partial))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let mut raw = from;
    let mut durable = from;
    let mut buf = vec![0u8; 1 << 16];
    let mut last = Instant::now();
    let broke = {
        let mut decoded: Box<dyn Read + '_> = match to.method {
            Method::Zstd(_) | Method::ZstdAdapt(_) => match to.dictionary {
                Some(dictionary) => Box::new(zstd::stream::read::Decoder::with_dictionary(
                    io::BufReader::new(counted),
                    dictionary,
                )?),
                None => Box::new(zstd::stream::read::Decoder::new(counted)?),
            },
            Method::Gzip(_) => Box::new(flate2::read::MultiGzDecoder::new(counted)),
            Method::SshTransport | Method::Plain => Box::new(counted),
        };
        loop {
            let n = match decoded.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(e),
            };
            hasher.update(&buf[..n]);
            if let Err(e) = out.write_all(&buf[..n]) {
                drop(out);
                let _ = std::fs::remove_file(partial);
                return Err(local(partial)(e));
            }
            if let Some(tee) = to.tee {
                tee(&buf[..n]);
            }
            raw += n as u64;
            if raw - durable >= CHECKPOINT_EVERY {
                make_durable(&mut out, partial)?;
                durable = raw;
                checkpoint(raw).map_err(local(partial))?;
            }
            if last.elapsed() >= every {
                last = Instant::now();
                progress(raw, payload.get());
            }
        }
    };
    let payload = payload.get();
    progress(raw, payload);
    if let Some(e) = broke {
        if stream_broke.get() {
            // The link broke (or the fetch was stopped): what arrived is
            // kept for the next run, which checks it with the server before
            // it continues, and the whole file at the end.
            if raw > durable {
                make_durable(&mut out, partial)?;
                checkpoint(raw).map_err(local(partial))?;
            }
        } else {
            // The stream itself does not decode (corrupt, or the server's
            // compressor died): what it decoded to is not trusted.
            drop(out);
            let _ = std::fs::remove_file(partial);
        }
        return Err(e.into());
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(local(partial))?;
    let sha = hex(&hasher.finalize());
    if raw != claim.size || sha != claim.sha256 {
        drop(file);
        let _ = std::fs::remove_file(partial);
        return Err(TransferError::Mismatch {
            path: claim.path.clone(),
            got_size: raw,
            got_sha: sha,
            want_size: claim.size,
            want_sha: claim.sha256.clone(),
        });
    }
    file.sync_all().map_err(local(partial))?;
    drop(file);
    std::fs::rename(partial, staged).map_err(local(staged))?;
    if let Some(dir) = staged.parent() {
        sync_dir(dir).map_err(local(dir))?;
    }
    Ok(Transferred {
        raw: raw - from,
        payload,
        resumed_from: from,
    })
}

/// Writes out what `out` buffers and fsyncs the file (a failure here is a
/// local one: the partial file is removed).
fn make_durable(out: &mut BufWriter<File>, partial: &Path) -> Result<(), TransferError> {
    let synced = out.flush().and_then(|()| out.get_ref().sync_data());
    synced.map_err(|e| {
        let _ = std::fs::remove_file(partial);
        local(partial)(e)
    })
}

/// Verifies an already staged file against the claim (after a restart).
pub fn verify_staged(path: &Path, claim: &RemoteClaim) -> io::Result<bool> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher)?;
    Ok(size == claim.size && hex(&hasher.finalize()) == claim.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn compress(tool: &[&str], data: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool[0])
            .args(&tool[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out.stdout
    }

    fn claim_of(data: &[u8]) -> RemoteClaim {
        RemoteClaim {
            path: "/var/mail/x.mailhaul-claim.1".into(),
            size: data.len() as u64,
            sha256: hex(&Sha256::digest(data)),
        }
    }

    #[test]
    fn real_zstd_and_gzip_output_stages_and_verifies() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (method, tool) in [
            (Method::Zstd(3), &["zstd", "-q", "-c", "-3"][..]),
            (
                Method::ZstdAdapt(9),
                &["zstd", "-q", "-c", "--adapt=min=9,max=19"][..],
            ),
            (Method::Gzip(6), &["gzip", "-c", "-6"][..]),
            (Method::Plain, &["cat"][..]),
        ] {
            let wire = compress(tool, &data);
            let (part, staged) = (dir.path().join("a.part"), dir.path().join("a.mbox"));
            let mut calls = 0;
            let t = stage(
                &wire[..],
                Download {
                    method,
                    claim: &claim_of(&data),
                    partial: &part,
                    staged: &staged,
                    resume: None,
                    dictionary: None,
                    tee: None,
                },
                Duration::ZERO,
                &mut |_, _| calls += 1,
                &mut |_| Ok(()),
            )
            .unwrap();
            assert_eq!(t.raw, data.len() as u64);
            assert_eq!(t.payload, wire.len() as u64);
            assert!(calls > 1);
            assert!(!part.exists());
            assert_eq!(std::fs::read(&staged).unwrap(), data);
            assert!(verify_staged(&staged, &claim_of(&data)).unwrap());
        }
    }

    /// A stream the zstd CLI compressed with a raw-content dictionary
    /// (`-D`) stages with that dictionary; with another one, or none, it
    /// does not decode or does not verify, and nothing is left.
    #[test]
    fn a_dictionary_stream_stages_only_with_its_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let dict: Vec<u8> = (0..3000u32)
            .flat_map(|i| format!("Received: from relay{i} by mx; id {i}\n").into_bytes())
            .collect();
        let dict_path = dir.path().join("dict");
        std::fs::write(&dict_path, &dict).unwrap();
        let data = dict[40_000..44_000].to_vec();
        let wire = compress(
            &["zstd", "-q", "-c", "-19", "-D", dict_path.to_str().unwrap()],
            &data,
        );
        assert!(wire.len() * 2 < compress(&["zstd", "-q", "-c", "-19"], &data).len());
        let (part, staged) = (dir.path().join("a.part"), dir.path().join("a.mbox"));
        let mut other = dict.clone();
        other[41_000] ^= 0x20;
        for (dictionary, good) in [
            (Some(&dict[..]), true),
            (Some(&other[..]), false),
            (None, false),
        ] {
            let t = stage(
                &wire[..],
                Download {
                    method: Method::Zstd(19),
                    claim: &claim_of(&data),
                    partial: &part,
                    staged: &staged,
                    resume: None,
                    dictionary,
                    tee: None,
                },
                Duration::ZERO,
                &mut |_, _| {},
                &mut |_| Ok(()),
            );
            assert_eq!(t.is_ok(), good, "{t:?}");
            assert!(!part.exists());
            assert_eq!(staged.exists(), good);
            if good {
                assert_eq!(std::fs::read(&staged).unwrap(), data);
                std::fs::remove_file(&staged).unwrap();
            }
        }
    }

    /// The right length is not enough: one changed byte is a mismatch, and
    /// neither the staging file nor the partial one is left.
    #[test]
    fn a_stream_of_the_right_length_with_one_changed_byte_is_refused() {
        let data = b"From a\nbody\n\n".repeat(100);
        let mut wire = data.clone();
        wire[700] ^= 0x20;
        let dir = tempfile::tempdir().unwrap();
        let (part, staged) = (dir.path().join("a.part"), dir.path().join("a.mbox"));
        let (result, _) = stage_into(&wire[..], Method::Plain, &data, &part, None);
        let err = result.unwrap_err();
        assert!(
            matches!(err, TransferError::Mismatch { got_size, .. } if got_size == data.len() as u64),
            "{err}"
        );
        assert!(!staged.exists() && !part.exists());
    }

    /// A read interrupted by a signal (EINTR) is retried, not taken for a
    /// broken download.
    #[test]
    fn an_interrupted_read_is_retried() {
        struct Flaky<'a> {
            data: &'a [u8],
            interrupt_next: bool,
        }
        impl Read for Flaky<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.interrupt_next = !self.interrupt_next;
                if !self.interrupt_next {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let n = buf.len().min(100);
                self.data.read(&mut buf[..n])
            }
        }
        let data = b"From a\nbody\n\n".repeat(100);
        let dir = tempfile::tempdir().unwrap();
        let (part, staged) = (dir.path().join("a.part"), dir.path().join("a.mbox"));
        let flaky = Flaky {
            data: &data,
            interrupt_next: true,
        };
        let (result, _) = stage_into(flaky, Method::Plain, &data, &part, None);
        let t = result.unwrap();
        assert_eq!(t.raw, data.len() as u64);
        assert_eq!(std::fs::read(&staged).unwrap(), data);
    }

    /// A staged claim is trusted after a restart only if it still has the
    /// server's size and sha256: one changed byte or one byte less fails.
    #[test]
    fn a_staged_file_verifies_only_with_the_servers_size_and_sha256() {
        let data = b"From a\nbody\n\n".repeat(100);
        let claim = claim_of(&data);
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("a.mbox");
        std::fs::write(&staged, &data).unwrap();
        assert!(verify_staged(&staged, &claim).unwrap());
        let mut flipped = data.clone();
        flipped[700] ^= 0x20;
        std::fs::write(&staged, &flipped).unwrap();
        assert!(!verify_staged(&staged, &claim).unwrap(), "one byte changed");
        std::fs::write(&staged, &data[..data.len() - 1]).unwrap();
        assert!(!verify_staged(&staged, &claim).unwrap(), "one byte short");
        // Same size and bytes, but the server reported another size.
        std::fs::write(&staged, &data).unwrap();
        let mut bigger = claim.clone();
        bigger.size += 1;
        assert!(!verify_staged(&staged, &bigger).unwrap(), "size differs");
    }

    /// Stages `wire` into `part`, resuming from `resume`; returns the
    /// result and the lengths the checkpoints reported.
    fn stage_into(
        wire: impl Read,
        method: Method,
        data: &[u8],
        part: &Path,
        resume: Option<Prefix>,
    ) -> (Result<Transferred, TransferError>, Vec<u64>) {
        let staged = part.with_extension("mbox");
        let mut marks = Vec::new();
        let result = stage(
            wire,
            Download {
                method,
                claim: &claim_of(data),
                partial: part,
                staged: &staged,
                resume,
                dictionary: None,
                tee: None,
            },
            Duration::ZERO,
            &mut |_, _| {},
            &mut |len| {
                marks.push(len);
                Ok(())
            },
        );
        (result, marks)
    }

    /// A stream whose reading fails after `at` bytes, as an SSH channel
    /// does when the link drops.
    struct Broken<'a> {
        data: &'a [u8],
        at: usize,
    }

    impl Read for Broken<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == 0 {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let n = buf.len().min(self.at).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.at -= n;
            Ok(n)
        }
    }

    /// A link that breaks keeps what arrived (durable, its length
    /// reported) for a resume; a stream that ends short, one that does not
    /// decode and one with a wrong byte leave nothing.
    #[test]
    fn a_broken_link_keeps_its_prefix_and_a_bad_stream_leaves_nothing() {
        let data = b"From a\nbody\n\n".repeat(1000);
        let wire = compress(&["gzip", "-c"], &data);
        let dir = tempfile::tempdir().unwrap();
        let (part, staged) = (dir.path().join("a.part"), dir.path().join("a.mbox"));
        let (err, marks) = stage_into(
            Broken {
                data: &wire,
                at: wire.len() / 2,
            },
            Method::Gzip(6),
            &data,
            &part,
            None,
        );
        assert!(matches!(err, Err(TransferError::Io(_))));
        assert!(!staged.exists());
        let kept = std::fs::read(&part).unwrap();
        assert_eq!(marks, [kept.len() as u64]);
        assert!(!kept.is_empty() && data.starts_with(&kept));

        let (err, _) = stage_into(&wire[..wire.len() / 2], Method::Gzip(6), &data, &part, None);
        assert!(err.is_err());
        assert!(
            !part.exists(),
            "a stream that does not decode leaves nothing"
        );

        let (err, _) = stage_into(&data[..data.len() - 1], Method::Plain, &data, &part, None);
        assert!(matches!(err.unwrap_err(), TransferError::Mismatch { .. }));
        assert!(!part.exists(), "a short stream leaves nothing");

        let mut flipped = data.clone();
        flipped[10] ^= 0x20;
        let (err, _) = stage_into(&flipped[..], Method::Plain, &data, &part, None);
        assert!(matches!(err.unwrap_err(), TransferError::Mismatch { .. }));
        assert!(!staged.exists() && !part.exists());
    }

    /// A stream that arrives in small reads, as an SSH channel's does.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1000);
            self.0.read(&mut buf[..n])
        }
    }

    /// A checkpoint comes every CHECKPOINT_EVERY bytes, no more often, and
    /// only once the file holds what it reports (written out of the
    /// buffer, synced); a link that breaks right after one does not
    /// report the same length twice.
    #[test]
    fn checkpoints_come_every_checkpoint_every_bytes_with_the_bytes_in_the_file() {
        let every = CHECKPOINT_EVERY as usize;
        let data = b"From a\nbody\n\n".repeat(3 * every / 13 + 100);
        let dir = tempfile::tempdir().unwrap();
        let (part, staged) = (dir.path().join("a.part"), dir.path().join("a.mbox"));
        let mut marks = Vec::new();
        let t = stage(
            Trickle(&data),
            Download {
                method: Method::Plain,
                claim: &claim_of(&data),
                partial: &part,
                staged: &staged,
                resume: None,
                dictionary: None,
                tee: None,
            },
            Duration::ZERO,
            &mut |_, _| {},
            &mut |len| {
                assert_eq!(std::fs::metadata(&part)?.len(), len, "in the file");
                marks.push(len);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(t.raw, data.len() as u64);
        let first = &marks[..marks.len().min(3)];
        assert_eq!(marks.len(), 2, "{} marks: {first:?}...", marks.len());
        assert!(marks[1] - marks[0] >= CHECKPOINT_EVERY, "{marks:?}");

        let (broken, marks) = stage_into(
            Broken {
                data: &data,
                at: every,
            },
            Method::Plain,
            &data,
            &part,
            None,
        );
        assert!(matches!(broken, Err(TransferError::Io(_))));
        assert_eq!(marks, [CHECKPOINT_EVERY]);
    }

    /// No partial file is no prefix (the download starts over); a partial
    /// file that cannot be opened is an error, not a fresh start; an
    /// empty prefix says so.
    #[test]
    fn a_prefix_is_read_only_from_a_partial_file_that_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("a.part");
        assert!(Prefix::read(&part, 5).unwrap().is_none());
        assert!(Prefix::read(dir.path(), 5).is_err(), "a directory");
        std::fs::write(&part, b"From a\n").unwrap();
        let p = Prefix::read(&part, 5).unwrap().unwrap();
        assert_eq!((p.len(), p.is_empty()), (5, false));
        let p = Prefix::read(&part, 0).unwrap().unwrap();
        assert_eq!((p.len(), p.is_empty()), (0, true));
    }

    /// A download cut at byte N continues from N with the rest compressed
    /// anew, and the whole file's sha256 decides: the rest with one changed
    /// byte, or a kept prefix changed locally, is refused and leaves nothing.
    #[test]
    fn a_resumed_download_verifies_the_whole_file() {
        let data: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let cut = data.len() / 3 + 7;
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("a.part");
        let staged = part.with_extension("mbox");
        // A checkpoint every CHECKPOINT_EVERY bytes, and one where it broke.
        let (broken, marks) = stage_into(
            Broken {
                data: &data,
                at: cut,
            },
            Method::Plain,
            &data,
            &part,
            None,
        );
        assert!(broken.is_err());
        assert_eq!(*marks.last().unwrap(), cut as u64);
        assert!(marks.len() as u64 > cut as u64 / CHECKPOINT_EVERY);
        // Bytes after the last checkpoint are not trusted: read drops them.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&part)
            .unwrap()
            .write_all(b"junk")
            .unwrap();
        let prefix = Prefix::read(&part, cut as u64).unwrap().unwrap();
        assert_eq!(std::fs::metadata(&part).unwrap().len(), cut as u64);
        assert_eq!(prefix.sha256(), hex(&Sha256::digest(&data[..cut])));
        assert!(Prefix::read(&part, cut as u64 + 1).unwrap().is_none());

        for (method, tool) in [
            (Method::Zstd(9), &["zstd", "-q", "-c", "-9"][..]),
            (Method::Gzip(6), &["gzip", "-c", "-6"][..]),
            (Method::Plain, &["cat"][..]),
        ] {
            // The rest with one byte changed: refused, nothing left.
            let mut rest = data[cut..].to_vec();
            rest[1000] ^= 0x20;
            let (err, _) = stage_into(
                &compress(tool, &rest)[..],
                method,
                &data,
                &part,
                Some(prefix.clone()),
            );
            assert!(
                matches!(err.unwrap_err(), TransferError::Mismatch { .. }),
                "{method:?}"
            );
            assert!(!part.exists() && !staged.exists());

            // The right rest: the whole file, verified.
            std::fs::write(&part, &data[..cut]).unwrap();
            let wire = compress(tool, &data[cut..]);
            let (t, _) = stage_into(&wire[..], method, &data, &part, Some(prefix.clone()));
            let t = t.unwrap();
            assert_eq!(
                (t.raw, t.payload, t.resumed_from),
                ((data.len() - cut) as u64, wire.len() as u64, cut as u64)
            );
            assert_eq!(std::fs::read(&staged).unwrap(), data);
            std::fs::remove_file(&staged).unwrap();
            std::fs::write(&part, &data[..cut]).unwrap();
        }
        // The kept prefix changed on the local disk (same length): its hash
        // is not the server's prefix's, and the whole file's refuses it.
        let mut bad = data[..cut].to_vec();
        bad[5] ^= 0x20;
        std::fs::write(&part, &bad).unwrap();
        let stale = Prefix::read(&part, cut as u64).unwrap().unwrap();
        assert_ne!(stale.sha256(), prefix.sha256());
        let (err, _) = stage_into(&data[cut..], Method::Plain, &data, &part, Some(stale));
        assert!(matches!(err.unwrap_err(), TransferError::Mismatch { .. }));
        assert!(!part.exists() && !staged.exists());
    }
}
