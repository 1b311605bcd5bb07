//! Headless commands on a real terminal (tmux) ask what `ssh` would ask: an
//! unknown host key is shown with its SHA256 fingerprint and recorded only
//! after "yes"; an encrypted key's passphrase is read from the terminal.

mod common;
mod fetch_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{sshd::PASSPHRASE, TestSshd};
use fetch_support::Client;

/// One tmux session running a command; killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(client: &Client, args: &str) -> Tmux {
        common::require_tool("tmux", "tmux");
        let name = common::unique_name("mhp");
        let bin = env!("CARGO_BIN_EXE_mailhaul");
        let home = client.dir.path();
        let line = format!(
            "env HOME={home:?} XDG_DATA_HOME={data:?} XDG_CONFIG_HOME={cfg:?} {bin:?} \
             --config {config:?} {args}; echo EXIT=$?; sleep 60",
            data = home.join("data"),
            cfg = home.join("config"),
            config = client.config,
        );
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "120",
                "-y",
                "30",
                &line,
            ])
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux could not start");
        Tmux { name }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-J", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited 30 s for {text:?}; the screen shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_line(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", text])
            .status()
            .unwrap();
        assert!(status.success());
        Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "Enter"])
            .status()
            .unwrap();
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// `ssh-keygen -lf`'s fingerprint of a public key file.
fn fingerprint(public_key_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key_file)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn an_unknown_host_is_asked_about_with_its_fingerprint_and_recorded_after_yes() {
    common::require_root_and_packages();
    let sshd = TestSshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    let client = Client::with_known_hosts(&sshd, "root", &known_hosts, "");

    let refused = Tmux::start(&client, "check");
    let screen = refused.wait_for("(yes/no)?");
    let want = fingerprint(&common::sshd::pub_path(&sshd.host_key));
    assert!(screen.contains(&want), "no {want} on:\n{screen}");
    refused.type_line("no");
    refused.wait_for("EXIT=4");
    assert!(!known_hosts.exists(), "a refused key was recorded");

    let accepted = Tmux::start(&client, "check");
    accepted.wait_for("(yes/no)?");
    accepted.type_line("yes");
    let screen = accepted.wait_for("EXIT=");
    assert!(screen.contains("EXIT=0"), "{screen}");
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    let key_blob = sshd.host_key_pub.split_whitespace().nth(1).unwrap();
    assert!(recorded.contains(key_blob), "{recorded}");
}

#[test]
fn an_encrypted_key_without_passphrase_command_asks_on_the_terminal() {
    common::require_root_and_packages();
    let sshd = TestSshd::start();
    let client = Client::new(&sshd, "root", "");
    let config = std::fs::read_to_string(&client.config).unwrap();
    let key = format!("identity_file = {:?}", sshd.key);
    let encrypted = format!("identity_file = {:?}", sshd.encrypted_key);
    std::fs::write(&client.config, config.replace(&key, &encrypted)).unwrap();

    let session = Tmux::start(&client, "check");
    session.wait_for("Enter passphrase for key");
    session.type_line(PASSPHRASE);
    let screen = session.wait_for("EXIT=");
    assert!(screen.contains("authenticated"), "{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        !screen.contains(PASSPHRASE),
        "the passphrase was echoed:\n{screen}"
    );
}
