//! The SSH layer: resolve an account into a target, connect with the host key
//! checked against known_hosts, authenticate, and run remote POSIX sh scripts
//! whose arguments never enter a shell command line (see `script`).
//!
//! One `Connection` is one libssh2 session, which is one mutex: a blocking
//! read on one channel blocks every other use of it. Fetch workers use one
//! connection each; the SMTP forward takes its own and drives it non-blocking.

mod auth;
mod error;
pub mod host_keys;
mod script;
pub mod ssh_config;
mod standby;
mod target;

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ssh2::{MethodType, Session};

pub use auth::{key_is_encrypted, run_passphrase_command};
pub use error::{ChangedHostKey, SshError};
pub use host_keys::{fingerprint, HostKey, KnownHosts, Verdict};
#[cfg(test)]
pub(crate) use script::{assert_compacts_and_parses, run_answering, run_locally, Reply};
pub use script::{
    compact, hex, is_eagain, unhex, OpenChannel, RemoteScript, ScriptMode, ScriptOutput,
    ScriptStatus, ScriptStream,
};
#[cfg(test)]
pub(crate) use standby::command_line;
pub use target::{Target, DEFAULT_IDENTITY_FILES, SYSTEM_KNOWN_HOSTS_FILES};

use crate::engine::account::{HostKeyPolicy, TransportCompression};
use crate::engine::os;

/// A host known_hosts has no key for, as shown to whoever decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownHost {
    /// Host name as connected to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Key type (`ssh-ed25519`, ...).
    pub key_type: String,
    /// `SHA256:...`, exactly as OpenSSH prints it.
    pub fingerprint: String,
}

/// The answer to an unknown host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyDecision {
    /// Do not connect.
    Refuse,
    /// Connect this time, record nothing.
    AcceptOnce,
    /// Connect and append the key to known_hosts.
    AcceptAndRecord,
}

/// Questions `connect` may need a person to answer. The dashboard implements
/// it by asking; headless runs use [`NoPrompts`], which refuses.
pub trait Prompter {
    /// known_hosts has no key for this host and the policy is `strict`.
    fn unknown_host(&self, host: &UnknownHost) -> HostKeyDecision {
        let _ = host;
        HostKeyDecision::Refuse
    }

    /// The passphrase of an encrypted key when no `passphrase_command` is
    /// set; `None` skips the key. The engine drops it after one use.
    fn passphrase(&self, key: &Path) -> Option<String> {
        let _ = key;
        None
    }
}

/// A [`Prompter`] that never asks: unknown hosts are refused, encrypted keys
/// without `passphrase_command` are skipped.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPrompts;

impl Prompter for NoPrompts {}

/// How long a channel may stay silent before the connection is declared
/// dead, unless changed with [`Connection::set_idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Silence after which a keepalive is sent (with `want_reply=false`:
/// replies would pile up unfreed in libssh2), unless changed with
/// [`Connection::set_keepalive_interval`].
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// An authenticated SSH session to one server.
pub struct Connection {
    session: Session,
    /// A duplicate of the session's socket, for TCP_INFO and poll(2).
    socket: TcpStream,
    host: String,
    /// The transport compression it was opened with.
    transport: TransportCompression,
    idle_timeout: Duration,
    keepalive_interval: Duration,
    /// A session channel opened ahead of need and not used yet
    /// ([`Connection::request_channel`]): the next step runs on it without
    /// waiting a round trip for its opening.
    ahead: Mutex<script::Ahead>,
    /// A script started ahead, waiting for its step
    /// ([`Connection::keep_ready`]).
    standby: Mutex<standby::Standby>,
}

/// Dropping a connection ends it at once, without waiting on the server:
/// a disconnect is sent if the socket takes it now, then the socket is shut
/// both ways, so that libssh2, freeing the session, fails to send its
/// channels' closes instead of waiting for each answer. sshd answers a
/// channel's close only when its command ends: a stream abandoned on a stop
/// whose command still runs and sends nothing (a claim waiting, a stalled
/// server) held the drop until then, or for libssh2's timeout (the
/// keepalive interval, 15 s). Nothing is lost by not waiting: whatever was
/// written before still goes out ahead of the end of the connection.
impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.nonblocking(|| self.session.disconnect(None, "done", None));
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Opens an authenticated session to `target`.
///
/// `compression` chooses SSH transport compression (zlib@openssh.com) and
/// how our side compresses; like every compression setting of libssh2 it
/// must be made before the handshake, whose key exchange initialises the
/// compressors. The host key is checked against
/// `target.known_hosts_file` and the system-wide files; an unknown host is
/// accepted and recorded (in the user's file) under `accept-new`, and put to
/// `prompter` under `strict`. A changed or revoked key is always refused.
///
/// A server that hangs up during authentication instead of answering is
/// asked once more on a new connection: sshd's MaxAuthTries (too many keys
/// offered) hangs up again and is reported as refused (exit 5), while a link
/// that broke at that moment fails to connect or logs in, a connection
/// failure (exit 7, which `watch` retries) instead of a wrong key.
pub fn connect(
    target: &Target,
    compression: TransportCompression,
    prompter: &dyn Prompter,
) -> Result<Connection, SshError> {
    match connect_once(target, compression, prompter) {
        Err(SshError::AuthRefused { hung_up: true, .. }) => {
            connect_once(target, compression, prompter)
        }
        other => other,
    }
}

