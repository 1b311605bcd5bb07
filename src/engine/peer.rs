//! Who is on the other end of a loopback TCP connection, and who holds a
//! local port: read from Linux's `/proc/net/tcp` and `/proc/net/tcp6`
//! (and `/proc/PID/fd` for the process), so that the SMTP forward serves
//! only its own user (any local user could otherwise send mail through the
//! owner's SSH login, as with `ssh -L`) and can say who took its port.
//!
//! A TCP connection between two local sockets appears in those tables twice:
//! once as the client's socket (local address = the client's address, remote
//! = ours) with the uid that created it, once as ours. The client's line is
//! found by its address pair. Only Linux has these tables; elsewhere nothing
//! can be told ([`PeerOwner::Unknowable`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the socket tables say about a connection's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerOwner {
    /// The client's socket belongs to this uid.
    Uid(u32),
    /// No table lists the client's socket (it is already closed, or it is
    /// in another network namespace).
    NotFound,
    /// This system has no such tables (not Linux).
    Unknowable,
}

/// The owner of the client socket of a connection accepted at `ours` from
/// `peer` (both as the accepting socket sees them).
pub fn owner_of_peer(ours: SocketAddr, peer: SocketAddr) -> io::Result<PeerOwner> {
    let mut any_table = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        any_table = true;
        for row in text.lines().skip(1).filter_map(Row::parse) {
            if same_socket(row.local, peer) && same_socket(row.remote, ours) {
                return Ok(PeerOwner::Uid(row.uid));
            }
        }
    }
    Ok(if any_table {
        PeerOwner::NotFound
    } else {
        PeerOwner::Unknowable
    })
}

/// Who listens on TCP port `port` of this machine, as far as can be told:
/// `uid N (NAME)`, plus `pid P (COMMAND)` when this process may read that
/// process's descriptors (its own user's, or any as root). `None` when
/// nothing is found.
pub fn describe_listener(port: u16) -> Option<String> {
    const LISTEN: &str = "0A";
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        let Some(row) = text
            .lines()
            .skip(1)
            .filter_map(Row::parse)
            .find(|r| r.state == LISTEN && r.local.port() == port)
        else {
            continue;
        };
        let mut what = format!("{} (listening on {})", user_label(row.uid), row.local);
        if let Some((pid, command)) = process_with_socket(row.inode) {
            what = format!("pid {pid} ({command}), {what}");
        }
        return Some(what);
    }
    None
}

/// `uid N (NAME)`, the name from `/etc/passwd` when it is there.
pub fn user_label(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        });
    match name {
        Some(name) => format!("user {name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The process holding socket `inode` among those whose `/proc/PID/fd` this
/// process may read, with its command name.
fn process_with_socket(inode: u64) -> Option<(u32, String)> {
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())
        });
        if holds {
            let command = std::fs::read_to_string(entry.path().join("comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default();
            return Some((pid, command));
        }
    }
    None
}

/// One line of `/proc/net/tcp*`.
struct Row {
    local: SocketAddr,
    remote: SocketAddr,
    state: String,
    uid: u32,
    inode: u64,
}

impl Row {
    /// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
    fn parse(line: &str) -> Option<Row> {
        let f: Vec<&str> = line.split_whitespace().collect();
        Some(Row {
            local: parse_addr(f.get(1)?)?,
            remote: parse_addr(f.get(2)?)?,
            state: f.get(3)?.to_string(),
            uid: f.get(7)?.parse().ok()?,
            inode: f.get(9)?.parse().ok()?,
        })
    }
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6): the address is
/// the kernel's 32-bit words in this machine's byte order, the port a plain
/// hex number.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The same socket address, an IPv4 one also in its IPv6-mapped form (a
/// dual-stack listener sees IPv4 clients that way).
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |s: SocketAddr| match s.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(s, |v4| SocketAddr::new(IpAddr::V4(v4), s.port())),
        IpAddr::V4(_) => s,
    };
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn kernel_addresses_parse() {
        let le = cfg!(target_endian = "little");
        let v4 = if le { "0100007F:1F90" } else { "7F000001:1F90" };
        assert_eq!(parse_addr(v4), Some("127.0.0.1:8080".parse().unwrap()));
        let v6 = if le {
            "00000000000000000000000001000000:0019"
        } else {
            "00000000000000000000000000000001:0019"
        };
        assert_eq!(parse_addr(v6), Some("[::1]:25".parse().unwrap()));
        assert_eq!(parse_addr("zz:1"), None);
        assert!(same_socket(
            "[::ffff:127.0.0.1]:5".parse().unwrap(),
            "127.0.0.1:5".parse().unwrap()
        ));
    }

    /// A connection this process makes to itself is found, with our uid,
    /// and the listener is named with our pid.
    #[test]
    fn a_loopback_client_socket_is_ours() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        let ours = server.local_addr().unwrap();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(owner_of_peer(ours, peer).unwrap(), PeerOwner::Uid(me));
        // Our own end is no client of ours.
        assert_eq!(
            owner_of_peer(peer, "127.0.0.1:1".parse().unwrap()).unwrap(),
            PeerOwner::NotFound
        );
        let port = listener.local_addr().unwrap().port();
        let who = describe_listener(port).unwrap();
        assert!(
            who.contains(&format!("pid {}", std::process::id())),
            "{who}"
        );
        assert!(who.contains(&format!("uid {me}")), "{who}");
        client.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).unwrap();
    }
}
