//! The SMTP forward against real software: a real OpenSSH sshd on loopback,
//! the system Postfix behind it as the "mail host", and swaks as the SMTP
//! client. Mail sent through the forward must land intact in the user's
//! spool; failures must reach the client as clean closes and the watcher as
//! error events.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Postfix, SystemLock, TestSshd, TestUser};
use crossbeam_channel::Receiver;
use mailhaul::config::Config;
use mailhaul::engine::account::Account;
use mailhaul::engine::event::{Event, TunnelEvent, TunnelState, TunnelStats};
use mailhaul::engine::tunnel::{connector, Tunnel, TunnelHandle, TunnelSpec};
use md5::{Digest, Md5};

/// A forward from 127.0.0.1:(free port) through a fresh sshd to `target`.
struct Forward {
    // Dropped first: the forward stops before its server goes away.
    handle: Option<TunnelHandle>,
    sshd: TestSshd,
    user: TestUser,
    events: Receiver<Event>,
    addr: SocketAddr,
    /// Every event seen so far, in order.
    seen: Vec<TunnelEvent>,
}

impl Forward {
    /// `target` is the forward's `host:port` as seen from the server; `None`
    /// is the default (port 25 on the server itself).
    fn start(target: Option<&str>) -> Forward {
        Forward::start_named("tun", target)
    }

    /// As [`Forward::start`], for an account called `name` (the worker
    /// thread is called `tunnel-NAME`).
    fn start_named(name: &str, target: Option<&str>) -> Forward {
        Forward::start_compressed(name, target, None)
    }

    /// As [`Forward::start_named`], with `forward.compression` set to
    /// `compression` (`None`: the default).
    fn start_compressed(name: &str, target: Option<&str>, compression: Option<&str>) -> Forward {
        Forward::start_against(TestSshd::start(), name, target, compression)
    }

    /// As [`Forward::start_compressed`], through `sshd`.
    fn start_against(
        sshd: TestSshd,
        name: &str,
        target: Option<&str>,
        compression: Option<&str>,
    ) -> Forward {
        Postfix::ensure_running();
        let user = TestUser::create_for(&sshd, "tun");
        let account = account(name, &sshd, &user, target, compression);
        let spec = TunnelSpec::from_account(&account).expect("spec");
        let (tx, events) = crossbeam_channel::unbounded();
        let handle = Tunnel::start(spec, connector(&account), tx).expect("start the forward");
        let addr = handle.local_addr();
        let mut forward = Forward {
            sshd,
            user,
            handle: Some(handle),
            events,
            addr,
            seen: Vec::new(),
        };
        forward.wait_for(
            |e| matches!(e, TunnelEvent::State(TunnelState::Listening(_))),
            "Listening",
        );
        forward
    }

    /// An SMTP client connected through the forward (reads time out after
    /// 20 s), and the first bytes it read: the server's greeting.
    fn connect_and_read_greeting(&self) -> (TcpStream, Vec<u8>) {
        let mut client = TcpStream::connect(self.addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut greeting = [0u8; 512];
        let n = client.read(&mut greeting).unwrap();
        (client, greeting[..n].to_vec())
    }

    /// Waits (up to 30 s) for an event matching `want`; returns it.
    fn wait_for(&mut self, want: impl Fn(&TunnelEvent) -> bool, what: &str) -> TunnelEvent {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Tunnel { event, .. }) => {
                    self.seen.push(event.clone());
                    if want(&event) {
                        return event;
                    }
                }
                Ok(_) => {}
                Err(_) => panic!("no {what} event within 30 s; saw {:?}", self.seen),
            }
        }
    }

    /// Sends `data` (a whole message) with swaks through the forward.
    fn swaks(&self, data: &Path) -> Output {
        common::require_tool("swaks", "swaks");
        Command::new("swaks")
            .args(["--silent", "1", "--from", "sender@example.org", "--to"])
            .arg(format!("{}@localhost", self.user.name))
            .arg("--server")
            .arg(self.addr.ip().to_string())
            .arg("--port")
            .arg(self.addr.port().to_string())
            .arg("--data")
            .arg(format!("@{}", data.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run swaks")
    }

    fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop();
        }
        while let Ok(Event::Tunnel { event, .. }) = self.events.try_recv() {
            self.seen.push(event);
        }
    }
}