fn connect_once(
    target: &Target,
    compression: TransportCompression,
    prompter: &dyn Prompter,
) -> Result<Connection, SshError> {
    let connect_err = |source| SshError::Connect {
        host: target.host.clone(),
        port: target.port,
        source,
    };
    let stream = open_tcp(target).map_err(connect_err)?;
    stream.set_nodelay(true).map_err(connect_err)?;
    let socket = stream.try_clone().map_err(connect_err)?;
    let handshake_err = |source| SshError::Handshake {
        host: target.host.clone(),
        port: target.port,
        source,
    };
    let mut session = Session::new().map_err(handshake_err)?;
    session.set_timeout(millis(target.connect_timeout));
    session.set_compress(compression != TransportCompression::Off);
    if compression == TransportCompression::Zlib {
        set_isolated_lz77(&session).map_err(handshake_err)?;
    }
    session.set_tcp_stream(stream);
    let mut known_hosts =
        KnownHosts::read(&target.known_hosts_file, &target.system_known_hosts_files)?;
    known_hosts.prefer_known_types(&session, &target.host, target.port);
    offer_modern_ciphers(&session);
    session.handshake().map_err(handshake_err)?;
    verify_host_key(&session, target, &mut known_hosts, prompter)?;
    auth::authenticate(&session, &socket, target, prompter)?;
    let mut conn = Connection {
        session,
        socket,
        host: target.host.clone(),
        transport: compression,
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
        ahead: Mutex::new(script::Ahead::Nothing),
        standby: Mutex::new(standby::Standby::new()),
    };
    conn.set_keepalive_interval(DEFAULT_KEEPALIVE_INTERVAL);
    Ok(conn)
}

/// The ciphers offered: libssh2's list less its CBC modes and aes192-ctr
/// (OpenSSH's client no longer offers CBC, and every server that has
/// aes192-ctr has aes128-ctr and aes256-ctr), 144 bytes less in the
/// client's first packet, both directions counted. Before the handshake.
const CIPHERS: &str = "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,\
                       aes128-gcm@openssh.com,aes256-ctr,aes128-ctr";

fn offer_modern_ciphers(session: &Session) {
    for kind in [MethodType::CryptCs, MethodType::CryptSc] {
        // A list this libssh2 cannot take leaves its own.
        let _ = session.method_pref(kind, CIPHERS);
    }
}

/// Switches the session's compressor from Huffman-only (upstream libssh2) to
/// LZ77 with per-connection history (the vendored libssh2's patch, see
/// vendor/libssh2-sys/PATCHED.md). Before the handshake only.
fn set_isolated_lz77(session: &Session) -> Result<(), ssh2::Error> {
    let mut raw = session.raw();
    // SAFETY: `raw` is the live session, exclusively borrowed through its
    // mutex guard for the call; the flag call only stores an int in it.
    let rc = unsafe {
        libssh2_sys::libssh2_session_flag(
            &mut *raw,
            libssh2_sys::LIBSSH2_FLAG_COMPRESS_ISOLATED_LZ77,
            1,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ssh2::Error::new(
            ssh2::ErrorCode::Session(rc),
            "this libssh2 has no isolated LZ77 compression (is vendor/libssh2-sys patched in?)",
        ))
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Connects to the first address of `target.host` that answers in time.
fn open_tcp(target: &Target) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, target.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
    }))
}

