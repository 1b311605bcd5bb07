//! The SMTP forward: `ssh -C -L2525:mailhost:25`, built in.
//!
//! A [`Tunnel`] runs on its own thread with one dedicated, compressed,
//! non-blocking SSH session, driven by one `poll(2)` loop over the local
//! listener, the SSH socket and the client sockets. Each accepted connection
//! becomes a `direct-tcpip` channel to the target as seen from the SSH server.
//! The libssh2 rules it follows (docs/design.md): a session is one mutex, so
//! nothing here ever blocks on it; only one channel open may be in progress,
//! so opens are serialized and the same call is retried on EAGAIN; after a
//! write returns EAGAIN the same leading bytes are offered again; `close()` is
//! followed by `wait_close()`; keepalives do not ask for a reply. When the SSH
//! connection drops, the worker reconnects with exponential backoff while the
//! listener stays bound (new clients wait in its backlog).
//!
//! Two measured details (docs/bench-tunnel.md): the SSH socket asks for
//! immediate ACKs (`TCP_QUICKACK`), which saves 40 ms per SMTP connection
//! against `ssh -L`; and what we send is compressed as `forward.compression`
//! says: by default LZ77 whose history never crosses from one connection to
//! another (the vendored libssh2's patch), which shrinks mail ~3.9x as
//! OpenSSH's shared zlib stream does, where upstream libssh2's Huffman-only
//! coding gets ~1.5x.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::event::{Event, TunnelStats};
use super::peer;
use super::ssh::{self, Connection, SshError};
use crate::engine::account::Account;

mod conn;
mod worker;

use worker::Worker;

/// Bytes buffered per direction per connection.
const BUF_SIZE: usize = 64 * 1024;
/// Fewer client bytes than this waiting to go up are topped up with what the
/// client has sent since, before they are sent as a packet of their own: the
/// tail of a bulk read (through sshd, 64 KiB go as 32,700 + 32,700 + 136)
/// would otherwise make a small packet, after which the isolated LZ77
/// compressor starts the stream again without history. Equal to the
/// compressor's bulk threshold (vendor/libssh2-sys/PATCHED.md).
const TOP_UP_BELOW: usize = 4096;
/// Seconds between keepalives on an idle SSH session.
const KEEPALIVE_SECS: u32 = 30;
/// Stats are sent at most this often (and only when they changed).
const STATS_INTERVAL: Duration = Duration::from_millis(250);
/// First wait before reconnecting a dropped session; it doubles per failure.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long accepting pauses after an accept error (e.g. out of descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(500);
/// A server that stops acknowledging (keepalives included) for this long is
/// declared gone (TCP_USER_TIMEOUT), instead of after TCP's ~15 minutes.
const USER_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a stop waits for channels to close before dropping the session.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// While sent bytes wait for the server's ACK, the socket counters are read
/// again this often (an ACK does not wake poll(2)), so that the stats end on
/// the true figure rather than on the one before the last ACK.
const ACK_REFRESH: Duration = Duration::from_millis(50);
/// Rounds of non-blocking work before the loop polls again (fairness).
const MAX_ROUNDS: usize = 16;

/// libssh2 error codes that concern one channel, not the whole session.
const CHANNEL_ERRORS: [i32; 9] = [
    libssh2_sys::LIBSSH2_ERROR_CHANNEL_OUTOFORDER,
    // Open refused: target port closed, forwarding denied.
    libssh2_sys::LIBSSH2_ERROR_CHANNEL_FAILURE,
    libssh2_sys::LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED,
    libssh2_sys::LIBSSH2_ERROR_CHANNEL_UNKNOWN,
    libssh2_sys::LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED,
    libssh2_sys::LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED,
    libssh2_sys::LIBSSH2_ERROR_CHANNEL_CLOSED,
    libssh2_sys::LIBSSH2_ERROR_CHANNEL_EOF_SENT,
    libssh2_sys::LIBSSH2_ERROR_BAD_USE,
];

