//! The SMTP forward and the other local users, with the real binary, a real
//! sshd and a real second login: another user's connection to the forward
//! is refused (the owner of a loopback client socket is read from
//! /proc/net/tcp) while the owner's is served; `allow_other_users = true`
//! serves both; a port another user holds stops the forward from starting,
//! naming that user and process.

mod common;
mod fetch_support;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{TestSshd, TestUser};
use fetch_support::{describe, Client};

/// The greeting of the stand-in SMTP server the forward connects to.
const GREETING: &str = "220 stand-in ESMTP\r\n";

/// A server on 127.0.0.1 that greets every connection; its port.
fn greeter() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::Write;
                let mut conn = conn;
                let _ = conn.write_all(GREETING.as_bytes());
                let _ = std::io::copy(&mut conn, &mut std::io::sink());
            });
        }
    });
    port
}

/// `mailhaul tunnel acct` running, with its stdout and stderr lines.
struct Forward {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Forward {
    fn start(client: &Client) -> Forward {
        let mut child = client
            .command(&["tunnel", "acct"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mailhaul tunnel");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Forward {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to 30 s for a line containing `text`.
    fn wait_for(&mut self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {text:?} within 30 s; got {:?}", self.seen),
            }
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// What `user` reads from 127.0.0.1:`port` (a real connection made by that
/// login, through runuser and python3), as Python's repr of the bytes.
fn read_as(user: &TestUser, port: u16) -> String {
    let out = common::run(
        Command::new("/usr/sbin/runuser")
            .args(["-u", &user.name, "--", "python3", "-c"])
            .arg(
                "import socket, sys\n\
                 s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
                 s.settimeout(20)\n\
                 print(repr(s.recv(100)))\n",
            )
            .arg(port.to_string()),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What this process (the forward's owner, root) reads from the forward.
fn read_as_owner(port: u16) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 100];
    let n = conn.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn client(sshd: &TestSshd, port: u16, target: u16, extra: &str) -> Client {
    Client::new(
        sshd,
        "root",
        &format!(
            "[account.forward]\nlisten = \"127.0.0.1:{port}\"\ntarget = \"127.0.0.1:{target}\"\n{extra}"
        ),
    )
}

#[test]
fn another_users_connection_is_refused_and_the_owners_served() {
    let sshd = TestSshd::start();
    let other = TestUser::create("mhpo");
    let target = greeter();
    // The greeting as the other user's python3 prints it.
    let expected_other = "b'220 stand-in ESMTP\\r\\n'";

    let port = common::sshd::free_port();
    let owner_only = client(&sshd, port, target, "");
    let mut forward = Forward::start(&owner_only);
    forward.wait_for(&format!("forwarding 127.0.0.1:{port}"));
    assert_eq!(read_as_owner(port), GREETING);
    assert_eq!(read_as(&other, port), "b''", "another user was served");
    let refusal = forward.wait_for("refused a connection");
    assert!(
        refusal.contains(&format!("user {} (uid {})", other.name, other.uid)),
        "{refusal}"
    );
    // The owner is still served after the refusal.
    assert_eq!(read_as_owner(port), GREETING);
    drop(forward);

    // Turned off in the config: both are served.
    let port = common::sshd::free_port();
    let everyone = client(&sshd, port, target, "allow_other_users = true\n");
    let mut forward = Forward::start(&everyone);
    forward.wait_for(&format!("forwarding 127.0.0.1:{port}"));
    assert_eq!(read_as(&other, port), expected_other);
    assert_eq!(read_as_owner(port), GREETING);
}

/// Another user listening on the forward's port first (to collect the mail
/// client's AUTH): the forward refuses to start and says who holds it.
#[test]
fn a_port_held_by_another_user_is_refused_naming_the_holder() {
    let sshd = TestSshd::start();
    let other = TestUser::create("mhph");
    let port = common::sshd::free_port();
    let mut squatter = Command::new("/usr/sbin/runuser")
        .args(["-u", &other.name, "--", "python3", "-c"])
        .arg(
            "import socket, sys, time\n\
             s = socket.socket()\n\
             s.bind(('127.0.0.1', int(sys.argv[1])))\n\
             s.listen(1)\n\
             print('ready', flush=True)\n\
             time.sleep(60)\n",
        )
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(squatter.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");

    let out = client(&sshd, port, 25, "")
        .command(&["tunnel", "acct"])
        .output()
        .unwrap();
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already in use by pid "), "{stderr}");
    assert!(stderr.contains("(python3)"), "{stderr}");
    assert!(
        stderr.contains(&format!("user {} (uid {})", other.name, other.uid)),
        "{stderr}"
    );
}
