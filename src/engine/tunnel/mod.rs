//! The SMTP forward: `ssh -C -L2525:mailhost:25`, built in.
//!
//! A [`Tunnel`] runs on its own thread with one dedicated, compressed,
//! non-blocking SSH session, driven by one `poll(2)` loop over the local
//! listener, the SSH socket and the client sockets. Each accepted connection
//! becomes a `direct-tcpip` channel to the target as seen from the SSH server.
//! The libssh2 rules it follows (see DESIGN.md): a session is one mutex, so
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

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use libssh2_sys::LIBSSH2_ERROR_EAGAIN as EAGAIN;
use ssh2::{BlockDirections, Channel, ErrorCode, Session};

use super::event::{Event, TunnelEvent, TunnelState, TunnelStats};
use super::peer::{self, PeerOwner};
use super::ssh::{self, Connection, SshError};
use crate::engine::account::Account;

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
        let (target_host, target_port) = match &account.forward.target {
            None => ("localhost".to_string(), 25),
            Some(t) => parse_target(t)?,
        };
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

/// The SSH socket hung up (seen by poll(2)).
struct HungUp;

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

/// How a session ended.
enum SessionEnd {
    /// Stopped on request.
    Stopped,
    /// The SSH connection failed; the text says why.
    Dropped(String),
}

/// The forward's thread: owns the listener, the session and the connections.
struct Worker {
    spec: TunnelSpec,
    connect: Connect,
    events: Sender<Event>,
    control: Receiver<Control>,
    wake: UnixStream,
    listener: TcpListener,
    local_addr: SocketAddr,
    stats: TunnelStats,
    /// SSH socket bytes (sent, received) of sessions that already ended.
    socket_base: (u64, u64),
    /// The stats last sent, to send only changes.
    sent_stats: Option<TunnelStats>,
    last_stats: Instant,
    /// No accepting until then (after an accept error such as EMFILE).
    accept_paused_until: Option<Instant>,
    /// This process's user: the only one served unless `allow_other_users`.
    uid: u32,
}

impl Worker {
    fn run(mut self) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            self.state(TunnelState::Connecting);
            match (self.connect)() {
                Ok(link) => {
                    backoff = BACKOFF_FIRST;
                    match self.serve(link) {
                        SessionEnd::Stopped => break,
                        SessionEnd::Dropped(why) => {
                            self.error(format!("SSH connection lost: {why}"))
                        }
                    }
                }
                Err(why) => self.error(format!("cannot connect: {why}")),
            }
            self.state(TunnelState::Reconnecting {
                in_secs: backoff.as_secs(),
            });
            self.emit_stats(true);
            if self.sleep_unless_stopped(backoff) {
                break;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.emit_stats(true);
        // Off means the listen address is free: close the listener first.
        let (events, account) = (self.events.clone(), self.spec.account.clone());
        drop(self);
        let _ = events.send(Event::Tunnel {
            account,
            event: TunnelEvent::State(TunnelState::Off),
        });
    }

    fn send(&self, event: TunnelEvent) {
        let _ = self.events.send(Event::Tunnel {
            account: self.spec.account.clone(),
            event,
        });
    }

    fn state(&self, state: TunnelState) {
        self.send(TunnelEvent::State(state));
    }

    fn error(&mut self, message: String) {
        self.stats.errors += 1;
        self.send(TunnelEvent::Error(message));
    }

    /// Sends the stats if they changed, at most every `STATS_INTERVAL`
    /// unless `now`; returns how long until a pending change may be sent.
    fn emit_stats(&mut self, now: bool) -> Option<Duration> {
        if self.sent_stats == Some(self.stats) {
            return None;
        }
        let since = self.last_stats.elapsed();
        if !now && since < STATS_INTERVAL {
            return Some(STATS_INTERVAL - since);
        }
        self.send(TunnelEvent::Stats(self.stats));
        self.sent_stats = Some(self.stats);
        self.last_stats = Instant::now();
        None
    }

    /// True if a stop came (or the handle went away).
    fn stop_requested(&self) -> bool {
        let mut drain = [0u8; 64];
        while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
        match self.control.try_recv() {
            Ok(Control::Stop) | Err(TryRecvError::Disconnected) => true,
            Err(TryRecvError::Empty) => false,
        }
    }

