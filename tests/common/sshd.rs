//! A real OpenSSH `sshd` on 127.0.0.1, in its own temporary directory, with
//! its own host key, client key pairs and a known_hosts file that trusts it.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{proc, require_root_and_packages, run};

/// The passphrase of [`TestSshd::encrypted_key`].
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A running `sshd -D -e` on a free loopback port; dropped, it is killed by
/// PID together with every session process it started.
pub struct TestSshd {
    /// The temporary directory holding config, keys and the log.
    pub dir: tempfile::TempDir,
    /// The port it listens on (127.0.0.1 only).
    pub port: u16,
    /// Unencrypted ed25519 client private key (`.pub` next to it), trusted
    /// for root and for every user passed to [`TestSshd::authorize`].
    pub key: PathBuf,
    /// ed25519 client private key encrypted with [`PASSPHRASE`], trusted
    /// like [`TestSshd::key`].
    pub encrypted_key: PathBuf,
    /// A known_hosts file holding this server's key for `[127.0.0.1]:PORT`.
    pub known_hosts: PathBuf,
    /// The server's public host key line (`ssh-ed25519 AAAA...`).
    pub host_key_pub: String,
    /// The server's host key file (private; `.pub` next to it), the one
    /// known_hosts holds.
    pub host_key: PathBuf,
    /// Every host key file the server offers, `host_key` first.
    pub host_keys: Vec<PathBuf>,
    child: Child,
}

impl TestSshd {
    /// Starts an sshd with one ed25519 host key, waits until its port
    /// accepts connections, and returns it.
    pub fn start() -> TestSshd {
        TestSshd::start_with_host_keys(&["ed25519"])
    }

    /// Starts an sshd offering host keys of these `ssh-keygen -t` types;
    /// known_hosts holds only the first.
    pub fn start_with_host_keys(types: &[&str]) -> TestSshd {
        TestSshd::start_with(types, "")
    }

    /// Starts an sshd with one ed25519 host key and `extra` appended to its
    /// sshd_config (e.g. `"MaxAuthTries 1\n"`); sshd uses the first value of
    /// a keyword, so `extra` cannot override the harness's own settings,
    /// except `LogLevel` (VERBOSE unless `extra` has one).
    pub fn start_with_config(extra: &str) -> TestSshd {
        TestSshd::start_with(&["ed25519"], extra)
    }

    /// Starts an sshd offering host keys of these `ssh-keygen -t` types,
    /// with `extra` appended to its sshd_config.
    pub fn start_with(types: &[&str], extra: &str) -> TestSshd {
        require_root_and_packages();
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("mailhaul-sshd.")
            .tempdir()
            .expect("tempdir");
        // sshd reads authorized_keys as the target user: let users traverse.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let d = dir.path();
        let host_keys: Vec<PathBuf> = types
            .iter()
            .map(|t| {
                let path = d.join(format!("host_{t}"));
                keygen_type(&path, t, "");
                path
            })
            .collect();
        let host_key = host_keys
            .first()
            .expect("at least one host key type")
            .clone();
        let key = d.join("id_ed25519");
        let encrypted_key = d.join("id_ed25519_encrypted");
        keygen(&key, "");
        keygen(&encrypted_key, PASSPHRASE);
        let auth_dir = d.join("authorized_keys");
        std::fs::create_dir(&auth_dir).expect("mkdir authorized_keys");
        std::fs::set_permissions(&auth_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod authorized_keys");
        let host_key_pub = public_key(&host_key);

        let log_level = if extra.lines().any(|l| l.starts_with("LogLevel ")) {
            ""
        } else {
            "LogLevel VERBOSE\n"
        };
        let log_path = d.join("sshd.log");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1\n\
                     Port {port}\n\
                     {host_key_lines}\
                     PidFile {pid}\n\
                     AuthorizedKeysFile {auth}/%u\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     PermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     {log_level}\
                     Subsystem sftp /usr/lib/openssh/sftp-server\n\
                     {extra}",
                    host_key_lines = host_keys
                        .iter()
                        .map(|k| format!("HostKey {}\n", k.display()))
                        .collect::<String>(),
                    pid = d.join("sshd.pid").display(),
                    auth = auth_dir.display(),
                ),
            )
            .expect("write sshd_config");
            let log = std::fs::File::create(&log_path).expect("create sshd.log");
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn /usr/sbin/sshd");
            if wait_until_listening(&mut child, port) {
                let known_hosts = d.join("known_hosts");
                std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_key_pub}\n"))
                    .expect("write known_hosts");
                let sshd = TestSshd {
                    dir,
                    port,
                    key,
                    encrypted_key,
                    known_hosts,
                    host_key_pub,
                    host_key,
                    host_keys,
                    child,
                };
                sshd.authorize("root");
                return sshd;
            }
            // Lost the race for the port, or sshd refused to start: retry.
            proc::kill_tree(child.id() as i32);
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("sshd did not start; last log:\n{last_log}");
    }

    /// Trusts [`TestSshd::key`] and [`TestSshd::encrypted_key`] for `user`.
    pub fn authorize(&self, user: &str) {
        let keys = format!(
            "{}\n{}\n",
            std::fs::read_to_string(pub_path(&self.key)).expect("read key.pub"),
            std::fs::read_to_string(pub_path(&self.encrypted_key)).expect("read key.pub"),
        );
        let path = self.dir.path().join("authorized_keys").join(user);
        std::fs::write(&path, keys).expect("write authorized_keys");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod authorized_keys");
    }

    /// The PID of the listening sshd.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What sshd logged so far (handy in assertion messages).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("sshd.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// A `ssh` command (the real OpenSSH client) logging in as `user` with
    /// [`TestSshd::key`], trusting only [`TestSshd::known_hosts`], never
    /// prompting; append the remote command with `.arg(..)`.
    pub fn ssh_command(&self, user: &str) -> Command {
        let mut cmd = Command::new("/usr/bin/ssh");
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(&self.key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg(format!("{user}@127.0.0.1"));
        cmd
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        proc::kill_tree(self.child.id() as i32);
        let _ = self.child.wait();
    }
}

/// Polls `port` until it accepts (true), or `child` exits or 10 s pass (false).
fn wait_until_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Creates an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path, passphrase: &str) {
    keygen_type(path, "ed25519", passphrase);
}

/// Creates a key pair of an `ssh-keygen -t` type at `path` (and `path.pub`).
pub fn keygen_type(path: &Path, key_type: &str, passphrase: &str) {
    run(Command::new("/usr/bin/ssh-keygen")
        .args([
            "-q",
            "-t",
            key_type,
            "-N",
            passphrase,
            "-C",
            "mailhaul-test",
            "-f",
        ])
        .arg(path));
}

/// The `.pub` file next to a private key.
pub fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// `type base64` of the public key next to `key`, without the comment.
pub fn public_key(key: &Path) -> String {
    let text = std::fs::read_to_string(pub_path(key)).expect("read .pub");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
