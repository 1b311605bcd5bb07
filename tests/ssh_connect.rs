//! The SSH layer against a real OpenSSH sshd on loopback: authentication
//! (key file, encrypted key, agent), known_hosts policies, compression,
//! remote scripts with hostile arguments, and socket counters.

mod common;

use std::cell::RefCell;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sshd::{keygen, pub_path, public_key, PASSPHRASE};
use common::{TestSshd, TestUser};
use mailhaul::engine::account::{HostKeyPolicy, TransportCompression};
use mailhaul::engine::failure::Failure;
use mailhaul::engine::ssh::{
    connect, Connection, HostKeyDecision, NoPrompts, Prompter, RemoteScript, SshError, Target,
    UnknownHost,
};

fn target(sshd: &TestSshd, key: &Path) -> Target {
    Target {
        identity_files: vec![key.to_path_buf()],
        ..common::ssh_target(sshd, "root")
    }
}

fn must_connect(sshd: &TestSshd, t: &Target) -> Connection {
    connect(t, TransportCompression::Off, &NoPrompts)
        .unwrap_or_else(|e| panic!("connect failed: {e}\nsshd log:\n{}", sshd.log()))
}

fn must_fail(t: &Target) -> SshError {
    match connect(t, TransportCompression::Off, &NoPrompts) {
        Ok(_) => panic!("connect succeeded but should not have"),
        Err(e) => e,
    }
}

/// The fingerprint `ssh-keygen -lf` prints for a public key file.
fn keygen_fingerprint(pub_file: &Path) -> String {
    let out = common::run(Command::new("ssh-keygen").arg("-lf").arg(pub_file));
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn key_file_logs_in_and_script_runs() {
    let sshd = TestSshd::start();
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let out = conn
        .run_script(
            &RemoteScript::new("test", "id -un; echo oops >&2; exit 3"),
            &[] as &[&str],
        )
        .unwrap();
    assert_eq!(out.stdout, b"root\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.status, 3);
    assert!(!out.success());
}

#[test]
fn hostile_arguments_arrive_intact_and_nothing_runs() {
    let sshd = TestSshd::start();
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let marker = sshd.dir.path().join("pwned");
    let m = marker.display();
    let args: Vec<Vec<u8>> = vec![
        b"/var/mail/with space".to_vec(),
        b"".to_vec(),
        format!("$(touch {m})").into_bytes(),
        format!("`touch {m}`").into_bytes(),
        format!("'; touch {m}; '").into_bytes(),
        format!("\"; touch {m}; \"").into_bytes(),
        b"line1\nline2\n\n".to_vec(),
        b"-n".to_vec(),
        b"*".to_vec(),
        vec![0xff, 0xfe, b'\\', b'%', b'd', 1, 127],
    ];
    let out = conn
        .run_script(
            &RemoteScript::new(
                "test",
                "echo $# >&2; for a in \"$@\"; do printf '%s' \"$a\"; printf '\\000'; done",
            ),
            &args,
        )
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stderr.trim(), args.len().to_string());
    let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
    assert_eq!(
        got.len(),
        args.len() + 1,
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (want, got) in args.iter().zip(&got) {
        assert_eq!(got, want);
    }
    assert!(!marker.exists(), "an argument was executed");
}

#[test]
fn streaming_script_output_and_status() {
    let sshd = TestSshd::start();
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let mut stream = conn
        .start_script(
            &RemoteScript::new("test", "seq 1 \"$1\"; echo done >&2; exit \"$2\""),
            &["200000", "0"],
        )
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let end = stream.finish().unwrap();
    let want: String = (1..=200000).map(|i| format!("{i}\n")).collect();
    assert!(
        text == want,
        "stream differs ({} vs {} bytes)",
        text.len(),
        want.len()
    );
    assert!(end.success());
    assert_eq!(end.stderr, "done\n");

    // Stopping early: finish drains the rest and still gets the status.
    let mut stream = conn
        .start_script(
            &RemoteScript::new("test", "seq 1 100000; exit 4"),
            &[] as &[&str],
        )
        .unwrap();
    let mut first = [0u8; 10];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"1\n2\n3\n4\n5\n");
    assert_eq!(stream.finish().unwrap().status, 4);
}

#[test]
fn encrypted_key_with_passphrase_command() {
    let sshd = TestSshd::start();
    let mut t = target(&sshd, &sshd.encrypted_key);
    t.passphrase_command = Some(vec!["printf".into(), "%s\\n".into(), PASSPHRASE.into()]);
    let conn = must_connect(&sshd, &t);
    assert_eq!(
        conn.run_script(&RemoteScript::new("test", "echo ok"), &[] as &[&str])
            .unwrap()
            .stdout,
        b"ok\n"
    );
}

#[test]
fn encrypted_key_with_prompted_passphrase() {
    struct Asker(RefCell<Vec<PathBuf>>);
    impl Prompter for Asker {
        fn passphrase(&self, key: &Path) -> Option<String> {
            self.0.borrow_mut().push(key.to_path_buf());
            Some(PASSPHRASE.to_string())
        }
    }
    let sshd = TestSshd::start();
    let asker = Asker(RefCell::new(Vec::new()));
    connect(
        &target(&sshd, &sshd.encrypted_key),
        TransportCompression::Off,
        &asker,
    )
    .unwrap();
    assert_eq!(*asker.0.borrow(), vec![sshd.encrypted_key.clone()]);
}

#[test]
fn wrong_or_missing_passphrase_is_named_clearly() {
    let sshd = TestSshd::start();
    let mut t = target(&sshd, &sshd.encrypted_key);
    t.passphrase_command = Some(vec!["echo".into(), "not the passphrase".into()]);
    let e = must_fail(&t);
    assert!(matches!(e, SshError::WrongPassphrase { .. }), "{e:?}");
    assert_eq!(e.failure(), Failure::Auth);
    assert!(e.to_string().starts_with("wrong passphrase for "), "{e}");

    t.passphrase_command = None;
    let e = must_fail(&t);
    assert!(matches!(e, SshError::NoPassphrase { .. }), "{e:?}");
    assert!(e.to_string().contains("ssh-add"), "{e}");

    t.passphrase_command = Some(vec!["false".into()]);
    let e = must_fail(&t);
    assert!(matches!(e, SshError::PassphraseCommand { .. }), "{e:?}");
    assert_eq!(e.failure(), Failure::Auth);
}

#[test]
fn unauthorized_key_is_refused() {
    let sshd = TestSshd::start();
    let stranger = sshd.dir.path().join("stranger");
    keygen(&stranger, "");
    let e = must_fail(&target(&sshd, &stranger));
    assert!(matches!(e, SshError::AuthRefused { .. }), "{e:?}");
    assert_eq!(e.failure(), Failure::Auth);
    assert!(
        e.to_string().contains(&stranger.display().to_string()),
        "{e}"
    );
}

/// An ssh-agent started in the foreground, killed by PID on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(dir: &Path) -> Agent {
    let socket = dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh-agent");
    let agent = Agent { child, socket };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.socket.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    agent
}