/// Applies the known_hosts policy to the key the server just presented.
fn verify_host_key(
    session: &Session,
    target: &Target,
    known_hosts: &mut KnownHosts,
    prompter: &dyn Prompter,
) -> Result<(), SshError> {
    let key = HostKey::of_session(session).ok_or_else(|| SshError::Handshake {
        host: target.host.clone(),
        port: target.port,
        source: ssh2::Error::new(
            ssh2::ErrorCode::Session(-1),
            "the server sent no readable host key",
        ),
    })?;
    let (host, port) = (target.host.as_str(), target.port);
    match known_hosts.check(session, host, port, &key) {
        Verdict::Known => Ok(()),
        Verdict::Revoked { file, line } => Err(SshError::HostKeyRevoked {
            host: host.to_string(),
            port,
            fingerprint: key.fingerprint(),
            known_hosts: file,
            line,
        }),
        Verdict::Changed {
            file,
            line,
            expected_type,
            expected,
        } => Err(SshError::HostKeyChanged(Box::new(ChangedHostKey {
            host: host.to_string(),
            port,
            lookup: host_keys::lookup_name(host, port),
            key_type: key.key_type.clone(),
            expected_type,
            expected,
            got: key.fingerprint(),
            known_hosts: file,
            line,
        }))),
        Verdict::Unknown => {
            let decision = match target.host_key_policy {
                HostKeyPolicy::AcceptNew => HostKeyDecision::AcceptAndRecord,
                HostKeyPolicy::Strict => prompter.unknown_host(&UnknownHost {
                    host: host.to_string(),
                    port,
                    key_type: key.key_type.clone(),
                    fingerprint: key.fingerprint(),
                }),
            };
            match decision {
                HostKeyDecision::Refuse => Err(SshError::HostKeyUnknown {
                    host: host.to_string(),
                    port,
                    key_type: key.key_type.clone(),
                    fingerprint: key.fingerprint(),
                    known_hosts: target.known_hosts_file.clone(),
                }),
                HostKeyDecision::AcceptOnce => Ok(()),
                HostKeyDecision::AcceptAndRecord => known_hosts.append(host, port, &key),
            }
        }
    }
}

impl Connection {
    /// The libssh2 session, for channels this module does not wrap (the
    /// SMTP forward's `direct-tcpip` channels, SFTP).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session's socket, for poll(2) in a non-blocking driver.
    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The host name connected to (for messages).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The transport compression the session was opened with, so that a
    /// caller can tell whether it may use the session for its own work.
    pub fn transport(&self) -> TransportCompression {
        self.transport
    }

    /// Sets how long a remote command may stay silent before the connection
    /// is declared dead (keepalives are sent meanwhile). A script that waits
    /// on a lock needs at least the lock timeout.
    pub fn set_idle_timeout(&mut self, limit: Duration) {
        self.idle_timeout = limit;
    }

    /// Sets after how much silence a keepalive is sent (at least 1 s). Each
    /// blocking libssh2 call waits at most this long before the keepalive
    /// goes out and the call is resumed.
    pub fn set_keepalive_interval(&mut self, interval: Duration) {
        let interval = interval.max(Duration::from_secs(1));
        self.keepalive_interval = interval;
        let secs = u32::try_from(interval.as_secs()).unwrap_or(u32::MAX);
        self.session.set_keepalive(false, secs);
        self.session.set_timeout(millis(interval));
    }

    /// Bytes received on the TCP socket so far, SSH framing included
    /// (`tcpi_bytes_received` of TCP_INFO).
    pub fn socket_bytes_received(&self) -> std::io::Result<u64> {
        self.tcp_info().map(|i| i.tcpi_bytes_received)
    }

    /// Bytes sent on the TCP socket and acknowledged by the peer
    /// (`tcpi_bytes_acked` of TCP_INFO).
    pub fn socket_bytes_sent(&self) -> std::io::Result<u64> {
        self.tcp_info().map(|i| i.tcpi_bytes_acked)
    }

    /// Bytes written to the TCP socket that the peer has not acknowledged
    /// yet, unsent ones included (SIOCOUTQ): while it is not 0,
    /// [`Connection::socket_bytes_sent`] is still going to grow.
    pub fn socket_bytes_unacked(&self) -> std::io::Result<u64> {
        os::tcp_unacked_bytes(self.socket.as_raw_fd())
    }

    fn tcp_info(&self) -> std::io::Result<libc::tcp_info> {
        os::tcp_info(self.socket.as_raw_fd())
    }

    /// Compression negotiated in each direction (client to server, server
    /// to client), e.g. `zlib@openssh.com` or `none`.
    pub fn compression(&self) -> (String, String) {
        let m = |t| self.session.methods(t).unwrap_or("none").to_string();
        (m(ssh2::MethodType::CompCs), m(ssh2::MethodType::CompSc))
    }
}