/// Opens a fresh, authenticated SSH session for the forward, with transport
/// compression as configured; called again on every reconnect. The error
/// is shown to the user.
pub type Connect = Box<dyn FnMut() -> Result<Connection, SshError> + Send>;

/// The usual way to connect for `account`: its target as `~/.ssh/config`
/// resolves it, host key checked, compression as `forward.compression`
/// says, never prompting (an unknown host under `strict` is an error event).
pub fn connector(account: &Account) -> Connect {
    let account = account.clone();
    Box::new(move || {
        let target = ssh::Target::resolve_with_user_config(&account)?;
        ssh::connect(&target, account.forward.compression, &ssh::NoPrompts)
    })
}

/// Where a forward listens and where its connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// The account's name, used in events.
    pub account: String,
    /// Local listen address.
    pub listen: SocketAddr,
    /// Target host as the SSH server resolves it.
    pub target_host: String,
    /// Target port.
    pub target_port: u16,
    /// Serve other local users' connections too (`forward.allow_other_users`).
    pub allow_other_users: bool,
}

impl TunnelSpec {
    /// The forward of `account`: its `forward.listen`, and its `forward.target`
    /// or else port 25 on the SSH server itself (`localhost:25` seen from
    /// there, which is the mail host).
    pub fn from_account(account: &Account) -> Result<TunnelSpec, ForwardSpecError> {
        let listen = account.forward.listen.get_ref();
        let listen: SocketAddr = listen
            .parse()
            .map_err(|source| ForwardSpecError::BadListen {
                listen: listen.clone(),
                source,
            })?;
        if !listen.ip().is_loopback() && !account.forward.allow_non_loopback {
            return Err(ForwardSpecError::NotLoopback { listen });
        }
        let (target_host, target_port) = forward_target(account)?;
        Ok(TunnelSpec {
            account: account.name.clone(),
            listen,
            target_host,
            target_port,
            allow_other_users: account.forward.allow_other_users,
        })
    }
}

/// Why an account's forward settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ForwardSpecError {
    /// `forward.listen` is not an address:port.
    #[error("forward.listen `{listen}`: {source}")]
    BadListen {
        /// As written.
        listen: String,
        /// Why it does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
    /// `forward.listen` is not loopback and that was not allowed.
    #[error(
        "forward.listen {listen} is not a loopback address; set \
         `allow_non_loopback = true` to let other machines use this forward"
    )]
    NotLoopback {
        /// The address.
        listen: SocketAddr,
    },
    /// `forward.target` is not host:port.
    #[error("forward.target `{target}` is not host:port")]
    BadTarget {
        /// As written.
        target: String,
    },
}

/// Where the forward's connections go, as the SSH server resolves it:
/// `forward.target`, else port 25 on the server itself (`localhost:25`
/// seen from there, which is the mail host). `send = "smtp"` delivers the
/// outbox there too.
pub fn forward_target(account: &Account) -> Result<(String, u16), ForwardSpecError> {
    match &account.forward.target {
        None => Ok(("localhost".to_string(), 25)),
        Some(t) => parse_target(t),
    }
}

/// Splits `host:port` (`[v6]:port` too).
fn parse_target(target: &str) -> Result<(String, u16), ForwardSpecError> {
    let bad = || ForwardSpecError::BadTarget {
        target: target.to_string(),
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// A bind error, with who holds the address when it is in use: a mail
/// client pointed at this port would otherwise hand its AUTH to them.
fn address_taken(e: io::Error, listen: SocketAddr) -> io::Error {
    if e.kind() != io::ErrorKind::AddrInUse {
        return e;
    }
    let who = peer::describe_listener(listen.port())
        .unwrap_or_else(|| "another program (its owner cannot be told)".into());
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "{listen} is already in use by {who}; the forward does not start (a mail client \
             pointed at it would give its mail and AUTH to that program)"
        ),
    )
}

