//! The one typed event enum that engine workers send to whoever watches them
//! (the dashboard or the headless progress printer), on one channel.

use std::time::Duration;

use crate::engine::failure::Failure;
use crate::engine::watch::WatchMode;

/// Everything a worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Progress and results of a fetch of one account.
    Fetch {
        /// The account's name.
        account: String,
        /// What happened.
        event: FetchEvent,
    },
    /// State and stats of an account's SMTP forward.
    Tunnel {
        /// The account's name.
        account: String,
        /// What happened.
        event: TunnelEvent,
    },
    /// What an account's supervisor worker is doing, on every change.
    Link {
        /// The account's name.
        account: String,
        /// The new state.
        state: LinkState,
        /// When it changed (seconds since the epoch).
        since: u64,
    },
    /// The counts of an account's outbox, whenever they change.
    Outbox {
        /// The account's name.
        account: String,
        /// The counts.
        counts: OutboxCounts,
    },
    /// The history file changed on disk (another mailhaul, cron's `mailhaul
    /// fetch` say, appended to it): all its fetches, oldest first.
    History(Vec<PastFetch>),
    /// A line for the log panel or stderr.
    Log {
        /// How important it is.
        level: Level,
        /// The account it concerns, if any.
        account: Option<String>,
        /// The text.
        message: String,
    },
}

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something a user should look at; nothing lost.
    Warn,
    /// Something failed.
    Error,
}

/// The stages of one fetch, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening the SSH session, checking the host key, authenticating.
    Connecting,
    /// Fetching claims left on the server by an earlier interrupted run.
    Recovering,
    /// Taking the spool under the delivery agents' lock.
    Claiming,
    /// Downloading the claim, compressed.
    Transferring,
    /// Checking size and sha256 against the server's.
    Verifying,
    /// Splitting, filtering and filing the messages.
    Delivering,
    /// Finished without error. Never sent as a `Stage` event: a watcher
    /// reaches it with [`FetchEvent::Ended`] without a failure.
    Done,
    /// Finished with an error. Never sent as a `Stage` event: a watcher
    /// reaches it with [`FetchEvent::Ended`] with a failure.
    Failed,
}

/// Byte counters of a transfer in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferProgress {
    /// Uncompressed bytes received so far.
    pub raw_done: u64,
    /// Uncompressed size of the claim.
    pub raw_total: u64,
    /// Compressed payload bytes received so far (equal to raw without payload compression).
    pub payload_bytes: u64,
    /// Bytes received on the TCP socket (TCP_INFO), all SSH overhead included.
    pub socket_bytes: u64,
}

/// What a fetch reports.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    /// Entered a new stage.
    Stage(Stage),
    /// Spool size seen on the server (periodic check or before a claim).
    SpoolSize {
        /// Bytes in the spool.
        bytes: u64,
        /// Messages in the spool, when the check counted them.
        messages: Option<u64>,
    },
    /// The server's host key is not in known_hosts: the fetch waits for the
    /// user's answer (`accept` or not) before it authenticates.
    HostKeyUnknown(HostKeyInfo),
    /// The server's host key differs from the one in known_hosts (or is
    /// marked `@revoked`): the fetch is refused (it ends failed); this is
    /// shown to the user, never offered to accept.
    HostKeyChanged {
        /// The key the server sent.
        key: HostKeyInfo,
        /// The full explanation: the expected key, the known_hosts line, and
        /// how to fix it once the new key is verified.
        detail: String,
    },
    /// Transfer counters.
    Progress(TransferProgress),
    /// Messages filed so far into one folder (or MDA) during delivery.
    Filed {
        /// Folder name, or `mda:COMMAND`.
        folder: String,
        /// Messages filed there so far in this fetch.
        count: u64,
    },
    /// The fetch ended: the last event of every fetch.
    Ended {
        /// What it moved and filed, when it ran to its end (also when some
        /// messages could not be delivered where the rules say).
        summary: Option<FetchSummary>,
        /// Why it failed, if it did; nothing was lost.
        failure: Option<FetchFailure>,
    },
}