#[test]
fn agent_logs_in_without_key_files() {
    let sshd = TestSshd::start();
    let agent = start_agent(sshd.dir.path());
    common::run(
        Command::new("ssh-add")
            .arg("-q")
            .arg(&sshd.key)
            .env("SSH_AUTH_SOCK", &agent.socket),
    );
    let mut t = target(&sshd, &sshd.key);
    t.identity_files.clear();
    t.agent_socket = Some(agent.socket.clone());
    let conn = must_connect(&sshd, &t);
    assert_eq!(
        conn.run_script(&RemoteScript::new("test", "echo agent"), &[] as &[&str])
            .unwrap()
            .stdout,
        b"agent\n"
    );

    // The same target without the agent has nothing to offer.
    t.agent_socket = None;
    assert!(matches!(must_fail(&t), SshError::AuthRefused { .. }));
}

#[test]
fn changed_host_key_is_refused_with_both_fingerprints() {
    let sshd = TestSshd::start();
    let other = sshd.dir.path().join("other_host_key");
    keygen(&other, "");
    let kh = sshd.dir.path().join("known_hosts_changed");
    std::fs::write(
        &kh,
        format!(
            "# comment\nexample.org {}\n[127.0.0.1]:{} {}\n",
            public_key(&sshd.host_key),
            sshd.port,
            public_key(&other)
        ),
    )
    .unwrap();
    let mut t = target(&sshd, &sshd.key);
    t.known_hosts_file = kh.clone();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        t.host_key_policy = policy;
        let e = must_fail(&t);
        assert_eq!(e.failure(), Failure::HostKey);
        let SshError::HostKeyChanged(changed) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(changed.expected, keygen_fingerprint(&pub_path(&other)));
        assert_eq!(changed.got, keygen_fingerprint(&pub_path(&sshd.host_key)));
        assert_eq!(changed.line, 3);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("line 3 of {}", kh.display())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("ssh-keygen -R '[127.0.0.1]:{}'", sshd.port)),
            "{msg}"
        );
    }
}

#[test]
fn unknown_host_under_strict_asks_then_refuses() {
    struct Recorder(RefCell<Option<UnknownHost>>, HostKeyDecision);
    impl Prompter for Recorder {
        fn unknown_host(&self, host: &UnknownHost) -> HostKeyDecision {
            *self.0.borrow_mut() = Some(host.clone());
            self.1
        }
    }
    let sshd = TestSshd::start();
    let mut t = target(&sshd, &sshd.key);
    t.known_hosts_file = sshd.dir.path().join("absent_known_hosts");
    let refuse = Recorder(RefCell::new(None), HostKeyDecision::Refuse);
    let e = connect(&t, TransportCompression::Off, &refuse)
        .err()
        .expect("must be refused");
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
    assert_eq!(e.failure(), Failure::HostKey);
    let asked = refuse.0.borrow().clone().expect("the hook was asked");
    assert_eq!(
        asked,
        UnknownHost {
            host: "127.0.0.1".into(),
            port: sshd.port,
            key_type: "ssh-ed25519".into(),
            fingerprint: keygen_fingerprint(&pub_path(&sshd.host_key)),
        }
    );
    assert!(e.to_string().contains(&asked.fingerprint), "{e}");

    let once = Recorder(RefCell::new(None), HostKeyDecision::AcceptOnce);
    connect(&t, TransportCompression::Off, &once).unwrap();
    assert!(!t.known_hosts_file.exists(), "AcceptOnce must not record");

    let record = Recorder(RefCell::new(None), HostKeyDecision::AcceptAndRecord);
    connect(&t, TransportCompression::Off, &record).unwrap();
    must_connect(&sshd, &t);
}

