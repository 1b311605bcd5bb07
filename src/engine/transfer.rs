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

use crate::engine::claim::{hex, Method, RemoteClaim};
use crate::engine::os::sync_dir;

/// Counts the bytes read through it: the compressed payload.
struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
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
    /// Decompressed bytes.
    pub raw: u64,
    /// Bytes as sent by the server's compressor.
    pub payload: u64,
}

/// Downloads `stream` (the output of the script's `send` with `method`) into
/// `partial`, verifies it against `claim`, fsyncs it and renames it to
/// `staged`. `progress(raw, payload)` is called at most every `every`.
pub fn stage(
    stream: impl Read,
    method: Method,
    claim: &RemoteClaim,
    partial: &Path,
    staged: &Path,
    every: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Transferred, TransferError> {
    let payload = Rc::new(Cell::new(0u64));
    let counted = CountingReader {
        inner: stream,
        count: Rc::clone(&payload),
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(partial)
        .map_err(local(partial))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let mut hasher = Sha256::new();
    let mut raw = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let mut last = Instant::now();
    {
        let mut decoded: Box<dyn Read + '_> = match method {
            Method::Zstd(_) | Method::ZstdAdapt(_) => {
                Box::new(zstd::stream::read::Decoder::new(counted)?)
            }
            Method::Gzip(_) => Box::new(flate2::read::MultiGzDecoder::new(counted)),
            Method::SshTransport | Method::Plain => Box::new(counted),
        };
        loop {
            let n = match decoded.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(local(partial))?;
            raw += n as u64;
            if last.elapsed() >= every {
                last = Instant::now();
                progress(raw, payload.get());
            }
        }
    }
    let payload = payload.get();
    progress(raw, payload);
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
    Ok(Transferred { raw, payload })
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
                method,
                &claim_of(&data),
                &part,
                &staged,
                Duration::ZERO,
                &mut |_, _| calls += 1,
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

    /// The right length is not enough: one changed byte is a mismatch, and
    /// neither the staging file nor the partial one is left.
    #[test]
    fn a_stream_of_the_right_length_with_one_changed_byte_is_refused() {
        let data = b"From a\nbody\n\n".repeat(100);
        let mut wire = data.clone();
        wire[700] ^= 0x20;
        let dir = tempfile::tempdir().unwrap();
        let (part, staged) = (dir.path().join("a.part"), dir.path().join("a.mbox"));
        let err = stage(
            &wire[..],
            Method::Plain,
            &claim_of(&data),
            &part,
            &staged,
            Duration::ZERO,
            &mut |_, _| {},
        )
        .unwrap_err();
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
        let t = stage(
            flaky,
            Method::Plain,
            &claim_of(&data),
            &part,
            &staged,
            Duration::ZERO,
            &mut |_, _| {},
        )
        .unwrap();
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

    #[test]
    fn a_cut_stream_does_not_verify_and_leaves_nothing() {
        let data = b"From a\nbody\n\n".repeat(1000);
        let wire = compress(&["gzip", "-c"], &data);
        let dir = tempfile::tempdir().unwrap();
        let (part, staged) = (dir.path().join("a.part"), dir.path().join("a.mbox"));
        let cut = &wire[..wire.len() / 2];
        let err = stage(
            cut,
            Method::Gzip(6),
            &claim_of(&data),
            &part,
            &staged,
            Duration::ZERO,
            &mut |_, _| {},
        );
        assert!(err.is_err());
        assert!(!staged.exists());
        let err = stage(
            &data[..data.len() - 1],
            Method::Plain,
            &claim_of(&data),
            &part,
            &staged,
            Duration::ZERO,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(err, TransferError::Mismatch { .. }));
        assert!(!staged.exists() && !part.exists());
    }
}
