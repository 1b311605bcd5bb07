//! `mailhaul tunnel ACCOUNT` as a user runs it, and the whole loop: mail
//! sent through the forward to the server's Postfix, then brought home by
//! `mailhaul fetch` and filed, intact. The real binary, a real sshd, Postfix
//! and swaks.

mod common;
mod fetch_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Postfix, TestSshd, TestUser};
use fetch_support::{describe, Client};

#[test]
fn mail_sent_through_the_headless_tunnel_is_fetched_and_filed_intact() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "tunc");
    let port = common::sshd::free_port();
    let client = Client::new(
        &sshd,
        &user.name,
        &format!("[account.forward]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut child = client
        .command(&["tunnel", "acct", "--stats-every", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mailhaul tunnel");
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut wait_line = |want: &dyn Fn(&str) -> bool, what: &str| loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                seen.push(line.clone());
                if want(&line) {
                    return;
                }
            }
            Err(_) => panic!("no {what} line within 30 s; got {seen:?}"),
        }
    };
    wait_line(
        &|l| {
            l.starts_with(&format!(
                "acct: forwarding 127.0.0.1:{port} -> localhost:25"
            ))
        },
        "forwarding",
    );
    // Ask the kernel, not the log: one listener on that port, on loopback.
    assert_eq!(
        common::proc::listening_addresses(port),
        vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))],
        "the forward's listening socket"
    );

    let subject = format!("through-the-tunnel-{}", user.name);
    let body: String = (0..300)
        .map(|i| format!("line {i} of a message that went out through the forward\n"))
        .collect();
    let data = client.dir.path().join("outgoing.eml");
    std::fs::write(
        &data,
        format!(
            "From: me@example.org\nTo: {}\nSubject: {subject}\n\n{body}",
            user.name
        ),
    )
    .unwrap();
    common::require_tool("swaks", "swaks");
    let out = std::process::Command::new("swaks")
        .args(["--silent", "1", "--from", "me@example.org", "--to"])
        .arg(format!("{}@localhost", user.name))
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .arg("--data")
        .arg(format!("@{}", data.display()))
        .output()
        .expect("run swaks");
    assert!(out.status.success(), "swaks: {}", describe(&out));
    wait_line(
        &|l| l.starts_with("acct: 0 live, 1 total; up ") && l.ends_with("; 0 errors"),
        "stats",
    );

    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    wait_line(&|l| l == "acct: stopped", "stopped");
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("listen address released");

    // The message reached the server's spool; fetch brings it home.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&user.spool_contents()).contains(&subject) {
        assert!(Instant::now() < deadline, "not delivered to the spool");
        std::thread::sleep(Duration::from_millis(100));
    }
    postfix.wait_delivered(&user, 0);
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "fetch: {}", describe(&out));
    let filed: Vec<Vec<u8>> = client
        .filed_messages()
        .into_iter()
        .filter(|m| String::from_utf8_lossy(m).contains(&format!("\nSubject: {subject}\n")))
        .collect();
    assert_eq!(filed.len(), 1, "filed once");
    let text = String::from_utf8_lossy(&filed[0]);
    let filed_body = &text[text.find("\n\n").unwrap() + 2..];
    assert_eq!(
        filed_body.trim_end_matches('\n'),
        body.trim_end_matches('\n')
    );
}