fn account(
    name: &str,
    sshd: &TestSshd,
    user: &TestUser,
    target: Option<&str>,
    compression: Option<&str>,
) -> Account {
    let target = target.map_or(String::new(), |t| format!("target = \"{t}\"\n"));
    let compression = compression.map_or(String::new(), |c| format!("compression = \"{c}\"\n"));
    let text = format!(
        "[[account]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\n\
         identity_file = \"{key}\"\nuse_agent = false\nknown_hosts_file = \"{kh}\"\n\
         [account.forward]\nlisten = \"127.0.0.1:0\"\n{target}{compression}",
        port = sshd.port,
        user = user.name,
        key = sshd.key.display(),
        kh = sshd.known_hosts.display(),
    );
    let config = Config::parse(&text, Path::new("test.toml")).expect("config");
    config.accounts[0].clone()
}

/// A message with a unique subject and `body_lines` lines of varied text;
/// returns it and the md5 of its body.
fn message(subject: &str, body_lines: usize) -> (Vec<u8>, String) {
    let mut body = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ subject.len() as u64;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,;:-";
    for i in 0..body_lines {
        body.push_str(&format!("{i:07} "));
        for _ in 0..68 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(CHARS[(x % CHARS.len() as u64) as usize] as char);
        }
        body.push('\n');
    }
    let msg =
        format!("From: sender@example.org\nTo: someone@example.org\nSubject: {subject}\n\n{body}");
    (
        msg.into_bytes(),
        md5_hex(body.trim_end_matches('\n').as_bytes()),
    )
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_temp(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write message file");
    path
}

/// The md5 of the body of the message in `spool` whose subject is `subject`.
fn spool_body_md5(spool: &[u8], subject: &str) -> Option<String> {
    let text = String::from_utf8_lossy(spool);
    let marker = format!("\nSubject: {subject}\n");
    let at = text.find(&marker)?;
    let rest = &text[at + marker.len()..];
    let body_start = rest.find("\n\n")? + 2;
    let body = &rest[body_start..];
    let end = body.find("\nFrom ").map_or(body.len(), |i| i + 1);
    Some(md5_hex(body[..end].trim_end_matches('\n').as_bytes()))
}