#[test]
fn accept_new_records_the_key_then_strict_accepts_it() {
    let sshd = TestSshd::start();
    let home = sshd.dir.path().join("home");
    let mut t = target(&sshd, &sshd.key);
    t.known_hosts_file = home.join(".ssh").join("known_hosts");
    t.host_key_policy = HostKeyPolicy::AcceptNew;
    must_connect(&sshd, &t);
    let text = std::fs::read_to_string(&t.known_hosts_file).unwrap();
    assert_eq!(
        text,
        format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key_pub)
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&t.known_hosts_file), 0o600);
    assert_eq!(mode(&home.join(".ssh")), 0o700);
    t.host_key_policy = HostKeyPolicy::Strict;
    must_connect(&sshd, &t);
    // Nothing is appended twice.
    assert_eq!(std::fs::read_to_string(&t.known_hosts_file).unwrap(), text);
    // The real OpenSSH client agrees with what was written.
    let out = sshd
        .ssh_command("root")
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            t.known_hosts_file.display()
        ))
        .arg("true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn revoked_key_is_refused_even_when_also_listed() {
    let sshd = TestSshd::start();
    let kh = sshd.dir.path().join("known_hosts_revoked");
    std::fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {}\n@revoked * {}\n",
            sshd.port, sshd.host_key_pub, sshd.host_key_pub
        ),
    )
    .unwrap();
    let mut t = target(&sshd, &sshd.key);
    t.known_hosts_file = kh;
    t.host_key_policy = HostKeyPolicy::AcceptNew;
    let e = must_fail(&t);
    assert!(
        matches!(e, SshError::HostKeyRevoked { line: 2, .. }),
        "{e:?}"
    );
    assert_eq!(e.failure(), Failure::HostKey);
}

#[test]
fn hashed_entry_matches_and_plain_port_22_entry_does_not() {
    let sshd = TestSshd::start();
    let kh = sshd.dir.path().join("known_hosts_hashed");
    std::fs::copy(&sshd.known_hosts, &kh).unwrap();
    common::run(
        Command::new("ssh-keygen")
            .arg("-q")
            .arg("-H")
            .arg("-f")
            .arg(&kh),
    );
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    let mut t = target(&sshd, &sshd.key);
    t.known_hosts_file = kh.clone();
    must_connect(&sshd, &t);

    // A plain `127.0.0.1` entry is for port 22, as in OpenSSH.
    std::fs::write(&kh, format!("127.0.0.1 {}\n", sshd.host_key_pub)).unwrap();
    assert!(matches!(must_fail(&t), SshError::HostKeyUnknown { .. }));
}

#[test]
fn compression_is_negotiated_when_asked() {
    let sshd = TestSshd::start();
    let t = target(&sshd, &sshd.key);
    let z = "zlib@openssh.com".to_string();
    for compression in [TransportCompression::Zlib, TransportCompression::Huffman] {
        let zlib = connect(&t, compression, &NoPrompts).unwrap();
        assert_eq!(
            zlib.compression(),
            (z.clone(), z.clone()),
            "{compression:?}"
        );
        // The server inflates what we send (session setup, a script on
        // stdin, its arguments) and answers.
        let out = zlib
            .run_script(
                &RemoteScript::new("test", "printf '%s|' \"$1\" \"$2\""),
                &["one", "two two"],
            )
            .unwrap();
        assert_eq!(out.stdout, b"one|two two|", "{compression:?}");
    }
    let plain = connect(&t, TransportCompression::Off, &NoPrompts).unwrap();
    assert_eq!(
        plain.compression(),
        ("none".to_string(), "none".to_string())
    );
}

#[test]
fn tcp_info_counters_grow_with_traffic() {
    let sshd = TestSshd::start();
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let (rx0, tx0) = (
        conn.socket_bytes_received().unwrap(),
        conn.socket_bytes_sent().unwrap(),
    );
    assert!(rx0 > 0 && tx0 > 0, "the handshake moved bytes: {rx0} {tx0}");
    let out = conn
        .run_script(
            &RemoteScript::new("test", "head -c \"$1\" /dev/urandom"),
            &["1000000"],
        )
        .unwrap();
    assert_eq!(out.stdout.len(), 1_000_000);
    let rx1 = conn.socket_bytes_received().unwrap();
    assert!(rx1 - rx0 >= 1_000_000, "received only {} bytes", rx1 - rx0);
    assert!(
        rx1 - rx0 < 1_100_000,
        "SSH overhead too large: {}",
        rx1 - rx0
    );
    assert!(conn.socket_bytes_sent().unwrap() > tx0);
}

#[test]
fn silent_script_survives_keepalives_until_the_idle_limit() {
    let sshd = TestSshd::start();
    let mut conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    conn.set_keepalive_interval(Duration::from_secs(1));
    conn.set_idle_timeout(Duration::from_secs(10));
    // Silent for 3 s: three libssh2 timeouts, each resumed after a keepalive.
    let out = conn
        .run_script(
            &RemoteScript::new("test", "sleep 3; echo awake"),
            &[] as &[&str],
        )
        .unwrap();
    assert_eq!(out.stdout, b"awake\n");
    // The session is still usable afterwards.
    assert_eq!(
        conn.run_script(&RemoteScript::new("test", "echo again"), &[] as &[&str])
            .unwrap()
            .stdout,
        b"again\n"
    );

    conn.set_idle_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let e = conn
        .run_script(&RemoteScript::new("test", "sleep 30"), &[] as &[&str])
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.failure(), Failure::Transfer);
    assert!(e.to_string().contains("sent nothing for 2 s"), "{e}");
}

