//! Filing a claim while it downloads. The decoded stream goes to the
//! staging file as before and, through a bounded channel, to a delivery
//! running beside the download, whose messages wait unpublished behind a
//! [`PublishGate`] until the staged file is verified, durable and
//! journalled (docs/design.md, "Filing while the claim arrives"). On a slow
//! link the local splitting and writing is then done by the time the last
//! byte arrives, and only publishing is left.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::engine::pipeline::PublishGate;

/// Decoded pieces the delivery may lag behind the download by (each at
/// most 64 KiB); when it lags more, the tee stops and the delivery goes on
/// from the staged file.
pub(super) const TEE_PIECES: usize = 64;

/// The download's end of the channel to the delivery.
pub(super) struct Tee {
    to_delivery: Mutex<Option<Sender<Vec<u8>>>>,
    /// The download that fed the tee was verified: what went through it
    /// is the staged file's beginning (a retried or resumed download does
    /// not feed it).
    verified: AtomicBool,
}

impl Tee {
    pub(super) fn new(to_delivery: Sender<Vec<u8>>) -> Tee {
        Tee {
            to_delivery: Mutex::new(Some(to_delivery)),
            verified: AtomicBool::new(false),
        }
    }

    /// Passes a decoded piece on, unless the delivery is too far behind:
    /// the tee then ends, and the delivery reads the rest from the file.
    pub(super) fn feed(&self, piece: &[u8]) {
        let mut to = self
            .to_delivery
            .lock()
            .expect("no thread panics holding it");
        if let Some(tx) = to.as_ref() {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                tx.try_send(piece.to_vec())
            {
                *to = None;
            }
        }
    }

    /// The download ended: nothing more goes through.
    pub(super) fn end(&self) {
        *self
            .to_delivery
            .lock()
            .expect("no thread panics holding it") = None;
    }

    /// The download that fed it verified the whole claim.
    pub(super) fn mark_verified(&self) {
        self.verified.store(true, Ordering::Relaxed);
    }

    pub(super) fn verified(&self) -> bool {
        self.verified.load(Ordering::Relaxed)
    }
}

/// The delivery's input: the pieces from the tee, then, once the gate
/// opens, the rest of the verified staged file from where the tee ended.
/// A shut gate is a read error.
pub(super) struct TeeInput<'g> {
    pieces: Receiver<Vec<u8>>,
    piece: Vec<u8>,
    at: usize,
    read: u64,
    gate: &'g PublishGate,
    rest: Option<File>,
}

impl<'g> TeeInput<'g> {
    pub(super) fn new(pieces: Receiver<Vec<u8>>, gate: &'g PublishGate) -> TeeInput<'g> {
        TeeInput {
            pieces,
            piece: Vec::new(),
            at: 0,
            read: 0,
            gate,
            rest: None,
        }
    }
}

impl Read for TeeInput<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(file) = &mut self.rest {
            return file.read(buf);
        }
        while self.at == self.piece.len() {
            match self.pieces.recv() {
                Ok(piece) => (self.piece, self.at) = (piece, 0),
                Err(_) => {
                    let Some(staged) = self.gate.wait() else {
                        return Err(io::Error::other("the download was not verified"));
                    };
                    let mut file = File::open(&staged)?;
                    file.seek(SeekFrom::Start(self.read))?;
                    return self.rest.insert(file).read(buf);
                }
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tee passed on, then the file from there on: the delivery
    /// reads the staged file's bytes once each, however far the tee got.
    #[test]
    fn the_input_is_the_tee_then_the_staged_file_from_where_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("claim.staged");
        let claim: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&staged, &claim).unwrap();
        for pieces in [0usize, 1, 3, TEE_PIECES + 5] {
            let gate = PublishGate::default();
            let (tx, rx) = crossbeam_channel::bounded(TEE_PIECES);
            let tee = Tee::new(tx);
            for chunk in claim.chunks(4096).take(pieces) {
                tee.feed(chunk);
            }
            tee.end();
            gate.open(staged.clone());
            let mut got = Vec::new();
            TeeInput::new(rx, &gate).read_to_end(&mut got).unwrap();
            assert!(got == claim, "{pieces} pieces fed");
        }
    }

    #[test]
    fn a_shut_gate_is_a_read_error() {
        let gate = PublishGate::default();
        let (tx, rx) = crossbeam_channel::bounded(TEE_PIECES);
        let tee = Tee::new(tx);
        tee.feed(b"From a\n");
        tee.end();
        gate.shut();
        let mut got = Vec::new();
        let err = TeeInput::new(rx, &gate).read_to_end(&mut got).unwrap_err();
        assert!(err.to_string().contains("not verified"), "{err}");
        assert_eq!(got, b"From a\n");
    }
}
