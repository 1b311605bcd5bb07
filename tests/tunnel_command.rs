//! `mailhaul tunnel ACCOUNT` as a user runs it: the real binary against a
//! real sshd and Postfix, stopped with SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Postfix, TestSshd, TestUser};

#[test]
fn headless_tunnel_forwards_prints_and_stops_on_sigterm() {
    Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "tunc");
    let dir = tempfile::tempdir().unwrap();
    let port = common::sshd::free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[account]]\nname = \"work\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\n\
             identity_file = \"{}\"\nuse_agent = false\nknown_hosts_file = \"{}\"\n\
             [account.forward]\nlisten = \"127.0.0.1:{port}\"\n",
            sshd.port,
            user.name,
            sshd.key.display(),
            sshd.known_hosts.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailhaul"))
        .arg("--config")
        .arg(&config)
        .args(["tunnel", "work", "--stats-every", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mailhaul");
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
                "work: forwarding 127.0.0.1:{port} -> localhost:25"
            ))
        },
        "forwarding",
    );
    let out = Command::new("swaks")
        .args(["--silent", "1", "--to"])
        .arg(format!("{}@localhost", user.name))
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--header", "Subject: headless-tunnel"])
        .output()
        .expect("run swaks");
    assert!(out.status.success(), "{out:?}");
    wait_line(
        &|l| l.starts_with("work: 0 live, 1 total; up ") && l.ends_with("; 0 errors"),
        "stats",
    );
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    wait_line(&|l| l == "work: stopped", "stopped");
    // The address is free again.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("listener released");
}