#[test]
fn the_known_key_type_is_preferred_in_the_handshake() {
    struct Once;
    impl Prompter for Once {
        fn unknown_host(&self, _: &UnknownHost) -> HostKeyDecision {
            HostKeyDecision::AcceptOnce
        }
    }
    // libssh2 by itself prefers ed25519; known_hosts only has the ECDSA key.
    let sshd = TestSshd::start_with_host_keys(&["ecdsa", "ed25519"]);
    let mut t = target(&sshd, &sshd.key);
    let conn = must_connect(&sshd, &t);
    let hostkey = |c: &Connection| {
        c.session()
            .methods(ssh2::MethodType::HostKey)
            .unwrap()
            .to_string()
    };
    assert_eq!(hostkey(&conn), "ecdsa-sha2-nistp256");
    // With nothing known, libssh2's own order applies (the control).
    t.known_hosts_file = sshd.dir.path().join("empty_known_hosts");
    let conn = connect(&t, TransportCompression::Off, &Once).unwrap();
    assert_eq!(hostkey(&conn), "ssh-ed25519");
}

/// A host known only by a key of another type that now sends a key of a
/// new type is a changed host, as for OpenSSH 9 ("REMOTE HOST IDENTIFICATION
/// HAS CHANGED ... Offending ECDSA key"), under both policies: accept-new
/// must not record the new key.
#[test]
fn a_host_known_only_by_another_key_type_is_a_changed_host() {
    let sshd = TestSshd::start();
    let ecdsa = sshd.dir.path().join("some_ecdsa");
    common::sshd::keygen_type(&ecdsa, "ecdsa", "");
    let kh = sshd.dir.path().join("known_hosts_ecdsa");
    let text = format!("[127.0.0.1]:{} {}\n", sshd.port, public_key(&ecdsa));
    std::fs::write(&kh, &text).unwrap();
    let mut t = target(&sshd, &sshd.key);
    t.known_hosts_file = kh.clone();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        t.host_key_policy = policy;
        let e = must_fail(&t);
        let SshError::HostKeyChanged(changed) = &e else {
            panic!("{policy:?}: {e:?}")
        };
        assert_eq!(changed.expected_type, "ecdsa-sha2-nistp256");
        assert_eq!(changed.key_type, "ssh-ed25519");
        assert_eq!(changed.expected, keygen_fingerprint(&pub_path(&ecdsa)));
        assert_eq!(changed.line, 1);
        assert!(e.to_string().contains("expects ecdsa-sha2-nistp256"), "{e}");
        assert_eq!(std::fs::read_to_string(&kh).unwrap(), text, "{policy:?}");
    }
    // The real OpenSSH client calls it changed too.
    let out = Command::new("/usr/bin/ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(&sshd.key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
        ])
        .args(["-o", "IdentitiesOnly=yes", "-p", &sshd.port.to_string()])
        .args(["root@127.0.0.1", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HAS CHANGED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Host names match known_hosts as in OpenSSH: lowercased. `LocalHost`
/// finds the `[localhost]:PORT` line (plain, upper-case or hashed), so a
/// different key there is a changed key that accept-new refuses, instead
/// of an unknown host whose (attacker's) key is recorded.
#[test]
fn host_names_match_known_hosts_lowercased() {
    let sshd = TestSshd::start();
    let mut t = target(&sshd, &sshd.key);
    t.host = "LocalHost".into();
    let port = sshd.port;
    let kh = sshd.dir.path().join("known_hosts_case");
    t.known_hosts_file = kh.clone();
    // The right key under the lowercase name, the upper-case name, and a
    // hashed lowercase name: each is found for `LocalHost`.
    let hashed = sshd.dir.path().join("known_hosts_hashed");
    std::fs::write(
        &hashed,
        format!("[localhost]:{port} {}\n", sshd.host_key_pub),
    )
    .unwrap();
    common::run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&hashed));
    let hashed_line = std::fs::read_to_string(&hashed).unwrap();
    assert!(hashed_line.starts_with("|1|"), "{hashed_line}");
    for line in [
        format!("[localhost]:{port} {}\n", sshd.host_key_pub),
        format!("[LOCALHOST]:{port} {}\n", sshd.host_key_pub),
        hashed_line,
    ] {
        std::fs::write(&kh, &line).unwrap();
        t.host_key_policy = HostKeyPolicy::Strict;
        must_connect(&sshd, &t);
        assert_eq!(std::fs::read_to_string(&kh).unwrap(), line);
    }
    // Another key under the lowercase name: changed, not recorded anew.
    let other = sshd.dir.path().join("other_case_key");
    keygen(&other, "");
    let text = format!("[localhost]:{port} {}\n", public_key(&other));
    std::fs::write(&kh, &text).unwrap();
    t.host_key_policy = HostKeyPolicy::AcceptNew;
    let e = must_fail(&t);
    assert!(matches!(e, SshError::HostKeyChanged(_)), "{e:?}");
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), text, "key recorded");
    // A new host is recorded under its lowercase name, as ssh records it.
    std::fs::write(&kh, "").unwrap();
    must_connect(&sshd, &t);
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        format!("[localhost]:{port} {}\n", sshd.host_key_pub)
    );
}

