//! What can go wrong while reaching a server over SSH, each error saying what
//! to do about it, and the class of failure it is (`engine::failure::Failure`).

use std::path::PathBuf;

use crate::engine::failure::Failure;

/// An SSH-layer failure.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// `~/.ssh/config` could not be read or has a bad value.
    #[error("{path}:{line}: {message}")]
    SshConfig {
        /// The ssh config file.
        path: PathBuf,
        /// 1-based line (0 when the file as a whole could not be read).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The host name did not resolve or the TCP connection failed.
    #[error(
        "cannot connect to {host} port {port}: {source}; check the host name and port, \
         and that the server runs sshd"
    )]
    Connect {
        /// Host name as connected to.
        host: String,
        /// TCP port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// The SSH protocol handshake failed (no common algorithm, not an SSH
    /// server, connection dropped).
    #[error("SSH handshake with {host} port {port} failed: {source}")]
    Handshake {
        /// Host name.
        host: String,
        /// TCP port.
        port: u16,
        /// libssh2's account of it.
        source: ssh2::Error,
    },
    /// known_hosts has no key for the host and the policy (or the user) refused it.
    #[error(
        "the host key of {host} port {port} is not known ({key_type} {fingerprint}); \
         check the fingerprint with the server's administrator, then either record it \
         by connecting once with `ssh -o UserKnownHostsFile={known_hosts} -p {port} {host}`, \
         or set `known_hosts = \"accept-new\"` for this account"
    )]
    HostKeyUnknown {
        /// Host name.
        host: String,
        /// TCP port.
        port: u16,
        /// The server key's type (`ssh-ed25519`, ...).
        key_type: String,
        /// OpenSSH-style `SHA256:...` fingerprint of the server's key.
        fingerprint: String,
        /// The known_hosts file that was searched.
        known_hosts: PathBuf,
    },
    /// The server presented a different key than known_hosts holds.
    #[error(transparent)]
    HostKeyChanged(Box<ChangedHostKey>),
    /// The server's key is marked `@revoked` in known_hosts.
    #[error(
        "the host key of {host} port {port} ({fingerprint}) is marked @revoked in \
         {known_hosts} line {line}; refusing to connect. Ask the server's administrator for \
         its new key"
    )]
    HostKeyRevoked {
        /// Host name.
        host: String,
        /// TCP port.
        port: u16,
        /// Fingerprint of the revoked key.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// 1-based line of the `@revoked` entry.
        line: usize,
    },
    /// The known_hosts file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    KnownHostsFile {
        /// `read` or `write to`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Every authentication method was tried and refused.
    #[error(
        "the server refused every key for {user}@{host}: tried {tried}. Check that the \
         public key is in ~{user}/.ssh/authorized_keys on the server, or set \
         `identity_file` (or `user`) for this account"
    )]
    AuthRefused {
        /// Login name.
        user: String,
        /// Host name.
        host: String,
        /// What was tried, in order (`agent (2 keys)`, key paths, ...).
        tried: String,
        /// Whether the server hung up instead of answering: sshd's
        /// MaxAuthTries, or a link that broke at that moment.
        hung_up: bool,
    },
    /// A private key file could not be read or is not a key.
    #[error("cannot use private key {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key is encrypted and the passphrase given does not open it.
    #[error(
        "wrong passphrase for {path}: the key could not be decrypted (a \
         `passphrase_command` must print exactly the passphrase, one line break allowed)"
    )]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// The key is encrypted and no passphrase could be obtained.
    #[error(
        "{path} is encrypted and no passphrase is available: load it into ssh-agent \
         (`ssh-add {path}`) or set `passphrase_command` for this account"
    )]
    NoPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// `passphrase_command` could not be run or failed.
    #[error("passphrase_command {command:?} failed: {reason}")]
    PassphraseCommand {
        /// The command (argv).
        command: Vec<String>,
        /// Why.
        reason: String,
    },
    /// The ssh-agent could not be used.
    #[error("ssh-agent at {socket}: {source}")]
    Agent {
        /// The agent's socket.
        socket: PathBuf,
        /// libssh2's account of it.
        source: ssh2::Error,
    },
    /// A channel operation failed on an established session.
    #[error("SSH {action} on {host} failed: {source}")]
    Channel {
        /// What was being done (`opening a channel`, `exec`, ...).
        action: &'static str,
        /// Host name.
        host: String,
        /// libssh2's account of it.
        source: ssh2::Error,
    },
    /// Reading or writing a channel failed (connection dropped, timed out).
    #[error("SSH connection to {host} failed while {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Host name.
        host: String,
        /// Why.
        source: std::io::Error,
    },
    /// An argument for a remote script contains a NUL byte, which no remote
    /// shell variable can hold.
    #[error("argument {index} of a remote script contains a NUL byte")]
    NulInArgument {
        /// 0-based index of the argument.
        index: usize,
    },
}

/// Details of a changed host key (boxed in [`SshError::HostKeyChanged`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "HOST KEY CHANGED for {host} port {port}: known_hosts expects {expected_type} {expected} \
     ({known_hosts} line {line}) but the server sent {key_type} {got}. This can be a \
     man-in-the-middle attack, or the server was reinstalled. Only if you verified the \
     new key: remove line {line} of {known_hosts} (`ssh-keygen -R '{lookup}' -f \
     {known_hosts}`) and connect again"
)]
pub struct ChangedHostKey {
    /// Host name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The name known_hosts files the host under (`host` or `[host]:port`).
    pub lookup: String,
    /// The type of the key the server sent.
    pub key_type: String,
    /// The type of the key known_hosts holds (another type when the host is
    /// known only by keys of other types).
    pub expected_type: String,
    /// Fingerprint of the key in known_hosts.
    pub expected: String,
    /// Fingerprint of the key the server sent.
    pub got: String,
    /// The known_hosts file.
    pub known_hosts: PathBuf,
    /// 1-based line of the entry that did not match.
    pub line: usize,
}

impl SshError {
    /// The class of this failure.
    pub fn failure(&self) -> Failure {
        match self {
            SshError::SshConfig { .. } => Failure::Config,
            SshError::HostKeyUnknown { .. }
            | SshError::HostKeyChanged(_)
            | SshError::HostKeyRevoked { .. } => Failure::HostKey,
            SshError::AuthRefused { .. }
            | SshError::KeyFile { .. }
            | SshError::WrongPassphrase { .. }
            | SshError::NoPassphrase { .. }
            | SshError::PassphraseCommand { .. }
            | SshError::Agent { .. } => Failure::Auth,
            SshError::Connect { .. }
            | SshError::Handshake { .. }
            | SshError::Channel { .. }
            | SshError::Io { .. } => Failure::Transfer,
            SshError::KnownHostsFile { .. } | SshError::NulInArgument { .. } => Failure::Local,
        }
    }
}
