//! Where and as whom to connect: an `Account` resolved against
//! `~/.ssh/config`, the environment and the defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ssh_config::SshConfig;
use super::SshError;
use crate::engine::account::{expand_tilde, Account, HostKeyPolicy};

/// Everything `connect` needs to reach and log in to one server.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or address to connect to (an alias's `HostName`).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Private key files to try after the agent, in order.
    pub identity_files: Vec<PathBuf>,
    /// Whether the key file was named by the account's `identity_file` (then
    /// a missing file is an error); missing `~/.ssh/config` `IdentityFile`s
    /// and `~/.ssh/id_*` defaults are skipped, as OpenSSH does.
    pub identity_files_explicit: bool,
    /// ssh-agent socket to try first; `None` skips the agent.
    pub agent_socket: Option<PathBuf>,
    /// Command (argv) printing the passphrase of an encrypted key.
    pub passphrase_command: Option<Vec<String>>,
    /// The user's known_hosts file: checked, and appended to under
    /// `accept-new`.
    pub known_hosts_file: PathBuf,
    /// System-wide known_hosts files, checked too but never written
    /// (OpenSSH's `GlobalKnownHostsFile`).
    pub system_known_hosts_files: Vec<PathBuf>,
    /// What to do with a host known_hosts has no key for.
    pub host_key_policy: HostKeyPolicy,
    /// Limit for the TCP connect and for each step of the handshake.
    pub connect_timeout: Duration,
}

/// OpenSSH's default `GlobalKnownHostsFile`s, maintained by administrators.
pub const SYSTEM_KNOWN_HOSTS_FILES: [&str; 2] =
    ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// Key files tried, in this order, when neither the account nor
/// `~/.ssh/config` names one.
pub const DEFAULT_IDENTITY_FILES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

impl Target {
    /// Resolves `account`: its own fields win, then the `~/.ssh/config`
    /// entry for its `host` alias, then the defaults (local user name, port
    /// 22, `~/.ssh/id_*`, `~/.ssh/known_hosts`, `$SSH_AUTH_SOCK`). The
    /// alias's `UserKnownHostsFile` (its first file) is used when the account
    /// names none.
    pub fn resolve(account: &Account, ssh_config: &SshConfig) -> Target {
        let alias = ssh_config.resolve(&account.host);
        let host = alias.hostname.unwrap_or_else(|| account.host.clone());
        let user = account
            .user
            .clone()
            .or(alias.user)
            .unwrap_or_else(local_user_name);
        let port = account.port.or(alias.port).unwrap_or(22);
        let home = home_dir();
        let ssh_dir = home.join(".ssh");
        let (identity_files, identity_files_explicit) = match &account.identity_file {
            Some(path) => (vec![expand_tilde(path)], true),
            None if !alias.identity_files.is_empty() => (
                alias
                    .identity_files
                    .iter()
                    .map(|f| expand_identity_path(f, &home, &host, &user))
                    .collect(),
                false,
            ),
            None => (
                DEFAULT_IDENTITY_FILES
                    .iter()
                    .map(|f| ssh_dir.join(f))
                    .collect(),
                false,
            ),
        };
        let known_hosts_file = match (&account.known_hosts_file, &alias.user_known_hosts_file) {
            (Some(path), _) => expand_tilde(path),
            (None, Some(file)) => expand_identity_path(file, &home, &host, &user),
            (None, None) => ssh_dir.join("known_hosts"),
        };
        let agent_socket = if account.use_agent {
            std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        } else {
            None
        };
        Target {
            host,
            port,
            user,
            identity_files,
            identity_files_explicit,
            agent_socket,
            passphrase_command: account.passphrase_command.clone(),
            known_hosts_file,
            system_known_hosts_files: SYSTEM_KNOWN_HOSTS_FILES.iter().map(PathBuf::from).collect(),
            host_key_policy: account.known_hosts,
            connect_timeout: Duration::from_secs(15),
        }
    }

    /// Loads `~/.ssh/config` (if any) and resolves `account` against it.
    pub fn resolve_with_user_config(account: &Account) -> Result<Target, SshError> {
        let ssh_config = match SshConfig::default_path() {
            Some(path) => SshConfig::load(&path)?,
            None => SshConfig::default(),
        };
        Ok(Target::resolve(account, &ssh_config))
    }
}

/// The home directory (`$HOME`), or `/` if there is none.
fn home_dir() -> PathBuf {
    directories::BaseDirs::new()
        .map(|b| b.home_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The local login name: `$USER`, `$LOGNAME`, else the passwd entry.
fn local_user_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Some(name) = std::env::var(var).ok().filter(|n| !n.is_empty()) {
            return name;
        }
    }
    // SAFETY: getpwuid returns a pointer into static storage or NULL; the
    // name is copied out at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    "root".to_string()
}

/// Expands an `IdentityFile` or `UserKnownHostsFile` value: `~`, `%d` (home), `%h` (host), `%r`
/// (remote user), `%u` (local user), `%%`.
fn expand_identity_path(value: &str, home: &Path, host: &str, user: &str) -> PathBuf {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&home.to_string_lossy()),
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(user),
            Some('u') => out.push_str(&local_user_name()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    match out.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::account::first_account as account;

    #[test]
    fn alias_fills_what_the_account_leaves_open() {
        let ssh = SshConfig::parse(
            "Host mail\n HostName mx.example.org\n User bob\n Port 2200\n IdentityFile %d/.ssh/k_%r\n UserKnownHostsFile ~/.ssh/kh_%h /other\n",
            Path::new("cfg"),
        )
        .unwrap();
        let t = Target::resolve(
            &account("[[account]]\nname = \"a\"\nhost = \"mail\"\n"),
            &ssh,
        );
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("mx.example.org", 2200, "bob")
        );
        assert!(!t.identity_files_explicit);
        assert_eq!(t.identity_files, vec![home_dir().join(".ssh/k_bob")]);
        assert_eq!(
            t.known_hosts_file,
            home_dir().join(".ssh/kh_mx.example.org")
        );

        let t = Target::resolve(
            &account("[[account]]\nname = \"a\"\nhost = \"mail\"\nuser = \"carol\"\nport = 22\nidentity_file = \"/k\"\n"),
            &ssh,
        );
        assert_eq!((t.port, t.user.as_str()), (22, "carol"));
        assert_eq!(t.identity_files, vec![PathBuf::from("/k")]);
        assert!(t.identity_files_explicit);
    }

    #[test]
    fn defaults_without_alias() {
        let t = Target::resolve(
            &account("[[account]]\nname = \"a\"\nhost = \"mx\"\nuse_agent = false\n"),
            &SshConfig::default(),
        );
        assert_eq!((t.host.as_str(), t.port), ("mx", 22));
        assert!(!t.identity_files_explicit);
        assert_eq!(t.identity_files.len(), DEFAULT_IDENTITY_FILES.len());
        assert_eq!(t.agent_socket, None);
        assert!(t.known_hosts_file.ends_with(".ssh/known_hosts"));
        assert_eq!(
            t.system_known_hosts_files[0],
            Path::new("/etc/ssh/ssh_known_hosts")
        );
        assert_eq!(t.host_key_policy, HostKeyPolicy::Strict);
    }
}
