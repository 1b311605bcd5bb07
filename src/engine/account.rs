//! One mail server account as the engine fetches from it and forwards
//! through it: where the server is, how to log in, how the spool is claimed
//! and the download compressed, and the account's SMTP forward. The engine
//! owns these types; `config` deserialises `[[account]]` into them.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// How the spool is claimed on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimStrategy {
    /// Rename when the spool directory is writable, else copy-truncate.
    #[default]
    Auto,
    /// Dot-lock, then rename(2) the spool to a unique claim name.
    Rename,
    /// Lock with `dotlockfile`/`lockfile`, copy to the home, truncate.
    CopyTruncate,
}

/// How the download is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd if the server has it, else gzip, else SSH transport compression.
    #[default]
    Auto,
    /// Remote `zstd`.
    Zstd,
    /// Remote `gzip`.
    Gzip,
    /// SSH transport compression (zlib@openssh.com).
    Ssh,
    /// No compression at all.
    None,
}

/// The remote zstd's level: fixed, or adapted to the link by zstd itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZstdLevel {
    /// `zstd -N` (clamped to 1..=19).
    Fixed(i32),
    /// `zstd --adapt`: the level follows how fast the output drains (zstd
    /// 1.3.6 or newer; older servers get the default fixed level).
    Adapt,
}

impl<'de> Deserialize<'de> for ZstdLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelVisitor;
        impl serde::de::Visitor<'_> for LevelVisitor {
            type Value = ZstdLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a zstd level (1 to 19) or \"adapt\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ZstdLevel, E> {
                match i32::try_from(v) {
                    Ok(level @ 1..=19) => Ok(ZstdLevel::Fixed(level)),
                    _ => Err(E::custom(format!(
                        "zstd level {v} is out of range: use 1 to 19 or \"adapt\""
                    ))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ZstdLevel, E> {
                if v == "adapt" {
                    Ok(ZstdLevel::Adapt)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        deserializer.deserialize_any(LevelVisitor)
    }
}

/// How the outbox is delivered (`account.send`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendVia {
    /// The server's `sendmail`, fed over one exec channel, with the
    /// server-side ledger that makes it exactly once (`outbox::relay`).
    #[default]
    Sendmail,
    /// SMTP to the forward's target over a `direct-tcpip` channel of the
    /// account's session (`outbox::smtp`): for servers where the login may
    /// not run sendmail, or a submission server elsewhere.
    Smtp,
}

/// What to do with a host key that known_hosts does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts (the dashboard may still ask the user).
    #[default]
    Strict,
    /// Accept and record an unknown host's key; refuse a changed one.
    AcceptNew,
}