/// Why a fetch failed, as its watchers are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// The class of failure.
    pub class: Failure,
    /// What went wrong, where the mail is, and what to do.
    pub message: String,
}

/// The outcome of one fetch, also appended to the history file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchSummary {
    /// Messages filed.
    pub messages: u64,
    /// Messages that could not be delivered (kept in staging, reported).
    pub undelivered: u64,
    /// Uncompressed bytes transferred.
    pub raw_bytes: u64,
    /// Compressed payload bytes.
    pub payload_bytes: u64,
    /// Bytes on the socket.
    pub socket_bytes: u64,
    /// Compression method used (`zstd -3`, `gzip`, `ssh`, `none`).
    pub method: String,
    /// Messages filed per folder (or `mbox:PATH`, `mda:COMMAND`); not in
    /// the history file.
    pub folders: std::collections::BTreeMap<String, u64>,
    /// Wall time.
    pub elapsed: Duration,
}

/// A server host key as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyInfo {
    /// Host name as connected to.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Key type, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// `SHA256:` and the unpadded base64 of the key's sha256, as OpenSSH prints it.
    pub fingerprint: String,
}

/// What an SMTP forward reports.
#[derive(Debug, Clone)]
pub enum TunnelEvent {
    /// The forward's state changed.
    State(TunnelState),
    /// Current counters.
    Stats(TunnelStats),
    /// An error on one connection or on the SSH session.
    Error(String),
}

/// The state of an SMTP forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Not running.
    Off,
    /// Opening the SSH session.
    Connecting,
    /// Listening at the address.
    Listening(std::net::SocketAddr),
    /// The SSH session dropped; reconnecting after a backoff.
    Reconnecting {
        /// Seconds until the next attempt.
        in_secs: u64,
    },
}

/// Counters of an SMTP forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelStats {
    /// Connections open now.
    pub live: u64,
    /// Connections accepted since start.
    pub total: u64,
    /// Bytes from local clients toward the server.
    pub bytes_up: u64,
    /// Bytes from the server to local clients.
    pub bytes_down: u64,
    /// Bytes sent on the SSH socket.
    pub socket_sent: u64,
    /// Bytes received on the SSH socket.
    pub socket_received: u64,
    /// Errors since start.
    pub errors: u64,
}

/// What an account's supervisor worker is doing (see
/// `engine::supervisor`), reported on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Opening the account's SSH session (host key, authentication, the
    /// spool probe).
    Connecting,
    /// Connected; the server-side watcher reports every change of the spool
    /// at once.
    Watching(WatchMode),
    /// Connected, but the watcher cannot run there: the spool is checked
    /// every `every` instead.
    Polling {
        /// The interval between checks.
        every: Duration,
    },
    /// The link is down (or a connection failed): the next attempt is due
    /// at `until` (seconds since the epoch).
    BackingOff {
        /// When the next attempt starts.
        until: u64,
        /// Why the last attempt failed.
        reason: String,
    },
    /// A fetch of the account is running.
    Fetching,
    /// The outbox's messages are going up.
    Sending,
    /// The worker ended: on request, or because of a failure no reconnect
    /// can cure (the reason).
    Stopped(Option<String>),
}

/// The counts of an account's outbox, for the dashboard's outbox panel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Messages waiting to be sent.
    pub queued: u64,
    /// Messages going up right now.
    pub sending: u64,
    /// Messages the server accepted since local midnight.
    pub sent_today: u64,
    /// Messages the server refused for good (kept in the failed folder).
    pub failed: u64,
    /// Bytes of the messages sent today.
    pub sent_bytes: u64,
    /// What they took on the wire (compressed): `sent_bytes / wire_bytes`
    /// is the compression ratio.
    pub wire_bytes: u64,
}

/// One past fetch: what the history file (`engine::history`) keeps per
/// line, for the dashboard's history chart and each account's last fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct PastFetch {
    /// The account.
    pub account: String,
    /// When it ended, in seconds since the Unix epoch, when known.
    pub finished_unix: Option<u64>,
    /// What the fetch moved and how long it took.
    pub summary: FetchSummary,
}
