//! The classes of failure the engine reports, so that whoever runs it can
//! act on the kind of failure without parsing messages: the headless
//! commands turn each class into a documented exit code, the dashboard shows
//! it. The engine knows nothing of exit codes.

/// What kind of failure ended an engine operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A local failure that fits no other class (I/O on this machine, a stop
    /// on request, a bug).
    Local,
    /// The configuration (mailhaul's or `~/.ssh/config`) is invalid.
    Config,
    /// The server's host key is unknown (under `strict`), changed or revoked.
    HostKey,
    /// Authentication failed.
    Auth,
    /// The spool's lock (or this account's local workspace) stayed busy.
    LockBusy,
    /// The connection or the transfer failed, or the download did not verify.
    Transfer,
    /// Some messages could not be delivered; they are kept, and named.
    PartialDelivery,
    /// The server lacks a tool a safe claim needs.
    ServerUnsupported,
}