/// One mail server account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Short name, used on the command line and in the dashboard.
    pub name: String,
    /// Host name or a `~/.ssh/config` Host alias.
    pub host: String,
    /// Login name; default: the alias's `User`, else the local user.
    pub user: Option<String>,
    /// SSH port; default: the alias's `Port`, else 22.
    pub port: Option<u16>,
    /// Private key file; default: the alias's `IdentityFile`, else the agent
    /// and then `~/.ssh/id_ed25519`, `~/.ssh/id_rsa`.
    pub identity_file: Option<PathBuf>,
    /// Command (argv) that prints the key's passphrase on stdout.
    pub passphrase_command: Option<Vec<String>>,
    /// Use the ssh-agent (default true).
    #[serde(default = "yes")]
    pub use_agent: bool,
    /// Remote spool path; default `/var/mail/USER`, then `/var/spool/mail/USER`.
    pub spool: Option<String>,
    /// Your address on this server: `mailhaul send` picks the account whose
    /// address matches the sender (`@domain` matches a whole domain), and
    /// uses it as envelope sender when no `-f` is given.
    pub address: Option<String>,
    /// The server's sendmail command (a path) that `mailhaul send` hands
    /// messages to; default `/usr/sbin/sendmail`, `/usr/lib/sendmail`,
    /// `/usr/bin/sendmail`, else the login's PATH.
    pub sendmail: Option<String>,
    /// How `mailhaul send`'s outbox reaches the server: its `sendmail` over
    /// an exec channel (the default), or SMTP to `forward.target`.
    #[serde(default)]
    pub send: SendVia,
    /// Claim strategy.
    #[serde(default)]
    pub claim: ClaimStrategy,
    /// Compression method.
    #[serde(default)]
    pub compression: Compression,
    /// zstd level for the remote compressor, or `"adapt"`; default: see
    /// [`crate::engine::claim::choose_method`].
    pub zstd_level: Option<ZstdLevel>,
    /// Send small claims with a zstd dictionary made from this account's
    /// own filed mail (`engine::fetch::dictionary`); default true.
    #[serde(default = "yes")]
    pub dictionary: bool,
    /// Unknown-host policy.
    #[serde(default)]
    pub known_hosts: HostKeyPolicy,
    /// known_hosts file; default `~/.ssh/known_hosts`.
    pub known_hosts_file: Option<PathBuf>,
    /// Maildir root for this account; default `general.maildir`.
    pub maildir: Option<PathBuf>,
    /// Seconds to wait for a busy spool lock before giving up.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: u64,
    /// Age in seconds past which the spool's dot-lock is removed when its
    /// holder is not known to be alive (Postfix local(8)'s
    /// `stale_lock_time`); 0: never.
    #[serde(default = "default_stale_lock_time")]
    pub stale_lock_time: u64,
    /// Fetch automatically when the dashboard sees new mail.
    #[serde(default)]
    pub auto_fetch: bool,
    /// Command (argv, no shell) run after a fetch that filed messages, with
    /// the account and the counts in its environment (`engine::hook`).
    pub on_new_mail: Option<Spanned<Vec<String>>>,
    /// The SMTP forward for this account.
    #[serde(default)]
    pub forward: ForwardConfig,
}

/// SSH transport compression (zlib@openssh.com), and how what we send is
/// compressed. The server compresses what it sends its own way (OpenSSH: zlib
/// level 6); this chooses our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportCompression {
    /// Real LZ77 (zlib level 6, OpenSSH's ratio on bulk data) whose history
    /// is dropped before every packet except the next data packet of one
    /// connection's bulk stream: one connection's bytes never serve as
    /// dictionary for another's, nor for control messages, and small
    /// (interactive) packets never serve as dictionary at all. Needs the
    /// patched libssh2 in `vendor/libssh2-sys`.
    #[default]
    Zlib,
    /// Entropy coding only, no LZ77 (upstream libssh2's choice since 1.11.1,
    /// against compression side channels): nothing serves as dictionary, but
    /// mail shrinks only ~1.5x instead of ~4x.
    Huffman,
    /// No compression in either direction.
    Off,
}

/// The SMTP forward (`ssh -C -L`) of one account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Local listen address.
    pub listen: Spanned<String>,
    /// Target `host:port` as seen from the SSH server; default the mail host, port 25.
    pub target: Option<String>,
    /// Must be true to listen on anything but loopback.
    pub allow_non_loopback: bool,
    /// Serve connections of other local users too; by default (on Linux)
    /// only connections whose client socket belongs to this user are served.
    pub allow_other_users: bool,
    /// Transport compression of the forward's SSH session.
    pub compression: TransportCompression,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            listen: Spanned::new(0..0, "127.0.0.1:2525".to_string()),
            target: None,
            allow_non_loopback: false,
            allow_other_users: false,
            compression: TransportCompression::Zlib,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_lock_timeout() -> u64 {
    30
}

/// Postfix's `stale_lock_time` default: a dot-lock untouched this long is
/// left by a crashed program (an MDA appends a message in seconds).
fn default_stale_lock_time() -> u64 {
    500
}

/// Expands a leading `~/` to the home directory.
pub fn expand_tilde(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => directories::BaseDirs::new()
            .map(|b| b.home_dir().join(rest))
            .unwrap_or_else(|| p.to_path_buf()),
        Err(_) => p.to_path_buf(),
    }
}

/// The first `[[account]]` of a config text, read as `config` reads it (for
/// the engine's unit tests, which must not depend on `config`).
#[cfg(test)]
pub(crate) fn first_account(text: &str) -> Account {
    #[derive(Deserialize)]
    struct File {
        account: Vec<Account>,
    }
    let mut file = toml::from_str::<File>(text).expect("a valid [[account]]");
    file.account.remove(0)
}