/// Waits until the user's spool holds a message for every subject.
fn wait_for_subjects(user: &TestUser, subjects: &[String]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let spool = user.spool_contents();
        let text = String::from_utf8_lossy(&spool);
        let missing: Vec<&String> = subjects
            .iter()
            .filter(|s| !text.contains(&format!("\nSubject: {s}\n")))
            .collect();
        let locked = Path::new(&format!("{}.lock", user.spool.display())).exists();
        if missing.is_empty() && !locked {
            return spool;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered within 90 s: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_swaks_ok(out: &Output) {
    assert!(
        out.status.success(),
        "swaks failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn message_sent_through_the_forward_lands_intact() {
    let mut fwd = Forward::start(None);
    let dir = tempfile::tempdir().unwrap();
    let subject = format!("tunnel-one-{}", fwd.user.name);
    let (msg, md5) = message(&subject, 200);
    let out = fwd.swaks(&write_temp(dir.path(), "m", &msg));
    assert_swaks_ok(&out);
    let spool = wait_for_subjects(&fwd.user, std::slice::from_ref(&subject));
    assert_eq!(spool_body_md5(&spool, &subject).as_deref(), Some(&*md5));
    let stats = fwd.wait_for(
        |e| matches!(e, TunnelEvent::Stats(s) if s.total == 1 && s.live == 0),
        "Stats after the transaction",
    );
    let TunnelEvent::Stats(stats) = stats else {
        unreachable!()
    };
    assert!(stats.bytes_up >= msg.len() as u64, "{stats:?}");
    assert!(stats.bytes_down > 0 && stats.socket_sent > 0, "{stats:?}");
    assert_eq!(stats.errors, 0, "{:?}", fwd.seen);
    fwd.stop();
    assert!(matches!(
        fwd.seen.last(),
        Some(TunnelEvent::State(TunnelState::Off))
    ));
}

#[test]
fn twenty_concurrent_transactions_all_succeed() {
    let mut fwd = Forward::start(None);
    let dir = tempfile::tempdir().unwrap();
    let mut subjects = Vec::new();
    let mut sums = Vec::new();
    let mut children = Vec::new();
    for i in 0..20 {
        let subject = format!("tunnel-many-{i}-{}", fwd.user.name);
        let (msg, md5) = message(&subject, 50 + i * 10);
        let path = write_temp(dir.path(), &format!("m{i}"), &msg);
        common::require_tool("swaks", "swaks");
        let child = Command::new("swaks")
            .args(["--silent", "1", "--from", "sender@example.org", "--to"])
            .arg(format!("{}@localhost", fwd.user.name))
            .arg("--server")
            .arg(format!("{}:{}", fwd.addr.ip(), fwd.addr.port()))
            .arg("--data")
            .arg(format!("@{}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn swaks");
        children.push(child);
        subjects.push(subject);
        sums.push(md5);
    }
    for child in children {
        assert_swaks_ok(&child.wait_with_output().unwrap());
    }
    let spool = wait_for_subjects(&fwd.user, &subjects);
    for (subject, md5) in subjects.iter().zip(&sums) {
        assert_eq!(
            spool_body_md5(&spool, subject).as_deref(),
            Some(md5.as_str()),
            "{subject}"
        );
    }
    fwd.wait_for(
        |e| matches!(e, TunnelEvent::Stats(s) if s.total == 20 && s.live == 0),
        "Stats with 20 finished connections",
    );
    assert!(
        !fwd.seen.iter().any(|e| matches!(e, TunnelEvent::Error(_))),
        "{:?}",
        fwd.seen
    );
}

/// Raises Postfix's message size limit to at least `bytes` (the Debian
/// default is 10 MB).
fn allow_messages_of(bytes: u64) {
    let _lock = SystemLock::acquire("postfix");
    let out = common::run(Command::new("/usr/sbin/postconf").args(["-h", "message_size_limit"]));
    let limit: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if limit != 0 && limit < bytes {
        common::run(
            Command::new("/usr/sbin/postconf").args(["-e", &format!("message_size_limit={bytes}")]),
        );
        common::run(Command::new("/usr/sbin/postfix").arg("reload"));
    }
}

#[test]
fn twenty_megabyte_message_arrives_intact() {
    allow_messages_of(64 << 20);
    let mut fwd = Forward::start(None);
    let dir = tempfile::tempdir().unwrap();
    let subject = format!("tunnel-big-{}", fwd.user.name);
    let (msg, md5) = message(&subject, 20 * 1024 * 1024 / 77);
    assert!(msg.len() > 20_000_000);
    let out = fwd.swaks(&write_temp(dir.path(), "big", &msg));
    assert_swaks_ok(&out);
    let spool = wait_for_subjects(&fwd.user, std::slice::from_ref(&subject));
    assert_eq!(spool_body_md5(&spool, &subject).as_deref(), Some(&*md5));
    let TunnelEvent::Stats(stats) = fwd.wait_for(
        |e| matches!(e, TunnelEvent::Stats(s) if s.total == 1 && s.live == 0),
        "final Stats",
    ) else {
        unreachable!()
    };
    // Transport compression is on: the socket carries less than the message.
    assert!(
        stats.socket_sent < stats.bytes_up,
        "no compression on the wire: {stats:?}"
    );
}

#[test]
fn closed_target_port_gives_a_clean_close_and_an_error_event() {
    // Port 1 on the server: nothing listens there.
    let mut fwd = Forward::start(Some("127.0.0.1:1"));
    let mut client = TcpStream::connect(fwd.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    // A clean close: EOF, not a reset and not a hang.
    assert_eq!(client.read(&mut buf).expect("read from the forward"), 0);
    let error = fwd.wait_for(|e| matches!(e, TunnelEvent::Error(_)), "Error");
    let TunnelEvent::Error(text) = error else {
        unreachable!()
    };
    assert!(text.contains("127.0.0.1:1"), "{text}");
    // The forward keeps serving after the failure.
    let TunnelEvent::Stats(stats) = fwd.wait_for(
        |e| matches!(e, TunnelEvent::Stats(s) if s.errors == 1 && s.live == 0),
        "Stats with the error",
    ) else {
        unreachable!()
    };
    assert_eq!(stats.total, 1);
}

/// A server that checks on idle clients (`ClientAliveInterval`, common in
/// hardened sshd configs) must get its answers from an idle forward, or it
/// drops the session every few intervals (this sshd drops a stopped OpenSSH
/// client after about 3 s: "Timeout, client not responding").
#[test]
fn an_idle_forward_answers_the_servers_alive_checks() {
    let sshd = TestSshd::start_with_config("ClientAliveInterval 1\nClientAliveCountMax 2\n");
    let mut fwd = Forward::start_against(sshd, "tun", None, None);
    let until = Instant::now() + Duration::from_secs(6);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if let Ok(Event::Tunnel { event, .. }) = fwd.events.recv_timeout(left) {
            fwd.seen.push(event);
        }
    }
    assert!(
        !fwd.seen.iter().any(|e| matches!(
            e,
            TunnelEvent::Error(_) | TunnelEvent::State(TunnelState::Reconnecting { .. })
        )),
        "the server dropped the idle forward: {:?}\n{}",
        fwd.seen,
        fwd.sshd.log()
    );
    // And it still forwards.
    let dir = tempfile::tempdir().unwrap();
    let subject = format!("tunnel-alive-{}", fwd.user.name);
    let (msg, md5) = message(&subject, 10);
    assert_swaks_ok(&fwd.swaks(&write_temp(dir.path(), "m", &msg)));
    let spool = wait_for_subjects(&fwd.user, std::slice::from_ref(&subject));
    assert_eq!(spool_body_md5(&spool, &subject).as_deref(), Some(&*md5));
}

#[test]
fn dropped_ssh_connection_is_reestablished() {
    let mut fwd = Forward::start(None);
    let dir = tempfile::tempdir().unwrap();
    // End the server side of the session: every process holding the
    // forward's connection on sshd's port, each with its whole tree, frozen
    // before it is killed so that a privsep monitor cannot fork its post-auth
    // child in between (that child would keep the connection open). The
    // helper waits until no process holds the connection any more.
    let killed = common::proc::kill_connection_holders(fwd.sshd.port);
    assert!(
        !killed.is_empty(),
        "no sshd process held the forward's connection"
    );
    fwd.wait_for(
        |e| matches!(e, TunnelEvent::State(TunnelState::Reconnecting { .. })),
        "Reconnecting",
    );
    fwd.wait_for(
        |e| matches!(e, TunnelEvent::State(TunnelState::Listening(_))),
        "Listening again",
    );
    let subject = format!("tunnel-again-{}", fwd.user.name);
    let (msg, md5) = message(&subject, 100);
    assert_swaks_ok(&fwd.swaks(&write_temp(dir.path(), "m", &msg)));
    let spool = wait_for_subjects(&fwd.user, std::slice::from_ref(&subject));
    assert_eq!(spool_body_md5(&spool, &subject).as_deref(), Some(&*md5));
    assert!(fwd
        .seen
        .iter()
        .any(|e| matches!(e, TunnelEvent::Error(t) if t.contains("SSH connection lost"))));
}

#[test]
fn stop_closes_open_smtp_connections_cleanly() {
    let mut fwd = Forward::start(None);
    let (mut client, greeting) = fwd.connect_and_read_greeting();
    assert!(greeting.starts_with(b"220 "), "{greeting:?}");
    client.write_all(b"EHLO client.example.org\r\n").unwrap();
    fwd.wait_for(
        |e| matches!(e, TunnelEvent::Stats(s) if s.live == 1 && s.bytes_up > 0),
        "Stats with a live connection",
    );
    let started = Instant::now();
    fwd.stop();
    assert!(started.elapsed() < Duration::from_secs(5));
    // Whatever the server already said may still arrive; then a clean EOF.
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("a clean close, not a reset");
    assert!(matches!(
        fwd.seen.last(),
        Some(TunnelEvent::State(TunnelState::Off))
    ));
}

/// CPU time (ticks) used so far by this process's thread named `name`.
fn thread_cpu_ticks(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() == name {
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            // utime and stime are fields 14 and 15; `fields` starts at field 3.
            return Some(fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?);
        }
    }
    None
}

#[test]
fn idle_forward_uses_no_cpu() {
    let fwd = Forward::start_named("idle", None);
    let name = "tunnel-idle";
    let before = thread_cpu_ticks(name).expect("the forward's thread");
    std::thread::sleep(Duration::from_secs(3));
    let after = thread_cpu_ticks(name).expect("the forward's thread");
    // 3 s at 100 ticks/s: a busy loop would use ~300 ticks.
    assert!(
        after - before <= 2,
        "idle forward used {} ticks in 3 s",
        after - before
    );
    drop(fwd);
}

#[test]
fn half_closes_are_forwarded_both_ways() {
    // The target is a plain TCP service on the server host (this machine):
    // it reads until the client's EOF, then answers with the byte count and
    // the md5 of what it got, then closes.
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = service.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = service.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        let answer = format!("{} {}\n", got.len(), md5_hex(&got));
        conn.write_all(answer.as_bytes()).unwrap();
    });
    let mut fwd = Forward::start(Some(&target));
    let mut client = TcpStream::connect(fwd.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    client.write_all(&data).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    client
        .read_to_string(&mut answer)
        .expect("the answer, then EOF");
    assert_eq!(answer, format!("{} {}\n", data.len(), md5_hex(&data)));
    server.join().unwrap();
    let TunnelEvent::Stats(stats) = fwd.wait_for(
        |e| matches!(e, TunnelEvent::Stats(s) if s.total == 1 && s.live == 0),
        "final Stats",
    ) else {
        unreachable!()
    };
    assert_eq!(stats.bytes_up, data.len() as u64);
    assert_eq!(stats.bytes_down, answer.len() as u64);
}

#[test]
fn request_stop_returns_at_once_and_reports_off_when_done() {
    let mut fwd = Forward::start(None);
    let (mut client, greeting) = fwd.connect_and_read_greeting();
    assert!(!greeting.is_empty());
    let handle = fwd.handle.take().unwrap();
    let started = Instant::now();
    handle.request_stop();
    assert!(started.elapsed() < Duration::from_millis(200));
    fwd.wait_for(|e| matches!(e, TunnelEvent::State(TunnelState::Off)), "Off");
    std::net::TcpListener::bind(fwd.addr).expect("the listen address is free after Off");
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("a clean close, not a reset");
}

#[test]
fn reconnect_backs_off_exponentially_while_the_server_is_down() {
    let mut fwd = Forward::start(None);
    // The whole server goes away: listener and sessions.
    common::proc::kill_tree(fwd.sshd.pid() as i32);
    let mut waits = Vec::new();
    for _ in 0..3 {
        if let TunnelEvent::State(TunnelState::Reconnecting { in_secs }) = fwd.wait_for(
            |e| matches!(e, TunnelEvent::State(TunnelState::Reconnecting { .. })),
            "Reconnecting",
        ) {
            waits.push(in_secs);
        }
    }
    assert_eq!(waits, [1, 2, 4]);
    assert!(
        fwd.seen
            .iter()
            .any(|e| matches!(e, TunnelEvent::Error(t) if t.starts_with("cannot connect"))),
        "{:?}",
        fwd.seen
    );
    // A stop during the backoff ends the forward at once.
    let started = Instant::now();
    fwd.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        fwd.seen.last(),
        Some(TunnelEvent::State(TunnelState::Off))
    ));
}

