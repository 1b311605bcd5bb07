//! Piping one message to a delivery agent (procmail, maildrop, spamc, …).
//!
//! The agent gets the message on stdin. When the message came with a From_
//! line, `From ENVELOPE` is written first, as `formail -s` does, so that the
//! agent knows the envelope sender (procmail writes it into an mbox and drops
//! it for Maildir); otherwise the agent sees exactly the message's bytes. The
//! agent's stdout is discarded, its stderr is the user's. Delivered means: the
//! agent read the whole message and exited 0. Anything else (it cannot be
//! started, it closed stdin early, it was killed, it exited non-zero) is a
//! failure the caller must keep the message for.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use crate::engine::message::Message;

/// Why an agent did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum MdaError {
    /// The command could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command's name.
        command: String,
        /// Why.
        source: io::Error,
    },
    /// Writing the message to the agent's stdin failed (it closed it early).
    #[error("`{command}` did not read the whole message: {source}")]
    Write {
        /// The command's name.
        command: String,
        /// Why.
        source: io::Error,
    },
    /// The agent exited with a failure status or was killed.
    #[error("`{command}` failed: {status}")]
    Status {
        /// The command's name.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

/// Pipes `message` to the command `argv` and waits for it.
pub fn pipe(argv: &[String], message: &mut Message) -> Result<(), MdaError> {
    let command = argv.first().cloned().unwrap_or_default();
    let mut child = Command::new(&command)
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|source| MdaError::Spawn {
            command: command.clone(),
            source,
        })?;
    let written = {
        let mut stdin = io::BufWriter::with_capacity(64 << 10, child.stdin.take().expect("piped"));
        (|| {
            if let Some(envelope) = &message.envelope {
                stdin.write_all(b"From ")?;
                stdin.write_all(envelope)?;
                stdin.write_all(b"\n")?;
            }
            message.content.copy_to(&mut stdin)?;
            stdin.flush()
        })()
    };
    let status = child.wait().map_err(|source| MdaError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !status.success() {
        return Err(MdaError::Status { command, status });
    }
    written.map_err(|source| MdaError::Write { command, source })
}
