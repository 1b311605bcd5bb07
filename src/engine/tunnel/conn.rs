//! One forwarded SMTP connection: the client socket, its `direct-tcpip`
//! channel and a buffer each way, moved along without ever blocking on the
//! session (libssh2's EAGAIN rules), and how libssh2's errors are sorted
//! into those of one channel and those of the whole session.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use libssh2_sys::LIBSSH2_ERROR_EAGAIN as EAGAIN;
use ssh2::{BlockDirections, Channel, ErrorCode, Session};

use crate::engine::event::TunnelStats;
use crate::engine::ssh::is_eagain;

use super::*;

/// A byte buffer with a read position: bytes `start..end` wait to be written.
pub(super) struct Buf {
    pub(super) data: Box<[u8]>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Buf {
    pub(super) fn new() -> Buf {
        Buf {
            data: vec![0; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub(super) fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Room for more bytes: true when fewer than `TOP_UP_BELOW` wait.
    pub(super) fn wants_more(&self) -> bool {
        self.end - self.start < TOP_UP_BELOW
    }

    /// Moves the waiting bytes to the front and returns the free space after
    /// them. Not while a write of those bytes is pending in libssh2.
    pub(super) fn free_space(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

/// One forwarded client connection and its channel.
pub(super) struct Conn {
    pub(super) client: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) channel: Option<Channel>,
    /// Client → channel bytes not yet accepted by the channel.
    pub(super) up: Buf,
    /// Channel → client bytes not yet accepted by the client socket.
    pub(super) down: Buf,
    /// The client shut down its sending side (or failed).
    pub(super) client_eof: bool,
    /// EOF sent on the channel.
    pub(super) eof_sent: bool,
    /// The channel delivered EOF (or closed).
    pub(super) channel_eof: bool,
    /// shutdown(WR) done on the client socket.
    pub(super) client_shut: bool,
    /// The last channel write returned EAGAIN mid-packet: the same bytes must
    /// be offered again before anything else is sent.
    pub(super) write_blocked: bool,
    /// Stop moving data, just close (an error or a stop).
    pub(super) aborted: bool,
    /// `close()` went through; waiting for the server's close.
    pub(super) close_sent: bool,
    /// Closed on both sides; to be removed.
    pub(super) finished: bool,
}

impl Conn {
    pub(super) fn new(client: TcpStream, peer: SocketAddr) -> Conn {
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
    pub(super) fn abort(&mut self) {
        self.aborted = true;
        self.client_eof = true;
        self.client_shut = true;
    }

    /// poll(2) events that would let this client socket make progress.
    pub(super) fn client_events(&self) -> libc::c_short {
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
    pub(super) fn pump(&mut self, session: &Session, io: &mut RoundIo, stats: &mut TunnelStats) {
        if let Some(mut channel) = self.channel.take() {
            self.pump_channel(&mut channel, session, io, stats);
            self.channel = Some(channel);
        }
    }

    pub(super) fn pump_channel(
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
pub(super) fn ssh_code(e: &io::Error) -> Option<i32> {
    if e.kind() == io::ErrorKind::WouldBlock {
        return Some(EAGAIN);
    }
    match e.get_ref()?.downcast_ref::<ssh2::Error>()?.code() {
        ErrorCode::Session(code) => Some(code),
        ErrorCode::SFTP(_) => None,
    }
}

/// True when a channel I/O error means the whole session is gone.
pub(super) fn is_fatal(code: Option<i32>) -> bool {
    match code {
        Some(code) => !CHANNEL_ERRORS.contains(&code),
        // A plain OS error on the session's socket.
        None => true,
    }
}

pub(super) fn is_channel_error(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::Session(code) if CHANNEL_ERRORS.contains(&code))
}

/// What one round of work found out.
#[derive(Default)]
pub(super) struct RoundIo {
    /// Something moved (bytes, EOF, an open or a close finished).
    pub(super) progress: bool,
    /// libssh2 waits for the SSH socket to become readable.
    pub(super) want_read: bool,
    /// libssh2 waits for the SSH socket to become writable.
    pub(super) want_write: bool,
    /// A packet is partly sent: nothing else may be sent (keepalive) until
    /// the same call completes it.
    pub(super) send_pending: bool,
    /// Per-connection errors to report.
    pub(super) errors: Vec<String>,
    /// The session is dead, and why.
    pub(super) fatal: Option<String>,
}

impl RoundIo {
    /// Records which way libssh2 is blocked after an EAGAIN; `sending` when
    /// the call that blocked was sending a packet. True when a packet is
    /// left half-sent (the socket is full), so the same call must come again.
    pub(super) fn blocked(&mut self, session: &Session, sending: bool) -> bool {
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