/// A TCP service on the server host (this machine) standing in for a mail
/// host that swallows bulk data: each connection is read to its EOF, then
/// answered with the byte count and the md5 of what came, then closed.
struct Sink {
    addr: SocketAddr,
    /// Bytes received so far over all connections.
    received: Arc<AtomicU64>,
    /// Connections accepted so far.
    accepted: Arc<AtomicU64>,
}

impl Sink {
    fn start() -> Sink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (counter, connections) = (received.clone(), accepted.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                connections.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 65536];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                got.extend_from_slice(&buf[..n]);
                                counter.fetch_add(n as u64, Ordering::SeqCst);
                            }
                        }
                    }
                    let answer = format!("{} {}\n", got.len(), md5_hex(&got));
                    let _ = conn.write_all(answer.as_bytes());
                });
            }
        });
        Sink {
            addr,
            received,
            accepted,
        }
    }

    /// Waits (up to 30 s) until `what` reaches `n`.
    fn wait_until(counter: &AtomicU64, n: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while counter.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} within 30 s",
                counter.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The sample spool: real, varied mail (about 1 MB).
fn sample_mail() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-spool.mbox"))
        .expect("assets/sample-spool.mbox")
}

/// Connects to the forward with a 30 s read timeout.
fn client(fwd: &Forward) -> TcpStream {
    let client = TcpStream::connect(fwd.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
}

/// Half-closes `client` and checks the sink's answer: all of `sent`, intact.
fn assert_sink_got(mut client: TcpStream, sent: &[u8]) {
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    client
        .read_to_string(&mut answer)
        .expect("the sink's answer, then EOF");
    assert_eq!(answer, format!("{} {}\n", sent.len(), md5_hex(sent)));
}

impl Forward {
    /// The stats once they have been quiet for 600 ms (the forward sends
    /// them at most every 250 ms, and only when they changed).
    fn settled_stats(&mut self) -> TunnelStats {
        let mut last = self.seen.iter().rev().find_map(|e| match e {
            TunnelEvent::Stats(s) => Some(*s),
            _ => None,
        });
        loop {
            match self.events.recv_timeout(Duration::from_millis(600)) {
                Ok(Event::Tunnel { event, .. }) => {
                    if let TunnelEvent::Stats(s) = &event {
                        last = Some(*s);
                    }
                    self.seen.push(event);
                }
                Ok(_) => {}
                Err(_) => return last.expect("no Stats event yet"),
            }
        }
    }
}

/// Pushes the sample spool through a forward with `compression` into a
/// sink; returns raw bytes up / bytes the SSH socket sent, from the
/// forward's own counters.
fn upload_ratio(compression: &str) -> f64 {
    let sink = Sink::start();
    let mut fwd = Forward::start_compressed(
        &format!("ratio-{compression}"),
        Some(&sink.addr.to_string()),
        Some(compression),
    );
    let before = fwd.settled_stats();
    let mail = sample_mail();
    let mut client = client(&fwd);
    client.write_all(&mail).unwrap();
    assert_sink_got(client, &mail);
    let after = fwd.settled_stats();
    assert_eq!(after.bytes_up - before.bytes_up, mail.len() as u64);
    assert_eq!(after.errors, 0, "{:?}", fwd.seen);
    let ratio =
        (after.bytes_up - before.bytes_up) as f64 / (after.socket_sent - before.socket_sent) as f64;
    println!("forward.compression = {compression}: {ratio:.2}x up ({after:?})");
    ratio
}

#[test]
fn isolated_zlib_compresses_mail_like_openssh_and_huffman_does_not() {
    // OpenSSH's zlib level 6 gets ~3.4x on this sample in 32 kB packets,
    // Huffman-only coding ~1.46x.
    let zlib = upload_ratio("zlib");
    assert!(zlib > 2.5, "zlib: {zlib:.2}x");
    let huffman = upload_ratio("huffman");
    assert!(huffman < 2.0, "huffman: {huffman:.2}x");
}

#[test]
fn two_interleaved_connections_arrive_intact_through_isolated_zlib() {
    let sink = Sink::start();
    let mut fwd = Forward::start_compressed("interleave", Some(&sink.addr.to_string()), None);
    let mail = sample_mail();
    let half = mail.len() / 2;
    // Different data each, so that a history mixed up between them would
    // show as corruption (sshd drops the session on a bad stream).
    let (a_data, b_data) = (&mail[..half], &mail[half..]);
    let (mut a, mut b) = (client(&fwd), client(&fwd));
    let (mut a_at, mut b_at) = (0, 0);
    let mut size: usize = 7;
    while a_at < a_data.len() || b_at < b_data.len() {
        // Chunk sizes from a few bytes (interactive) to bulk.
        size = (size * 7919 + 13) % 40_000 + 1;
        let n = size.min(a_data.len() - a_at);
        a.write_all(&a_data[a_at..a_at + n]).unwrap();
        a_at += n;
        let n = (size / 3 + 1).min(b_data.len() - b_at);
        b.write_all(&b_data[b_at..b_at + n]).unwrap();
        b_at += n;
    }
    assert_sink_got(a, a_data);
    assert_sink_got(b, b_data);
    let stats = fwd.settled_stats();
    assert_eq!(stats.bytes_up, mail.len() as u64);
    assert_eq!(stats.errors, 0, "{:?}", fwd.seen);
}

/// Pseudo-random (incompressible) bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn isolated_zlib_keeps_history_only_within_one_bulk_stream() {
    let sink = Sink::start();
    let mut fwd = Forward::start_compressed("history", Some(&sink.addr.to_string()), None);
    let (mut a, mut b) = (client(&fwd), client(&fwd));
    Sink::wait_until(&sink.accepted, 2, "connections at the sink");
    let mut sent = 0;
    let mut last = fwd.settled_stats().socket_sent;
    // Sends `data` on `conn`; returns what it cost on the SSH socket.
    let mut cost = |fwd: &mut Forward, conn: &mut TcpStream, data: &[u8]| {
        conn.write_all(data).unwrap();
        sent += data.len() as u64;
        Sink::wait_until(&sink.received, sent, "bytes at the sink");
        let now = fwd.settled_stats().socket_sent;
        let cost = now - last;
        println!("{} bytes cost {cost} on the SSH socket", data.len());
        last = now;
        cost
    };
    // Bulk (one 30 kB packet), incompressible by itself.
    let bulk = noise(30_000, 1);
    let first = cost(&mut fwd, &mut a, &bulk);
    assert!(first > 30_000, "noise compressed: {first}");
    // The same again on the same connection: the bulk stream's history is
    // kept, so it shrinks to back-references.
    let again = cost(&mut fwd, &mut a, &bulk);
    assert!(again < 3_000, "history not kept within a stream: {again}");
    // The same on another connection: that history is gone.
    let other = cost(&mut fwd, &mut b, &bulk);
    assert!(other > 30_000, "history crossed connections: {other}");
    // A small (interactive) packet twice on one connection: never dictionary.
    let small = noise(1_000, 2);
    cost(&mut fwd, &mut a, &small);
    let small_again = cost(&mut fwd, &mut a, &small);
    assert!(
        small_again > 1_000,
        "a small packet served as dictionary: {small_again}"
    );
    assert_sink_got(a, &[bulk.as_slice(), &bulk, &small, &small].concat());
    assert_sink_got(b, &bulk);
}