    /// Waits `delay`, waking early for a stop; true if stopped.
    fn sleep_unless_stopped(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.stop_requested() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [pollfd(self.wake.as_raw_fd(), libc::POLLIN)];
            poll(&mut fds, Some(left));
        }
    }

    /// Serves one SSH session until it drops or a stop comes.
    fn serve(&mut self, link: Connection) -> SessionEnd {
        let session = link.session();
        session.set_blocking(false);
        session.set_keepalive(false, KEEPALIVE_SECS);
        let ssh_fd = link.raw_fd();
        set_user_timeout(ssh_fd, USER_TIMEOUT);
        self.state(TunnelState::Listening(self.local_addr));
        let mut conns: VecDeque<Conn> = VecDeque::new();
        let end = loop {
            if self.stop_requested() {
                break SessionEnd::Stopped;
            }
            self.accept(&mut conns);
            let mut io = RoundIo::default();
            let mut rounds = 0;
            loop {
                io.progress = false;
                self.round(session, &mut conns, &mut io);
                rounds += 1;
                if !io.progress || io.fatal.is_some() || rounds == MAX_ROUNDS {
                    break;
                }
            }
            if let Some(why) = io.fatal.take() {
                break SessionEnd::Dropped(why);
            }
            let mut keepalive_in = None;
            // A keepalive cut in half by a full socket would wedge the
            // session (libssh2 cannot resume it): send only when not congested.
            if !io.send_pending && !io.want_write {
                match session.keepalive_send() {
                    Ok(secs) => keepalive_in = Some(Duration::from_secs(secs.max(1).into())),
                    Err(e) if is_eagain(&e) => {}
                    Err(e) => break SessionEnd::Dropped(e.to_string()),
                }
            }
            self.update_socket_stats(&link);
            let stats_in = self.emit_stats(false);
            let accept_in = self
                .accept_paused_until
                .map(|until| until.saturating_duration_since(Instant::now()));
            let acks_in =
                matches!(link.socket_bytes_unacked(), Ok(n) if n > 0).then_some(ACK_REFRESH);
            let timeout = if io.progress {
                Some(Duration::ZERO)
            } else {
                [keepalive_in, stats_in, accept_in, acks_in]
                    .into_iter()
                    .flatten()
                    .min()
            };
            quick_ack(ssh_fd);
            match self.wait(ssh_fd, &conns, &io, timeout) {
                Ok(()) => {}
                Err(HungUp) => {
                    // One more round lets libssh2 read what came before the
                    // hang-up (and report the disconnect itself).
                    let mut last = RoundIo::default();
                    self.round(session, &mut conns, &mut last);
                    break SessionEnd::Dropped(
                        last.fatal
                            .unwrap_or_else(|| "the server closed the connection".into()),
                    );
                }
            }
        };
        match end {
            SessionEnd::Stopped => self.close_all(session, ssh_fd, &mut conns),
            SessionEnd::Dropped(_) => {
                // Make every libssh2 call on this session fail at once rather
                // than wait: the peer is gone.
                // SAFETY: shutdown(2) on a socket we hold a handle on.
                unsafe { libc::shutdown(ssh_fd, libc::SHUT_RDWR) };
                for conn in conns.drain(..) {
                    let _ = conn.client.shutdown(Shutdown::Both);
                }
            }
        }
        self.update_socket_stats(&link);
        self.socket_base = self.socket_totals(&link);
        self.stats.live = 0;
        end
    }

    /// Accepts every waiting client into the open queue.
    fn accept(&mut self, conns: &mut VecDeque<Conn>) {
        if self.accept_paused() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((client, peer)) => {
                    if let Some(why) = self.refusal(&client, peer) {
                        self.error(why);
                        continue;
                    }
                    if client.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = client.set_nodelay(true);
                    self.stats.total += 1;
                    self.stats.live += 1;
                    conns.push_back(Conn::new(client, peer));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: the listener stays readable, so
                    // stop accepting for a while instead of spinning.
                    self.error(format!("accept on {}: {e}", self.local_addr));
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Why a just-accepted connection is not served, if it is not: its
    /// client socket belongs to another local user (the owner of a local
    /// TCP peer is in /proc/net/tcp*), or a loopback client cannot be found
    /// there. A peer on another machine (only with `allow_non_loopback`)
    /// is not in those tables and is served; so is any peer where no such
    /// tables exist (not Linux).
    fn refusal(&self, client: &TcpStream, peer: SocketAddr) -> Option<String> {
        if self.spec.allow_other_users {
            return None;
        }
        let refused = |why: String| {
            Some(format!(
                "refused a connection from {peer}: {why}; `forward.allow_other_users = true` \
                 lets other local users send mail through your SSH login"
            ))
        };
        let ours = match client.local_addr() {
            Ok(ours) => ours,
            Err(e) => return refused(format!("its local address is unknown ({e})")),
        };
        match peer::owner_of_peer(ours, peer) {
            Ok(PeerOwner::Uid(uid)) if uid == self.uid => None,
            Ok(PeerOwner::Uid(uid)) => refused(format!(
                "it belongs to {}, not to this forward's user",
                peer::user_label(uid)
            )),
            Ok(PeerOwner::NotFound) if peer.ip().is_loopback() => {
                refused("its owner is not in /proc/net/tcp".into())
            }
            Ok(PeerOwner::NotFound | PeerOwner::Unknowable) => None,
            Err(e) => refused(format!("/proc/net/tcp cannot be read ({e})")),
        }
    }

    /// True while accepting is paused after an accept error.
    fn accept_paused(&mut self) -> bool {
        match self.accept_paused_until {
            Some(until) if Instant::now() < until => true,
            _ => {
                self.accept_paused_until = None;
                false
            }
        }
    }

    /// One pass of non-blocking work over every connection.
    fn round(&mut self, session: &Session, conns: &mut VecDeque<Conn>, io: &mut RoundIo) {
        let mut opening = false;
        for conn in conns.iter_mut() {
            if io.fatal.is_some() {
                return;
            }
            if conn.channel.is_none() && !conn.finished {
                if opening {
                    continue;
                }
                opening = true;
                self.open(session, conn, io);
            }
            if conn.channel.is_some() {
                conn.pump(session, io, &mut self.stats);
            }
        }
        let before = conns.len();
        conns.retain(|c| !c.finished);
        self.stats.live -= (before - conns.len()) as u64;
        for message in io.errors.drain(..) {
            self.error(message);
        }
    }

    /// Advances the one channel open in progress.
    fn open(&self, session: &Session, conn: &mut Conn, io: &mut RoundIo) {
        let ip = conn.peer.ip().to_string();
        match session.channel_direct_tcpip(
            &self.spec.target_host,
            self.spec.target_port,
            Some((&ip, conn.peer.port())),
        ) {
            Ok(channel) => {
                conn.channel = Some(channel);
                io.progress = true;
            }
            Err(e) if is_eagain(&e) => {
                io.blocked(session, true);
            }
            Err(e) if is_channel_error(&e) => {
                io.errors.push(format!(
                    "the server could not open {}:{} for {}: {}",
                    self.spec.target_host,
                    self.spec.target_port,
                    conn.peer,
                    e.message()
                ));
                // A clean close (FIN) tells the SMTP client the server is away.
                let _ = conn.client.shutdown(Shutdown::Both);
                conn.finished = true;
                io.progress = true;
            }
            Err(e) => io.fatal = Some(e.to_string()),
        }
    }

    /// Waits in poll(2) for any socket that can make progress, a stop, or
    /// the timeout. Errs when the SSH socket hung up.
    fn wait(
        &self,
        ssh_fd: RawFd,
        conns: &VecDeque<Conn>,
        io: &RoundIo,
        timeout: Option<Duration>,
    ) -> Result<(), HungUp> {
        let mut fds = Vec::with_capacity(3 + conns.len());
        fds.push(pollfd(self.wake.as_raw_fd(), libc::POLLIN));
        let listen_events = if self.accept_paused_until.is_some() {
            0
        } else {
            libc::POLLIN
        };
        fds.push(pollfd(self.listener.as_raw_fd(), listen_events));
        let mut ssh_events = libc::POLLRDHUP;
        if io.want_read {
            ssh_events |= libc::POLLIN;
        }
        if io.want_write {
            ssh_events |= libc::POLLOUT;
        }
        fds.push(pollfd(ssh_fd, ssh_events));
        for conn in conns {
            fds.push(pollfd(conn.client.as_raw_fd(), conn.client_events()));
        }
        poll(&mut fds, timeout);
        let ssh = fds[2].revents;
        if ssh & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0 {
            return Err(HungUp);
        }
        Ok(())
    }

    /// Stop: closes every client (FIN), then closes each channel and waits
    /// for the server's close, bounded by `STOP_GRACE`, then disconnects.
    fn close_all(&mut self, session: &Session, ssh_fd: RawFd, conns: &mut VecDeque<Conn>) {
        for conn in conns.iter_mut() {
            let _ = conn.client.shutdown(Shutdown::Both);
            conn.abort();
        }
        let deadline = Instant::now() + STOP_GRACE;
        while !conns.is_empty() && Instant::now() < deadline {
            let mut io = RoundIo::default();
            for conn in conns.iter_mut() {
                if conn.channel.is_none() {
                    conn.finished = true;
                } else {
                    conn.pump(session, &mut io, &mut self.stats);
                }
            }
            conns.retain(|c| !c.finished);
            if io.fatal.is_some() {
                break;
            }
            if !io.progress {
                let mut ssh_events = libc::POLLIN;
                if io.want_write {
                    ssh_events |= libc::POLLOUT;
                }
                let mut fds = [pollfd(ssh_fd, ssh_events)];
                poll(
                    &mut fds,
                    Some(deadline.saturating_duration_since(Instant::now())),
                );
                if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    break;
                }
            }
        }
        conns.clear();
        session.set_blocking(true);
        session.set_timeout(1000);
        let _ = session.disconnect(None, "mailhaul: SMTP forward stopped", None);
    }

    /// Bytes (sent, received) on the current SSH socket plus earlier ones.
    fn socket_totals(&self, link: &Connection) -> (u64, u64) {
        let sent = link.socket_bytes_sent().unwrap_or(0);
        let received = link.socket_bytes_received().unwrap_or(0);
        (self.socket_base.0 + sent, self.socket_base.1 + received)
    }

    fn update_socket_stats(&mut self, link: &Connection) {
        let (sent, received) = self.socket_totals(link);
        self.stats.socket_sent = sent;
        self.stats.socket_received = received;
    }
}