/// What the handle tells the worker.
enum Control {
    /// Close every connection cleanly, end the session, stop.
    Stop,
}

/// Starts SMTP forwards.
pub struct Tunnel;

impl Tunnel {
    /// Binds the listener now (so that a busy or forbidden address is an
    /// immediate error, naming who holds a busy one where /proc tells) and
    /// starts the worker thread, which connects with `connect` and reports
    /// on `events` until stopped.
    pub fn start(
        spec: TunnelSpec,
        connect: Connect,
        events: Sender<Event>,
    ) -> io::Result<TunnelHandle> {
        let listener = TcpListener::bind(spec.listen).map_err(|e| address_taken(e, spec.listen))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let worker = Worker {
            spec,
            connect,
            events,
            control: control_rx,
            wake: wake_rx,
            listener,
            local_addr,
            stats: TunnelStats::default(),
            socket_base: (0, 0),
            sent_stats: None,
            last_stats: Instant::now() - STATS_INTERVAL,
            accept_paused_until: None,
            // SAFETY: geteuid has no preconditions and cannot fail.
            uid: unsafe { libc::geteuid() },
        };
        let thread = std::thread::Builder::new()
            .name(format!("tunnel-{}", worker.spec.account))
            .spawn(move || worker.run())?;
        Ok(TunnelHandle {
            control: control_tx,
            wake: wake_tx,
            thread: Some(thread),
            local_addr,
        })
    }
}

/// A running forward; stopping it (or dropping the handle) closes open
/// connections cleanly and ends the SSH session.
pub struct TunnelHandle {
    control: Sender<Control>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl TunnelHandle {
    /// The address actually listened on (the port is real even when the
    /// config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the forward and waits for its thread to end (up to a few
    /// seconds while channels close, longer if a connection attempt is
    /// under way).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    /// Asks the forward to stop and returns at once, for callers that must
    /// not block (the dashboard): the thread closes the connections in the
    /// background and reports `TunnelState::Off` when it is done and the
    /// listen address is free again.
    pub fn request_stop(mut self) {
        self.signal_stop();
        // Dropping the join handle detaches the thread.
        self.thread = None;
    }

    fn signal_stop(&self) {
        let _ = self.control.send(Control::Stop);
        let _ = (&self.wake).write(&[1]);
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.signal_stop();
            let _ = thread.join();
        }
    }
}

impl Drop for TunnelHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parses_host_port_and_bracketed_v6() {
        assert_eq!(parse_target("mail:25").unwrap(), ("mail".into(), 25));
        assert_eq!(parse_target("[::1]:587").unwrap(), ("::1".into(), 587));
        assert!(parse_target("mail").is_err());
        assert!(parse_target(":25").is_err());
        assert!(parse_target("mail:smtp").is_err());
    }

    #[test]
    fn non_loopback_listen_needs_the_explicit_setting() {
        let text = "[[account]]\nname = \"a\"\nhost = \"h\"\n\
                    [account.forward]\nlisten = \"0.0.0.0:2525\"\nallow_non_loopback = true\n";
        let mut account = crate::engine::account::first_account(text);
        assert_eq!(
            TunnelSpec::from_account(&account).unwrap().listen,
            "0.0.0.0:2525".parse().unwrap()
        );
        account.forward.allow_non_loopback = false;
        let e = TunnelSpec::from_account(&account).unwrap_err();
        assert!(e.to_string().contains("allow_non_loopback"), "{e}");
    }

    #[test]
    fn default_target_is_port_25_on_the_server() {
        let account =
            crate::engine::account::first_account("[[account]]\nname = \"a\"\nhost = \"h\"\n");
        let spec = TunnelSpec::from_account(&account).unwrap();
        assert_eq!(spec.listen, "127.0.0.1:2525".parse().unwrap());
        assert_eq!(
            (spec.target_host.as_str(), spec.target_port),
            ("localhost", 25)
        );
    }
}
