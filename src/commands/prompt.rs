//! Questions a headless command asks the person at the terminal, as `ssh`
//! does: whether to trust an unknown host key (showing its SHA256
//! fingerprint) and an encrypted key's passphrase (read without echo). Asked
//! on `/dev/tty`, so they work while stdout is redirected; under cron there is
//! no terminal and every question is refused, as with `NoPrompts`.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::engine::ssh::{HostKeyDecision, NoPrompts, Prompter, UnknownHost};

/// Asks on the controlling terminal; one question at a time, since parallel
/// fetch workers share it.
#[derive(Debug, Default)]
pub struct TerminalPrompter {
    one_at_a_time: Mutex<()>,
}

impl TerminalPrompter {
    /// A terminal prompter when stdin and stderr are terminals, else one
    /// that refuses every question.
    pub fn if_interactive() -> Arc<dyn Prompter + Send + Sync> {
        if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            Arc::new(TerminalPrompter::default())
        } else {
            Arc::new(NoPrompts)
        }
    }
}

/// The question OpenSSH asks, with the same facts in the same words.
pub fn unknown_host_question(host: &UnknownHost) -> String {
    let name = if host.port == 22 {
        host.host.clone()
    } else {
        format!("[{}]:{}", host.host, host.port)
    };
    format!(
        "The authenticity of host '{name}' can't be established.\n\
         {} key fingerprint is {}.\n\
         Are you sure you want to continue connecting (yes/no)? ",
        host.key_type, host.fingerprint
    )
}

impl Prompter for TerminalPrompter {
    fn unknown_host(&self, host: &UnknownHost) -> HostKeyDecision {
        let _turn = self.one_at_a_time.lock();
        let Ok(mut tty) = File::options().read(true).write(true).open("/dev/tty") else {
            return HostKeyDecision::Refuse;
        };
        if tty
            .write_all(unknown_host_question(host).as_bytes())
            .is_err()
        {
            return HostKeyDecision::Refuse;
        }
        let mut answer = String::new();
        if BufReader::new(&tty).read_line(&mut answer).is_err() {
            return HostKeyDecision::Refuse;
        }
        if answer.trim().eq_ignore_ascii_case("yes") {
            HostKeyDecision::AcceptAndRecord
        } else {
            let _ = writeln!(tty, "Host key not accepted; nothing was fetched.");
            HostKeyDecision::Refuse
        }
    }

    fn passphrase(&self, key: &Path) -> Option<String> {
        let _turn = self.one_at_a_time.lock();
        rpassword::prompt_password(format!("Enter passphrase for key '{}': ", key.display()))
            .ok()
            .filter(|p| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_names_host_port_type_and_fingerprint_like_openssh() {
        let host = UnknownHost {
            host: "127.0.0.1".into(),
            port: 2222,
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
        };
        let q = unknown_host_question(&host);
        assert!(
            q.starts_with("The authenticity of host '[127.0.0.1]:2222'"),
            "{q}"
        );
        assert!(
            q.contains("ssh-ed25519 key fingerprint is SHA256:abc."),
            "{q}"
        );
        let q22 = unknown_host_question(&UnknownHost { port: 22, ..host });
        assert!(q22.contains("host '127.0.0.1'"), "{q22}");
    }
}