#[test]
fn unprivileged_user_runs_scripts_in_its_home() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhs");
    let conn = connect(
        &common::ssh_target(&sshd, &user.name),
        TransportCompression::Off,
        &NoPrompts,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    let out = conn
        .run_script(
            &RemoteScript::new(
                "test",
                "id -un; printf '%s' \"$2\" > \"$HOME/$1\"; ls -l \"$3\" | cut -c1-10",
            ),
            &["claim file", "data\n", &user.spool.display().to_string()],
        )
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n-rw-rw----\n", user.name)
    );
    assert_eq!(
        std::fs::read(user.home.join("claim file")).unwrap(),
        b"data\n"
    );
}

#[test]
fn closed_port_and_silent_server_fail_as_transfer_errors() {
    let sshd = TestSshd::start();
    let mut t = target(&sshd, &sshd.key);
    t.port = common::sshd::free_port();
    let e = must_fail(&t);
    assert!(matches!(e, SshError::Connect { .. }), "{e:?}");
    assert_eq!(e.failure(), Failure::Transfer);
    assert!(e.to_string().contains("refused"), "{e}");

    // Accepts, then says nothing: the handshake gives up after the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    t.port = silent.local_addr().unwrap().port();
    t.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let e = must_fail(&t);
    assert!(matches!(e, SshError::Handshake { .. }), "{e:?}");
    assert_eq!(e.failure(), Failure::Transfer);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn system_known_hosts_file_is_trusted_but_never_written() {
    let sshd = TestSshd::start();
    let system = sshd.dir.path().join("ssh_known_hosts");
    std::fs::copy(&sshd.known_hosts, &system).unwrap();
    let mut t = target(&sshd, &sshd.key);
    t.known_hosts_file = sshd.dir.path().join("user_known_hosts");
    t.system_known_hosts_files = vec![sshd.dir.path().join("absent"), system.clone()];
    t.host_key_policy = HostKeyPolicy::AcceptNew;
    must_connect(&sshd, &t);
    assert!(
        !t.known_hosts_file.exists(),
        "a known key must not be recorded again"
    );

    // A changed key in the system file is reported with that file's name.
    let other = sshd.dir.path().join("other_host_key");
    keygen(&other, "");
    std::fs::write(
        &system,
        format!("[127.0.0.1]:{} {}\n", sshd.port, public_key(&other)),
    )
    .unwrap();
    let e = must_fail(&t);
    let SshError::HostKeyChanged(changed) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (changed.known_hosts.as_path(), changed.line),
        (system.as_path(), 1)
    );
}

#[test]
fn server_hanging_up_after_too_many_keys_is_explained() {
    let sshd = TestSshd::start_with_config("MaxAuthTries 1\n");
    let agent = start_agent(sshd.dir.path());
    let stranger = sshd.dir.path().join("stranger");
    keygen(&stranger, "");
    common::run(
        Command::new("ssh-add")
            .arg("-q")
            .arg(&stranger)
            .env("SSH_AUTH_SOCK", &agent.socket),
    );
    let mut t = target(&sshd, &sshd.key);
    t.agent_socket = Some(agent.socket.clone());
    let e = must_fail(&t);
    assert!(matches!(e, SshError::AuthRefused { .. }), "{e:?}");
    assert!(e.to_string().contains("the server hung up"), "{e}");
}

/// A server that takes passwords only is named as such (the methods it
/// offers are asked once no key worked), not reported as a refused key.
#[test]
fn a_password_only_server_is_named() {
    let sshd = TestSshd::start_with_config(
        "PubkeyAuthentication no\nMatch all\n    PasswordAuthentication yes\n",
    );
    let e = must_fail(&target(&sshd, &sshd.key));
    assert!(matches!(e, SshError::AuthRefused { .. }), "{e:?}");
    assert_eq!(e.failure(), Failure::Auth);
    assert!(
        e.to_string().contains("only offers `password`"),
        "{e}\nsshd log:\n{}",
        sshd.log()
    );
}

