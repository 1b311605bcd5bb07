//! How a fetch fails: what went wrong and where the mail is, with the error
//! that caused it kept as its source, and the class of failure.

use std::path::PathBuf;

use crate::engine::claim::{ScriptError, Unsupported};
use crate::engine::deliver::SetupError;
use crate::engine::failure::Failure;
use crate::engine::journal::AccountBusy;
use crate::engine::ssh::SshError;
use crate::engine::transfer::TransferError;

/// A fetch failure: what went wrong and where the mail is, with the error
/// that caused it as its source; [`FetchError::failure`] gives its class.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No home directory to keep the data dir in.
    #[error("cannot find the home directory for the data dir")]
    NoDataDir,
    /// Another fetch of this account holds its workspace.
    #[error(transparent)]
    Busy(AccountBusy),
    /// Local I/O failed (data dir, journal, staging).
    #[error("{what}: {source}")]
    Local {
        /// What was being used.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reaching or using the server over SSH failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The server-side script refused or failed.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The server lacks what a safe claim, or the configured compression, needs.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// The filter's rules or folders cannot be used.
    #[error(transparent)]
    Filing(#[from] SetupError),
    /// The server could not send a claim.
    #[error("sending {path} failed on the server: {stderr}")]
    ServerSend {
        /// The claim on the server.
        path: String,
        /// What the server said.
        stderr: String,
    },
    /// The download broke off or did not verify; the claim stays on the server.
    #[error("{source}{server}; the claim stays on the server and is fetched next time")]
    Download {
        /// What the server said, when its side failed too (` (server: ...)`).
        server: String,
        /// Why the download failed.
        #[source]
        source: DownloadError,
    },
    /// Writing the staging file failed; the claim stays on the server.
    #[error("{source}; the claim stays on the server and is fetched next time")]
    Staging {
        /// Why.
        #[source]
        source: TransferError,
    },
    /// Reading a staged claim broke off during delivery.
    #[error("{reason}; the claim is kept in {}", staged.display())]
    ReadStaged {
        /// The staged claim, kept.
        staged: PathBuf,
        /// What the splitter reported.
        reason: String,
    },
    /// Messages could be neither filed nor quarantined.
    #[error(
        "{count} message(s) could be neither filed nor quarantined; the claim is kept in {} \
         and the next fetch delivers them",
        staged.display()
    )]
    Unkept {
        /// How many.
        count: usize,
        /// The staged claim, kept.
        staged: PathBuf,
    },
    /// The fetch ran to its end, but some messages went to the quarantine.
    #[error("{0} message(s) could not be delivered where the rules say; see the log")]
    Undelivered(u64),
    /// The watcher asked the fetch to stop.
    #[error("stopped on request; nothing is lost, the next fetch resumes where this one stopped")]
    Cancelled,
}

/// Why a download failed: the connection broke off, or what arrived is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The stream from the server broke off.
    #[error("the download of {path} from {host} broke off: {source}")]
    BrokeOff {
        /// The claim on the server.
        path: String,
        /// The server.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The stream ended but what arrived does not verify.
    #[error(transparent)]
    Transfer(TransferError),
}

impl FetchError {
    /// The class of this failure.
    pub fn failure(&self) -> Failure {
        match self {
            FetchError::NoDataDir
            | FetchError::Local { .. }
            | FetchError::Staging { .. }
            | FetchError::Cancelled => Failure::Local,
            FetchError::Busy(_) => Failure::LockBusy,
            FetchError::Ssh(e) => e.failure(),
            FetchError::Script(e) => e.failure(),
            FetchError::Unsupported(_) => Failure::ServerUnsupported,
            FetchError::Filing(_) => Failure::Config,
            FetchError::ServerSend { .. } | FetchError::Download { .. } => Failure::Transfer,
            FetchError::ReadStaged { .. }
            | FetchError::Unkept { .. }
            | FetchError::Undelivered(_) => Failure::PartialDelivery,
        }
    }

    pub(super) fn local(
        what: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> FetchError {
        FetchError::Local {
            what: what.to_string(),
            source: Box::new(e),
        }
    }
}