/// What one round of work found out.
#[derive(Default)]
struct RoundIo {
    /// Something moved (bytes, EOF, an open or a close finished).
    progress: bool,
    /// libssh2 waits for the SSH socket to become readable.
    want_read: bool,
    /// libssh2 waits for the SSH socket to become writable.
    want_write: bool,
    /// A packet is partly sent: nothing else may be sent (keepalive) until
    /// the same call completes it.
    send_pending: bool,
    /// Per-connection errors to report.
    errors: Vec<String>,
    /// The session is dead, and why.
    fatal: Option<String>,
}

impl RoundIo {
    /// Records which way libssh2 is blocked after an EAGAIN; `sending` when
    /// the call that blocked was sending a packet. True when a packet is
    /// left half-sent (the socket is full), so the same call must come again.
    fn blocked(&mut self, session: &Session, sending: bool) -> bool {
        let (read, write) = match session.block_directions() {
            BlockDirections::Inbound | BlockDirections::None => (true, false),
            BlockDirections::Outbound => (false, true),
            BlockDirections::Both => (true, true),
        };
        self.want_read |= read;
        self.want_write |= write;
        let half_sent = sending && write;
        self.send_pending |= half_sent;
        half_sent
    }
}

/// A byte buffer with a read position: bytes `start..end` wait to be written.
struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            data: vec![0; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Room for more bytes: true when fewer than `TOP_UP_BELOW` wait.
    fn wants_more(&self) -> bool {
        self.end - self.start < TOP_UP_BELOW
    }

    /// Moves the waiting bytes to the front and returns the free space after
    /// them. Not while a write of those bytes is pending in libssh2.
    fn free_space(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

/// One forwarded client connection and its channel.
struct Conn {
    client: TcpStream,
    peer: SocketAddr,
    channel: Option<Channel>,
    /// Client → channel bytes not yet accepted by the channel.
    up: Buf,
    /// Channel → client bytes not yet accepted by the client socket.
    down: Buf,
    /// The client shut down its sending side (or failed).
    client_eof: bool,
    /// EOF sent on the channel.
    eof_sent: bool,
    /// The channel delivered EOF (or closed).
    channel_eof: bool,
    /// shutdown(WR) done on the client socket.
    client_shut: bool,
    /// The last channel write returned EAGAIN mid-packet: the same bytes must
    /// be offered again before anything else is sent.
    write_blocked: bool,
    /// Stop moving data, just close (an error or a stop).
    aborted: bool,
    /// `close()` went through; waiting for the server's close.
    close_sent: bool,
    /// Closed on both sides; to be removed.
    finished: bool,
}

impl Conn {
    fn new(client: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            client,
            peer,
            channel: None,
            up: Buf::new(),
            down: Buf::new(),
            client_eof: false,
            eof_sent: false,
            channel_eof: false,
            client_shut: false,
            write_blocked: false,
            aborted: false,
            close_sent: false,
            finished: false,
        }
    }

    /// Stops data transfer and goes on to close the channel (after finishing
    /// a half-sent packet, which libssh2 requires).
    fn abort(&mut self) {
        self.aborted = true;
        self.client_eof = true;
        self.client_shut = true;
    }

    /// poll(2) events that would let this client socket make progress.
    fn client_events(&self) -> libc::c_short {
        let mut events = 0;
        if self.channel.is_some() && !self.aborted {
            if !self.client_eof && self.up.is_empty() {
                events |= libc::POLLIN;
            }
            if !self.down.is_empty() {
                events |= libc::POLLOUT;
            }
        }
        events
    }

    /// Moves bytes both ways until everything would block, handles the
    /// half-closes, and closes the channel when both sides are done.
    fn pump(&mut self, session: &Session, io: &mut RoundIo, stats: &mut TunnelStats) {
        if let Some(mut channel) = self.channel.take() {
            self.pump_channel(&mut channel, session, io, stats);
            self.channel = Some(channel);
        }
    }

    fn pump_channel(
        &mut self,
        channel: &mut Channel,
        session: &Session,
        io: &mut RoundIo,
        stats: &mut TunnelStats,
    ) {
        let peer = self.peer;
        let fail = |io: &mut RoundIo, what: &str, e: &dyn std::fmt::Display| {
            io.errors
                .push(format!("connection from {peer}: {what}: {e}"));
        };
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            // Client → channel. Bytes already offered to libssh2 in a write
            // that blocked must stay where they are.
            if !self.aborted && !self.client_eof && self.up.wants_more() && !self.write_blocked {
                match (&self.client).read(self.up.free_space()) {
                    Ok(0) => {
                        self.client_eof = true;
                        moved = true;
                    }
                    Ok(n) => {
                        self.up.end += n;
                        stats.bytes_up += n as u64;
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                    Err(e) => {
                        fail(io, "reading from the client", &e);
                        self.abort();
                    }
                }
            }
            if !self.up.is_empty() && (!self.aborted || self.write_blocked) {
                match channel.write(self.up.pending()) {
                    Ok(n) => {
                        self.up.consume(n);
                        self.write_blocked = false;
                        moved = true;
                    }
                    Err(e) => match ssh_code(&e) {
                        Some(EAGAIN) => self.write_blocked = io.blocked(session, true),
                        code => {
                            self.write_blocked = false;
                            if !is_fatal(code) {
                                fail(io, "sending to the server", &e);
                                self.abort();
                            } else {
                                io.fatal = Some(e.to_string());
                                return;
                            }
                        }
                    },
                }
            }
            if self.client_eof && !self.eof_sent && self.up.is_empty() && !self.aborted {
                match channel.send_eof() {
                    Ok(()) => {
                        self.eof_sent = true;
                        moved = true;
                    }
                    Err(e) if is_eagain(&e) => {
                        io.blocked(session, true);
                    }
                    Err(e) if is_channel_error(&e) => {
                        self.eof_sent = true;
                        moved = true;
                    }
                    Err(e) => {
                        io.fatal = Some(e.to_string());
                        return;
                    }
                }
            }
            // Channel → client.
            if !self.aborted && !self.channel_eof && self.down.is_empty() {
                match channel.read(&mut self.down.data) {
                    Ok(0) => {
                        self.channel_eof = true;
                        moved = true;
                    }
                    Ok(n) => {
                        self.down.end = n;
                        moved = true;
                    }
                    Err(e) => match ssh_code(&e) {
                        Some(EAGAIN) => {
                            io.blocked(session, false);
                        }
                        code if !is_fatal(code) => {
                            self.channel_eof = true;
                            moved = true;
                        }
                        _ => {
                            io.fatal = Some(e.to_string());
                            return;
                        }
                    },
                }
            }
            if !self.down.is_empty() && !self.aborted {
                match (&self.client).write(self.down.pending()) {
                    Ok(n) => {
                        self.down.consume(n);
                        stats.bytes_down += n as u64;
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                    Err(e) => {
                        fail(io, "writing to the client", &e);
                        self.abort();
                    }
                }
            }
            if self.channel_eof && self.down.is_empty() && !self.client_shut {
                let _ = self.client.shutdown(Shutdown::Write);
                self.client_shut = true;
                moved = true;
            }
            // Close once both directions are done (or aborted), and no
            // half-sent packet is left.
            let done = (self.eof_sent || self.aborted) && self.client_shut;
            if done && !self.write_blocked {
                if !self.close_sent {
                    match channel.close() {
                        Ok(()) => {
                            self.close_sent = true;
                            moved = true;
                        }
                        Err(e) if is_eagain(&e) => {
                            io.blocked(session, true);
                        }
                        Err(e) if is_channel_error(&e) => self.close_sent = true,
                        Err(e) => {
                            io.fatal = Some(e.to_string());
                            return;
                        }
                    }
                }
                if self.close_sent {
                    match channel.wait_close() {
                        Ok(()) => {
                            self.finished = true;
                            io.progress = true;
                            return;
                        }
                        Err(e) if is_eagain(&e) => {
                            io.blocked(session, false);
                        }
                        Err(e) if is_channel_error(&e) => {
                            self.finished = true;
                            io.progress = true;
                            return;
                        }
                        Err(e) => {
                            io.fatal = Some(e.to_string());
                            return;
                        }
                    }
                }
            }
            if !moved {
                return;
            }
            io.progress = true;
        }
    }
}

/// The libssh2 error code inside an error from a channel's Read/Write.
fn ssh_code(e: &io::Error) -> Option<i32> {
    if e.kind() == io::ErrorKind::WouldBlock {
        return Some(EAGAIN);
    }
    match e.get_ref()?.downcast_ref::<ssh2::Error>()?.code() {
        ErrorCode::Session(code) => Some(code),
        ErrorCode::SFTP(_) => None,
    }
}

/// True when a channel I/O error means the whole session is gone.
fn is_fatal(code: Option<i32>) -> bool {
    match code {
        Some(code) => !CHANNEL_ERRORS.contains(&code),
        // A plain OS error on the session's socket.
        None => true,
    }
}

fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(EAGAIN)
}

fn is_channel_error(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::Session(code) if CHANNEL_ERRORS.contains(&code))
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Sets TCP_USER_TIMEOUT: unacknowledged data older than `limit` fails the
/// connection. Best effort: without it, only detection is slower.
fn set_user_timeout(fd: RawFd, limit: Duration) {
    let ms = limit.as_millis().min(u32::MAX as u128) as libc::c_uint;
    // SAFETY: setsockopt reads `size_of::<c_uint>()` bytes from `&ms`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        );
    }
}

/// Asks the kernel to acknowledge what arrives next at once (TCP_QUICKACK,
/// which it clears again by itself). sshd leaves Nagle on for sessions
/// without a terminal, so a small packet right after another (the SMTP
/// greeting after the channel-open confirmation) waits for our ACK, and a
/// delayed ACK costs 40 ms per exchange.
fn quick_ack(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&on`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// poll(2); `None` waits forever. EINTR counts as a wakeup.
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) {
    let ms = timeout.map_or(-1, |t| {
        // Round up so that a 0.4 ms wait does not become a busy 0.
        t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
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