/// A server that also holds a host certificate (signed by a CA the user may
/// trust with an `@cert-authority` line): mailhaul offers no certificate
/// types, so the server shows its plain key, which known_hosts checks as
/// always; a known_hosts that trusts only the CA does not make the host
/// known (asked for under `strict`, here refused), never trusted blindly.
#[test]
fn a_host_with_a_certificate_is_checked_by_its_plain_key() {
    let certs = tempfile::tempdir().unwrap();
    let cert = certs.path().join("host-cert.pub");
    let sshd = TestSshd::start_with_config(&format!("HostCertificate {}\n", cert.display()));
    // Sign the server's key with a CA, then let sshd read its config again
    // (SIGHUP: sshd re-executes itself, same PID and port).
    let ca = certs.path().join("ca");
    keygen(&ca, "");
    common::run(
        Command::new("/usr/bin/ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca)
            .args(["-I", "mailhaul-test-host", "-h", "-n", "127.0.0.1"])
            .arg(pub_path(&sshd.host_key)),
    );
    std::fs::rename(sshd.dir.path().join("host_ed25519-cert.pub"), &cert).unwrap();
    let ca_line = format!(
        "@cert-authority [127.0.0.1]:{} {}",
        sshd.port,
        std::fs::read_to_string(pub_path(&ca)).unwrap().trim()
    );
    let by_ca = sshd.dir.path().join("known_hosts_ca");
    std::fs::write(&by_ca, format!("{ca_line}\n")).unwrap();
    // SAFETY: signalling a child process by its PID.
    unsafe {
        libc::kill(sshd.pid() as i32, libc::SIGHUP);
    }
    // OpenSSH's client, accepting certificates only (no key exchange
    // without one), proves that the server now shows one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = sshd
            .ssh_command("root")
            .args(["-o", "HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com"])
            .arg("true")
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never showed its certificate: {}\nsshd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            sshd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // known_hosts with the plain key: connects, the key checked as always.
    must_connect(&sshd, &target(&sshd, &sshd.key));
    // known_hosts with only the CA: unknown, refused without a prompt.
    let mut t = target(&sshd, &sshd.key);
    t.known_hosts_file = by_ca;
    let e = must_fail(&t);
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
}

/// How many session channels sshd has opened so far (its debug log).
fn channels_opened(sshd: &TestSshd) -> usize {
    sshd.log()
        .matches("server_input_channel_open: ctype session")
        .count()
}

/// Waits up to 10 s for `what` to hold, with sshd's log in the panic.
fn wait_for(sshd: &TestSshd, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not seen in 10 s\nsshd log:\n{}",
            sshd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_channel_asked_for_ahead_serves_the_next_step() {
    let sshd = TestSshd::start_with_config("LogLevel DEBUG1\n");
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let script = RemoteScript::new("test", "echo ahead");
    conn.request_channel();
    wait_for(&sshd, "the channel asked for ahead opened", || {
        channels_opened(&sshd) == 1
    });
    // Asked again once answered: kept, as an idle worker keeps it.
    std::thread::sleep(Duration::from_millis(100));
    conn.request_channel();
    conn.request_channel();
    assert_eq!(channels_opened(&sshd), 1, "asked for twice");
    let out = conn.run_script(&script, &[] as &[&str]).unwrap();
    assert_eq!(out.stdout, b"ahead\n");
    assert_eq!(
        channels_opened(&sshd),
        1,
        "the step opened a channel of its own"
    );
    // Used once: the next step opens its own.
    let out = conn.run_script(&script, &[] as &[&str]).unwrap();
    assert_eq!(out.stdout, b"ahead\n");
    assert_eq!(channels_opened(&sshd), 2);
}

/// Exec requests sshd has taken (its DEBUG1 log).
fn execs(sshd: &TestSshd) -> usize {
    sshd.log().matches("req exec").count()
}

/// A script that waits for its command line (`wait`), or ends after it
/// without a word (`mute`), or at once (`gone`), or says something unasked
/// and waits (`talk`), or answers its exec request.
fn standby_script() -> RemoteScript {
    RemoteScript::new(
        "standby",
        "case $1 in\n\
         wait) IFS= read -r l <&3 && echo \"line $l\" ;;\n\
         mute) IFS= read -r l <&3; exit 0 ;;\n\
         gone) exit 0 ;;\n\
         talk) echo unasked; IFS= read -r l <&3; exit 0 ;;\n\
         *) echo \"exec $*\" ;;\n\
         esac",
    )
}

/// Keeps `script` started ahead with `args` on `conn`, turn by turn as an
/// idle worker does, until sshd has taken its exec request and its answer
/// has had time to come.
fn start_ahead(sshd: &TestSshd, conn: &mailhaul::engine::ssh::Connection, args: &[&str]) {
    let script = standby_script();
    conn.request_channel();
    wait_for(sshd, "the channel asked for ahead opened", || {
        channels_opened(sshd) == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    conn.request_channel();
    conn.keep_ready(&script, args);
    wait_for(sshd, "the exec request sent ahead", || execs(sshd) == 1);
    std::thread::sleep(Duration::from_millis(100));
    conn.keep_ready(&script, args);
}

/// A step of a script kept started ahead goes to it as a line of hex
/// words: no channel opened, no exec request; the next step, with no
/// standby left, starts as usual.
#[test]
fn a_script_started_ahead_takes_the_next_step_as_its_command_line() {
    let sshd = TestSshd::start_with_config("LogLevel DEBUG1\n");
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    start_ahead(&sshd, &conn, &["wait"]);
    let script = standby_script();
    let out = conn.run_script(&script, &["a b", ""]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line x612062 x\n",
        "{}",
        out.stderr
    );
    assert_eq!((channels_opened(&sshd), execs(&sshd)), (1, 1));
    let out = conn.run_script(&script, &["a b"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec a b\n");
    assert_eq!((channels_opened(&sshd), execs(&sshd)), (2, 2));
}

/// A standby that ends without answering its line (the server killed
/// it) has done nothing: the step starts anew with its exec request.
#[test]
fn a_standby_that_ends_unanswered_leaves_the_step_to_a_new_start() {
    let sshd = TestSshd::start_with_config("LogLevel DEBUG1\n");
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    start_ahead(&sshd, &conn, &["mute"]);
    let out = conn.run_script(&standby_script(), &["a b"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec a b\n");
    assert_eq!(execs(&sshd), 2, "the step's own exec request");
}

/// Standbys that end on their own are replaced, three in a row at the
/// most: then the session keeps none (a server that cannot keep one is
/// not sent an exec request at every turn of the worker's loop).
#[test]
fn a_session_stops_starting_standbys_that_keep_ending() {
    let sshd = TestSshd::start_with_config("LogLevel DEBUG1\n");
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let script = standby_script();
    // Turns of an idle worker, each once the server had time to answer.
    let turn = || {
        conn.request_channel();
        conn.keep_ready(&script, &["gone"]);
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_for(&sshd, "three standbys started", || {
        turn();
        execs(&sshd) >= 3
    });
    for _ in 0..12 {
        turn();
    }
    assert_eq!(execs(&sshd), 3, "standbys started");
    // A step of that script still runs, as usual.
    let out = conn.run_script(&script, &["a"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec a\n");
}

/// A standby that says something unasked while it still runs is told to
/// end (its stdin closed), seen to have ended although its stderr holds
/// data (this sshd's debug messages: libssh2 tells no end-of-file while
/// a stream holds any), and replaced, without a turn of the worker's loop
/// waiting for it. The same end as a standby's at the end of its life.
#[test]
fn a_standby_that_talks_unasked_is_ended_and_replaced() {
    let sshd = TestSshd::start_with_config("LogLevel DEBUG1\n");
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let script = standby_script();
    let mut slowest = Duration::ZERO;
    let mut turn = || {
        let began = Instant::now();
        conn.request_channel();
        conn.keep_ready(&script, &["talk"]);
        slowest = slowest.max(began.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    };
    // Replaced once ended: a second one starts.
    wait_for(&sshd, "a second standby started", || {
        turn();
        execs(&sshd) >= 2
    });
    assert!(slowest < Duration::from_secs(2), "a turn took {slowest:?}");
}

/// On a server whose `MaxSessions` the watcher and a standby reach, a
/// step of another script (a send, say) ends the standby to get its
/// session, and runs.
#[test]
fn a_standby_makes_room_for_another_step_when_the_server_allows_no_more_sessions() {
    let sshd = TestSshd::start_with_config("MaxSessions 2\nLogLevel DEBUG1\n");
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let watcher = RemoteScript::new("watcher", "echo watching; cat <&3 >/dev/null");
    let mut long = conn.start_long_script(&watcher, &[] as &[&str]).unwrap();
    assert_eq!(read_line(&mut long), "watching");
    let script = standby_script();
    let turn = || {
        conn.request_channel();
        conn.keep_ready(&script, &["wait"]);
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_for(&sshd, "the standby started", || {
        turn();
        execs(&sshd) >= 2
    });
    turn();
    turn();
    let other = RemoteScript::new("other", "echo other step");
    let out = conn
        .run_script(&other, &[] as &[&str])
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "other step\n");
}

/// One line of a script's output on `channel`, read a byte at a time.
fn read_line(channel: &mut ssh2::Channel) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while channel.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// First contact with an empty `~/.mailhaul/scripts`: the claim, watch
/// (its stdin kept on fd 3) and send programs go up (the stub asks for the
/// loader, the loader for the program), are stored and start; a script on
/// fd 3 gets exactly the bytes the client sent after them. A second round
/// finds every copy good and leaves it be (the same inode: nothing sent
/// again, the stub alone went up). A copy changed on the server never runs:
/// it is sent again.
#[test]
fn first_contact_stores_the_programs_and_later_steps_reuse_them() {
    use mailhaul::engine::{claim, outbox::relay, watch};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhl");
    let conn = connect(
        &common::ssh_target(&sshd, &user.name),
        TransportCompression::Off,
        &NoPrompts,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    let scripts = user.home.join(".mailhaul/scripts");
    assert!(!scripts.exists());
    let echo = RemoteScript::new("echo", "cat <&3");
    let cached = |s: &RemoteScript| scripts.join(format!("{}-{}.sh", s.name, s.sha256));
    let spool = user.spool.display().to_string();
    let claims = user.home.join(".mailhaul/claims").display().to_string();
    let mut inodes = Vec::new();
    for round in 0..2 {
        let out = conn
            .run_script(claim::remote_script(), &["probe", spool.as_str()])
            .unwrap();
        assert!(out.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("spool "),
            "{out:?}"
        );
        let mut channel = conn
            .start_long_script(watch::script(), &[spool.as_str(), &claims, "1", "60"])
            .unwrap();
        assert!(
            read_line(&mut channel).starts_with("ready "),
            "round {round}"
        );
        drop(channel);
        let mut channel = conn
            .start_long_script(relay::script(), &["2", "none", "/nonexistent/sendmail"])
            .unwrap();
        let first = read_line(&mut channel);
        assert!(first.starts_with("error "), "round {round}: {first}");
        drop(channel);
        let mut channel = conn.start_long_script(&echo, &[] as &[&str]).unwrap();
        channel.write_all(b"in\0put\n").unwrap();
        channel.send_eof().unwrap();
        let mut got = Vec::new();
        channel.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"in\0put\n", "round {round}");
        let now: Vec<u64> = [
            claim::remote_script(),
            watch::script(),
            relay::script(),
            &echo,
        ]
        .iter()
        .map(|s| std::fs::metadata(cached(s)).unwrap().ino())
        .collect();
        if round == 1 {
            assert_eq!(now, inodes, "a good copy was sent again");
        }
        inodes = now;
    }
    let ran = user.home.join("ran");
    let copy = cached(claim::remote_script());
    let program = std::fs::read_to_string(&copy).unwrap();
    std::fs::write(&copy, format!("touch \"$HOME/ran\"\n{program}")).unwrap();
    let out = conn
        .run_script(claim::remote_script(), &["probe", spool.as_str()])
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert!(!ran.exists(), "the changed copy ran");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), program);
}

#[test]
fn a_channel_refused_ahead_does_not_fail_the_next_step() {
    // Two sessions at most, as an open session's watcher and a fetch's
    // claim take them: the channel asked for meanwhile is refused.
    let sshd = TestSshd::start_with_config("MaxSessions 2\n");
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let watcher = conn
        .start_long_script(
            &RemoteScript::new("hold", "cat <&3 >/dev/null"),
            &[] as &[&str],
        )
        .unwrap();
    let mut claim = conn
        .start_script(
            &RemoteScript::new("slow", "sleep 1; echo done"),
            &[] as &[&str],
        )
        .unwrap();
    conn.request_channel();
    let mut out = String::new();
    claim.read_to_string(&mut out).unwrap();
    assert_eq!(out, "done\n");
    claim.finish().unwrap();
    // The claim's session is free again (sshd frees its slot a turn of its
    // loop after the close, so a moment later): the next step gets one.
    std::thread::sleep(Duration::from_millis(500));
    let out = conn
        .run_script(&RemoteScript::new("test", "echo next"), &[] as &[&str])
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(out.stdout, b"next\n");
    drop(watcher);
}

#[test]
fn libssh2_frees_a_channel_still_opening_without_a_close() {
    // The vendored libssh2's fix (vendor/libssh2-sys/PATCHED.md), on a bare
    // session (a Connection shuts its socket before libssh2 frees it): a
    // channel asked for without waiting, as Connection::request_channel
    // leaves it, has no remote id yet. Unpatched, freeing the session sent
    // EOF and CLOSE for it to the server's channel 0, another channel, and
    // waited for a CLOSE that never came (up to the API timeout).
    let sshd = TestSshd::start();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", sshd.port)).unwrap();
    // A second descriptor of the socket: the connection then ends when this
    // test says, with a FIN after everything libssh2 sent.
    let socket = tcp.try_clone().unwrap();
    let mut session = ssh2::Session::new().unwrap();
    session.set_tcp_stream(tcp);
    session.set_timeout(15_000);
    session.handshake().unwrap();
    session
        .userauth_pubkey_file("root", None, &sshd.key, None)
        .unwrap();
    // The server's channel 0, as the watcher holds it.
    let mut watcher = session.channel_session().unwrap();
    watcher.exec("cat >/dev/null").unwrap();
    // Data ahead of the request keeps sshd from answering it before
    // libssh2 looks.
    std::io::Write::write_all(&mut watcher, &[0u8; 256 * 1024]).unwrap();
    session.set_blocking(false);
    let asked = session.channel_session();
    session.set_blocking(true);
    match asked {
        Err(e) if mailhaul::engine::ssh::is_eagain(&e) => {}
        other => panic!("the channel was not left opening: {:?}", other.err()),
    }
    watcher.send_eof().unwrap();
    watcher.read_to_end(&mut Vec::new()).unwrap();
    watcher.close().unwrap();
    watcher.wait_close().unwrap();
    drop(watcher);
    let dropped = Instant::now();
    drop(session);
    let took = dropped.elapsed();
    socket.shutdown(std::net::Shutdown::Write).unwrap();
    // sshd reads in order, and logs what it makes of each packet (packets
    // for its channel 0 after the watcher's close: "close rcvd twice", or
    // "nonexistent channel" once it is freed) before the end.
    let end = format!("127.0.0.1 port {}", socket.local_addr().unwrap().port());
    let mut log = sshd.log();
    while !log.contains(&format!("Connection closed by {end}"))
        && !log.contains(&format!("Disconnecting user root {end}"))
    {
        assert!(dropped.elapsed() < Duration::from_secs(30), "{log}");
        std::thread::sleep(Duration::from_millis(50));
        log = sshd.log();
    }
    assert!(
        !log.contains("close rcvd twice") && !log.contains("nonexistent channel"),
        "packets went to the server's channel 0:\n{log}"
    );
    assert!(
        took < Duration::from_secs(5),
        "freeing the session took {took:?}\nsshd log:\n{log}"
    );
}

#[test]
fn a_connection_dropped_after_a_stop_does_not_wait_for_a_silent_command() {
    // A stop abandons a stream whose command on the server still runs and
    // sends nothing (a claim waiting, a stalled server): sshd sends that
    // channel's CLOSE only when the command ends, and libssh2, freeing the
    // session, waited for it (until then or the 15 s timeout).
    let sshd = TestSshd::start();
    let conn = must_connect(&sshd, &target(&sshd, &sshd.key));
    let mut stream = conn
        .start_script(
            &RemoteScript::new("silent", "echo started; sleep 10"),
            &[] as &[&str],
        )
        .unwrap();
    let mut line = [0u8; 8];
    stream.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"started\n");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    stream.stop_on(stop);
    let err = stream.read(&mut line).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
    stream.abandon();
    let dropped = Instant::now();
    drop(conn);
    let took = dropped.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "dropping the connection took {took:?}\nsshd log:\n{}",
        sshd.log()
    );
}
