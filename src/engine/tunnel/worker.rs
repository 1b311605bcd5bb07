//! The forward's worker thread: connects (and reconnects with backoff),
//! then runs the one poll(2) loop over the listener, the SSH socket and the
//! clients, in rounds of non-blocking work, until it is stopped.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use ssh2::Session;

use crate::engine::event::{Event, TunnelEvent, TunnelState, TunnelStats};
use crate::engine::peer::{self, PeerOwner};
use crate::engine::ssh::{is_eagain, Connection};

use super::conn::*;
use super::*;
use crate::engine::os::{poll, pollfd, quick_ack, set_user_timeout};

/// How a session ended.
pub(super) enum SessionEnd {
    /// Stopped on request.
    Stopped,
    /// The SSH connection failed; the text says why.
    Dropped(String),
}

/// The SSH socket hung up (seen by poll(2)).
pub(super) struct HungUp;

/// The forward's thread: owns the listener, the session and the connections.
pub(super) struct Worker {
    pub(super) spec: TunnelSpec,
    pub(super) connect: Connect,
    pub(super) events: Sender<Event>,
    pub(super) control: Receiver<Control>,
    pub(super) wake: UnixStream,
    pub(super) listener: TcpListener,
    pub(super) local_addr: SocketAddr,
    pub(super) stats: TunnelStats,
    /// SSH socket bytes (sent, received) of sessions that already ended.
    pub(super) socket_base: (u64, u64),
    /// The stats last sent, to send only changes.
    pub(super) sent_stats: Option<TunnelStats>,
    pub(super) last_stats: Instant,
    /// No accepting until then (after an accept error such as EMFILE).
    pub(super) accept_paused_until: Option<Instant>,
    /// This process's user: the only one served unless `allow_other_users`.
    pub(super) uid: u32,
}

impl Worker {
    pub(super) fn run(mut self) {
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

    pub(super) fn send(&self, event: TunnelEvent) {
        let _ = self.events.send(Event::Tunnel {
            account: self.spec.account.clone(),
            event,
        });
    }

    pub(super) fn state(&self, state: TunnelState) {
        self.send(TunnelEvent::State(state));
    }

    pub(super) fn error(&mut self, message: String) {
        self.stats.errors += 1;
        self.send(TunnelEvent::Error(message));
    }

    /// Sends the stats if they changed, at most every `STATS_INTERVAL`
    /// unless `now`; returns how long until a pending change may be sent.
    pub(super) fn emit_stats(&mut self, now: bool) -> Option<Duration> {
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
    pub(super) fn stop_requested(&self) -> bool {
        let mut drain = [0u8; 64];
        while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
        match self.control.try_recv() {
            Ok(Control::Stop) | Err(TryRecvError::Disconnected) => true,
            Err(TryRecvError::Empty) => false,
        }
    }

    /// Waits `delay`, waking early for a stop; true if stopped.
    pub(super) fn sleep_unless_stopped(&self, delay: Duration) -> bool {
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
    pub(super) fn serve(&mut self, link: Connection) -> SessionEnd {
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
    pub(super) fn accept(&mut self, conns: &mut VecDeque<Conn>) {
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
    pub(super) fn accept_paused(&mut self) -> bool {
        match self.accept_paused_until {
            Some(until) if Instant::now() < until => true,
            _ => {
                self.accept_paused_until = None;
                false
            }
        }
    }

    /// One pass of non-blocking work over every connection.
    pub(super) fn round(
        &mut self,
        session: &Session,
        conns: &mut VecDeque<Conn>,
        io: &mut RoundIo,
    ) {
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
    pub(super) fn open(&self, session: &Session, conn: &mut Conn, io: &mut RoundIo) {
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
    pub(super) fn wait(
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
    pub(super) fn close_all(
        &mut self,
        session: &Session,
        ssh_fd: RawFd,
        conns: &mut VecDeque<Conn>,
    ) {
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
    pub(super) fn socket_totals(&self, link: &Connection) -> (u64, u64) {
        let sent = link.socket_bytes_sent().unwrap_or(0);
        let received = link.socket_bytes_received().unwrap_or(0);
        (self.socket_base.0 + sent, self.socket_base.1 + received)
    }

    pub(super) fn update_socket_stats(&mut self, link: &Connection) {
        let (sent, received) = self.socket_totals(link);
        self.stats.socket_sent = sent;
        self.stats.socket_received = received;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker on a loopback listener that takes `uid` for its user and
    /// never connects (only its refusal is asked).
    fn worker(allow_other_users: bool, uid: u32) -> Worker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local_addr = listener.local_addr().unwrap();
        let (wake, _) = UnixStream::pair().unwrap();
        let (events, _) = crossbeam_channel::unbounded();
        let (_, control) = crossbeam_channel::unbounded();
        Worker {
            spec: TunnelSpec {
                account: "a".into(),
                listen: local_addr,
                target_host: "localhost".into(),
                target_port: 25,
                allow_other_users,
            },
            connect: Box::new(|| panic!("this test does not connect")),
            events,
            control,
            wake,
            listener,
            local_addr,
            stats: TunnelStats::default(),
            socket_base: (0, 0),
            sent_stats: None,
            last_stats: Instant::now(),
            accept_paused_until: None,
            uid,
        }
    }

    /// A loopback client is served only when its socket belongs to the
    /// forward's user (here: the test's own connection, told apart by the
    /// worker's uid), or when other users are allowed; a loopback peer
    /// that is not in /proc/net/tcp is refused, a peer on another machine
    /// (only with allow_non_loopback) is served.
    #[test]
    fn only_the_forwards_own_user_is_served() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let other = me.wrapping_add(1);
        let ours = worker(false, me);
        let _client = TcpStream::connect(ours.local_addr).unwrap();
        let (server, peer) = ours.listener.accept().unwrap();
        assert_eq!(ours.refusal(&server, peer), None);
        let why = worker(false, other).refusal(&server, peer).unwrap();
        assert!(why.contains("it belongs to"), "{why}");
        assert!(why.contains("not to this forward's user"), "{why}");
        assert_eq!(worker(true, other).refusal(&server, peer), None);

        let unseen: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let why = ours.refusal(&server, unseen).unwrap();
        assert!(why.contains("not in /proc/net/tcp"), "{why}");
        let remote: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert_eq!(ours.refusal(&server, remote), None);
    }
}
