//! The server side of a fetch: the POSIX sh script that probes, claims,
//! sends and releases a spool (`assets/remote/claim.sh`), the hex-encoded
//! arguments it takes, the line records it answers with, and the choices
//! (claim strategy, compression) the client makes from a probe. The claim
//! takes the delivery agents' lock and holds it only for a server-local
//! rename or copy (lock-honoured, docs/design.md).
//!
//! Choosing lives here, in plain functions of the probe, so that `mailhaul
//! check`, `mailhaul fetch` and the dashboard give the same answer and the
//! same reason.

use std::sync::OnceLock;

use crate::engine::account::{ClaimStrategy, Compression, ZstdLevel};
use crate::engine::failure::Failure;
use crate::engine::ssh::{compact, unhex, RemoteScript};

/// The script as written, with its comments.
const SCRIPT_SOURCE: &str = include_str!("../../assets/remote/claim.sh");

/// The script as sent, run remotely as `sh -s -- COMMAND HEXARG...`:
/// `assets/remote/claim.sh` without comments and indentation (a quarter
/// smaller), cached on the server by its hash (see `engine::ssh`).
pub fn remote_script() -> &'static RemoteScript {
    static COMPACT: OnceLock<RemoteScript> = OnceLock::new();
    COMPACT.get_or_init(|| RemoteScript::new("claim", &compact(SCRIPT_SOURCE)))
}

/// The text of [`remote_script`].
#[cfg(test)]
fn script() -> &'static str {
    &remote_script().text
}

/// The zstd level used when `zstd_level` is not set: on the benchmark's
/// spool it sends 0.76x the bytes of the recipe's `scp -C` (level 3: 0.86x)
/// and compresses about 39 MB/s of raw mail on one core here, so it keeps
/// up with links of a few hundred Mbit/s (docs/bench-fetch.md).
pub const DEFAULT_ZSTD_LEVEL: i32 = 9;

/// The highest level `zstd_level = "adapt"` may climb to.
pub const ADAPT_MAX_LEVEL: i32 = 19;

/// Why the script refused or failed, as it reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScriptError {
    /// The class of failure.
    pub kind: ScriptErrorKind,
    /// The script's message (or a description of unreadable output).
    pub message: String,
}

/// The classes of failure the script reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The spool's dot-lock stayed busy for the whole bounded wait.
    LockBusy,
    /// The server lacks a tool or permission a safe claim needs.
    Unsupported,
    /// The claim to send or release is gone.
    Missing,
    /// The request was malformed (a bug on the client side).
    BadRequest,
    /// Anything else, including output that is not the protocol.
    Failed,
}

impl ScriptError {
    /// The class of this failure.
    pub fn failure(&self) -> Failure {
        match self.kind {
            ScriptErrorKind::LockBusy => Failure::LockBusy,
            ScriptErrorKind::Unsupported => Failure::ServerUnsupported,
            ScriptErrorKind::Missing | ScriptErrorKind::Failed => Failure::Transfer,
            ScriptErrorKind::BadRequest => Failure::Local,
        }
    }

    fn failed(message: impl Into<String>) -> ScriptError {
        ScriptError {
            kind: ScriptErrorKind::Failed,
            message: message.into(),
        }
    }
}

/// Text from the server made safe to print: control characters (which
/// could drive the terminal), backslashes and bytes that are not UTF-8 are
/// written as `\xNN` (`\u{NN}` for C1 controls), everything else as it is.
/// Every server-given name and message passes through here before it is
/// shown.
pub fn escape_server_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x80 && c.is_control() => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Splits a script reply into its records, checking the final `ok` line and
/// the exit status; `stderr` is quoted when the output is not the protocol.
/// Error messages and stderr are escaped ([`escape_server_text`]).
pub fn parse_reply(
    stdout: &[u8],
    stderr: &[u8],
    status: i32,
) -> Result<Vec<(String, String)>, ScriptError> {
    let text = String::from_utf8_lossy(stdout);
    let mut records = Vec::new();
    for line in text.lines() {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        if key == "error" {
            let (class, message) = rest.split_once(' ').unwrap_or((rest, ""));
            let message = escape_server_text(message.as_bytes());
            let kind = match class {
                "lock-busy" => ScriptErrorKind::LockBusy,
                "unsupported" => ScriptErrorKind::Unsupported,
                "missing" => ScriptErrorKind::Missing,
                "bad-request" => ScriptErrorKind::BadRequest,
                _ => ScriptErrorKind::Failed,
            };
            return Err(ScriptError {
                kind,
                message: message.to_string(),
            });
        }
        if key == "ok" {
            if status != 0 {
                return Err(ScriptError::failed(format!(
                    "server script said ok but exited with {status}"
                )));
            }
            return Ok(records);
        }
        records.push((key.to_string(), rest.to_string()));
    }
    let stderr = escape_server_text(stderr.trim_ascii());
    Err(ScriptError::failed(format!(
        "server script ended without a result (exit {status}){}",
        if stderr.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", stderr.trim())
        }
    )))
}

fn field_bytes(value: &str) -> Result<Vec<u8>, ScriptError> {
    unhex(value).ok_or_else(|| ScriptError::failed(format!("bad path in server reply: {value}")))
}

/// A hex field the client sends back to the server: must be UTF-8 (it is a
/// `String` everywhere on this side).
fn field_path(value: &str) -> Result<String, ScriptError> {
    String::from_utf8(field_bytes(value)?)
        .map_err(|_| ScriptError::failed(format!("bad path in server reply: {value}")))
}

/// A hex field that is only shown: escaped, never refused.
fn field_shown(value: &str) -> Result<String, ScriptError> {
    Ok(escape_server_text(&field_bytes(value)?))
}

/// Which helper programs the server has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    /// liblockfile's setgid `dotlockfile`.
    pub dotlockfile: bool,
    /// procmail's setgid `lockfile`.
    pub lockfile: bool,
    /// `zstd`.
    pub zstd: bool,
    /// `gzip`.
    pub gzip: bool,
    /// Some sha256 tool (`sha256sum`, `shasum`, `sha256`, `openssl`).
    pub sha256: bool,
    /// `head` and `cmp`, used to repair a claim cut short.
    pub head_cmp: bool,
}

/// Whether other users may create names in the spool's directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SharedDir {
    /// Not world-writable.
    #[default]
    No,
    /// World-writable and sticky (`1777`): others may create names but not
    /// remove or rename files they do not own.
    Sticky,
    /// World-writable without the sticky bit: anyone may delete or replace
    /// any file there, the spool included.
    Open,
}

/// What the `probe` command found on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// The login name.
    pub user: String,
    /// The login's home directory.
    pub home: String,
    /// The spool path in use.
    pub spool: String,
    /// Bytes in the spool; `None` when it does not exist (no mail).
    pub spool_size: Option<u64>,
    /// `From ` lines in the spool: its message count, as an mbox reader
    /// sees it; `None` when it does not exist or cannot be read.
    pub spool_messages: Option<u64>,
    /// The spool's directory is writable (rename is possible).
    pub spool_dir_writable: bool,
    /// The spool file is writable (copy-truncate can truncate it).
    pub spool_writable: bool,
    /// The spool is a symbolic link (renaming it would move the link).
    pub spool_symlink: bool,
    /// Whether every user may create names in the spool's directory.
    pub spool_dir_shared: SharedDir,
    /// Helper programs present.
    pub tools: Tools,
    /// `zstd` version, e.g. `1.5.4`.
    pub zstd_version: Option<String>,
    /// The key of these facts (a checksum of all but the spool's size and
    /// count): a claim step given it claims only while the facts still
    /// have it, else answers `resurvey` with the new ones.
    pub facts: String,
}

/// Parses the records of a `probe` reply.
pub fn parse_probe(records: &[(String, String)]) -> Result<Probe, ScriptError> {
    let mut p = Probe::default();
    for (key, value) in records {
        match key.as_str() {
            "user" => p.user = field_shown(value)?,
            "home" => p.home = field_shown(value)?,
            "spool" => p.spool = field_shown(value)?,
            "spool-symlink" => p.spool_symlink = value == "1",
            "spool-dir-shared" => {
                p.spool_dir_shared = match value.as_str() {
                    "sticky" => SharedDir::Sticky,
                    _ => SharedDir::Open,
                }
            }
            "spool-size" => p.spool_size = value.parse().ok(),
            "spool-messages" => p.spool_messages = value.parse().ok(),
            "spool-dir-writable" => p.spool_dir_writable = value == "1",
            "spool-writable" => p.spool_writable = value == "1",
            "zstd-version" => p.zstd_version = Some(value.clone()).filter(|v| !v.is_empty()),
            "facts" => p.facts = value.clone(),
            "tool" => {
                let (name, have) = value.split_once(' ').unwrap_or((value, "0"));
                let have = have == "1";
                match name {
                    "dotlockfile" => p.tools.dotlockfile = have,
                    "lockfile" => p.tools.lockfile = have,
                    "zstd" => p.tools.zstd = have,
                    "gzip" => p.tools.gzip = have,
                    "sha256" => p.tools.sha256 = have,
                    "head-cmp" => p.tools.head_cmp = have,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if p.spool.is_empty() {
        return Err(ScriptError::failed("probe reply names no spool"));
    }
    Ok(p)
}

/// A finished claim on the server: a file holding mail taken from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteClaim {
    /// Its path on the server.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lower-case hex, computed by the server.
    pub sha256: String,
}

impl RemoteClaim {
    /// The path as shown in messages ([`escape_server_text`]).
    pub fn shown(&self) -> String {
        escape_server_text(self.path.as_bytes())
    }

    /// The claim's unique id: the part of its file name the script made from
    /// time, pid and randomness. Stable, so it keys the journal and the
    /// delivered messages' names.
    pub fn id(&self) -> String {
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        let id = match name.split_once(".mailhaul-claim.") {
            Some((_, id)) => id,
            None => name
                .strip_suffix(".mbox")
                .and_then(|n| n.rsplit_once('.'))
                .map_or(name, |(_, id)| id),
        };
        id.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

impl RemoteClaim {
    /// The id of the mailhaul installation that made the claim (the `-o`
    /// part of its id, see [`crate::engine::journal::installation_id`]);
    /// `None` for claims made without one (by earlier versions).
    pub fn owner(&self) -> Option<String> {
        let id = self.id();
        let (_, owner) = id.rsplit_once("-o")?;
        (owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| owner.to_string())
    }

    /// Whether installation `me` may take this claim: its own, or one made
    /// without an owner.
    pub fn belongs_to(&self, me: &str) -> bool {
        self.owner().is_none_or(|owner| owner == me)
    }
}

/// The result of `recover` or `claim`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimReply {
    /// The claim this run made, if the spool had mail.
    pub claimed: Option<String>,
    /// Every finished claim of this spool now on the server (including the new one).
    pub claims: Vec<RemoteClaim>,
    /// Notes on claims cut short earlier and finished or dropped under the lock.
    pub repaired: Vec<String>,
    /// Files named like claims that are not (another user's file, a
    /// symbolic link, a name that is not UTF-8), escaped; left alone.
    pub ignored: Vec<String>,
    /// Stale dot-locks removed before the claim (path, age, holder).
    pub stale_locks: Vec<String>,
}

/// Parses the records of a `recover` or `claim` reply.
pub fn parse_claims(records: &[(String, String)]) -> Result<ClaimReply, ScriptError> {
    let mut reply = ClaimReply::default();
    for (key, value) in records {
        match key.as_str() {
            "claimed" => reply.claimed = Some(field_shown(value)?),
            "repaired" => {
                let (path, what) = value.split_once(' ').unwrap_or((value, ""));
                reply
                    .repaired
                    .push(format!("{} {what}", field_shown(path)?));
            }
            "ignored" => reply.ignored.push(field_shown(value)?),
            "stale-lock" => {
                let mut it = value.split(' ');
                let (path, age, holder) = (
                    field_shown(it.next().unwrap_or(""))?,
                    it.next().unwrap_or("?"),
                    it.next().unwrap_or("?"),
                );
                let holder = match holder.strip_prefix("pid-") {
                    Some(pid) => format!("its holder, pid {pid}, is not running"),
                    None if holder == "none" => "it names no holder".into(),
                    None => "it names no process id".into(),
                };
                reply
                    .stale_locks
                    .push(format!("{path}: {age} s old, {holder}"));
            }
            "claim" => {
                let mut it = value.split(' ');
                let (Some(path), Some(size), Some(sha)) = (it.next(), it.next(), it.next()) else {
                    return Err(ScriptError::failed(format!("bad claim record: {value}")));
                };
                let size = size
                    .parse()
                    .map_err(|_| ScriptError::failed(format!("bad claim size: {value}")))?;
                if sha.len() != 64 || unhex(sha).is_none() {
                    return Err(ScriptError::failed(format!("bad claim sha256: {value}")));
                }
                // A name this side cannot send back is left, not fatal.
                let Ok(path) = field_path(path) else {
                    reply
                        .ignored
                        .push(format!("{} (not UTF-8)", field_shown(path)?));
                    continue;
                };
                reply.claims.push(RemoteClaim {
                    path,
                    size,
                    sha256: sha.to_ascii_lowercase(),
                });
            }
            _ => {}
        }
    }
    Ok(reply)
}

/// How the spool is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Dot-lock, link the spool to a claim name in its directory, unlink the spool.
    Rename,
    /// Lock with dotlockfile/lockfile, copy to the home, truncate the spool.
    CopyTruncate,
}

impl Strategy {
    /// The script's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rename => "rename",
            Strategy::CopyTruncate => "copy-truncate",
        }
    }
}

/// A strategy with the reason it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyChoice {
    /// The strategy.
    pub strategy: Strategy,
    /// Why, in a sentence.
    pub reason: String,
}

/// What the server lacks for a safe claim, or for the configured
/// compression, and what to install or configure instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

impl From<&str> for Unsupported {
    fn from(why: &str) -> Unsupported {
        Unsupported(why.to_string())
    }
}

/// Picks the claim strategy from a probe, or says what the server lacks.
/// Nothing unsafe is ever chosen as a fallback.
pub fn choose_strategy(
    probe: &Probe,
    wanted: ClaimStrategy,
) -> Result<StrategyChoice, Unsupported> {
    let dir = probe
        .spool
        .rsplit_once('/')
        .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
    if !probe.tools.sha256 {
        return Err("the server has no sha256 tool; install coreutils".into());
    }
    if !probe.tools.head_cmp {
        return Err("the server lacks head or cmp; install coreutils and diffutils".into());
    }
    if probe.spool_dir_shared == SharedDir::Open {
        return Err(Unsupported(format!(
            "{dir} is writable by every user and not sticky: anyone can delete or replace the \
             spool and any claim there, so nothing can be claimed safely; ask the administrator \
             for `chmod +t {dir}`"
        )));
    }
    let rename = || StrategyChoice {
        strategy: Strategy::Rename,
        reason: format!(
            "{dir} is writable by {}, so the spool is renamed{}",
            probe.user,
            if probe.spool_dir_shared == SharedDir::Sticky {
                format!(
                    " (a shared sticky directory: only files of {} are taken as claims)",
                    probe.user
                )
            } else {
                String::new()
            }
        ),
    };
    let forced = wanted == ClaimStrategy::CopyTruncate;
    let copy = || -> Result<StrategyChoice, Unsupported> {
        if !probe.tools.dotlockfile && !probe.tools.lockfile {
            return Err(Unsupported(format!(
                "{dir} is not writable by {}, and copy-truncate needs dotlockfile or lockfile \
                 to take the spool's lock; install liblockfile-bin (or procmail) on the server",
                probe.user
            )));
        }
        if !probe.spool_writable {
            return Err(Unsupported(format!(
                "{} is not writable by {}, so it cannot be truncated",
                probe.spool, probe.user
            )));
        }
        let lock = if probe.tools.dotlockfile {
            "dotlockfile's lock"
        } else {
            "lockfile's lock"
        };
        Ok(StrategyChoice {
            strategy: Strategy::CopyTruncate,
            reason: format!(
                "{why}: the spool is copied to ~/.mailhaul/claims and truncated under {lock}",
                why = if forced {
                    "configured (claim = \"copy-truncate\")".to_string()
                } else if probe.spool_symlink {
                    format!(
                        "{} is a symbolic link (renaming it would move the link, not the mail)",
                        probe.spool
                    )
                } else {
                    format!("{dir} is not writable by {}", probe.user)
                },
            ),
        })
    };
    if probe.spool_symlink && wanted == ClaimStrategy::Rename {
        return Err(Unsupported(format!(
            "{} is a symbolic link: renaming it would move the link and leave the mail where \
             it points; use claim = \"copy-truncate\" or \"auto\" (copied and truncated through \
             the link, under the lock its name gets)",
            probe.spool
        )));
    }
    match wanted {
        ClaimStrategy::Auto if probe.spool_dir_writable && !probe.spool_symlink => Ok(rename()),
        ClaimStrategy::Auto | ClaimStrategy::CopyTruncate => copy(),
        ClaimStrategy::Rename if probe.spool_dir_writable => Ok(rename()),
        ClaimStrategy::Rename => Err(Unsupported(format!(
            "claim = \"rename\" needs a writable spool directory, but {dir} is not writable by {}; \
             use claim = \"copy-truncate\" or \"auto\"",
            probe.user
        ))),
    }
}

/// How the claim is compressed on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Remote `zstd -LEVEL`, decoded locally.
    Zstd(i32),
    /// Remote `zstd --adapt=min=LEVEL,max=19`: the level rises while the
    /// link is the bottleneck (it changes between zstd jobs of a few MB, so
    /// only on big spools).
    ZstdAdapt(i32),
    /// Remote `gzip -LEVEL`, decoded locally.
    Gzip(u32),
    /// Plain bytes over SSH transport compression (zlib@openssh.com).
    SshTransport,
    /// Plain bytes, no compression.
    Plain,
}

impl Method {
    /// The label shown and kept in the history (`zstd -3`, `gzip -6`, `ssh`, `none`).
    pub fn label(self) -> String {
        match self {
            Method::Zstd(l) if l >= 19 => format!("zstd -{l} --long"),
            Method::Zstd(l) => format!("zstd -{l}"),
            Method::ZstdAdapt(l) => format!("zstd --adapt={l}..{ADAPT_MAX_LEVEL}"),
            Method::Gzip(l) => format!("gzip -{l}"),
            Method::SshTransport => "ssh".into(),
            Method::Plain => "none".into(),
        }
    }

    /// The script's `send` arguments: method and level.
    pub fn send_args(self) -> (&'static str, String) {
        match self {
            Method::Zstd(l) => ("zstd", l.to_string()),
            Method::ZstdAdapt(l) => ("zstd-adapt", l.to_string()),
            Method::Gzip(l) => ("gzip", l.to_string()),
            Method::SshTransport | Method::Plain => ("cat", "0".into()),
        }
    }

    /// True when the SSH session must negotiate transport compression.
    pub fn needs_transport_compression(self) -> bool {
        self == Method::SshTransport
    }
}

/// A compression method with the reason it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodChoice {
    /// The method.
    pub method: Method,
    /// Why, in a sentence.
    pub reason: String,
}

/// Whether a `zstd -V` version (`1.5.4`) knows `--adapt` (1.3.6 and newer).
pub fn zstd_can_adapt(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let triple = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    triple >= (1, 3, 6)
}

/// Picks the compression: `auto` prefers remote zstd, then gzip, then SSH
/// transport compression; never two at once. zstd runs at `zstd_level`,
/// else at [`DEFAULT_ZSTD_LEVEL`]; `"adapt"` starts there and needs zstd
/// 1.3.6 (an older one gets the fixed default level).
pub fn choose_method(
    probe: &Probe,
    wanted: Compression,
    zstd_level: Option<ZstdLevel>,
) -> Result<MethodChoice, Unsupported> {
    let version = probe.zstd_version.as_deref().unwrap_or("");
    let zstd = || {
        let (method, note) = match zstd_level {
            Some(ZstdLevel::Fixed(level)) => (Method::Zstd(level.clamp(1, 19)), ""),
            None => (Method::Zstd(DEFAULT_ZSTD_LEVEL), ""),
            Some(ZstdLevel::Adapt) if zstd_can_adapt(version) => {
                (Method::ZstdAdapt(DEFAULT_ZSTD_LEVEL), "")
            }
            Some(ZstdLevel::Adapt) => (
                Method::Zstd(DEFAULT_ZSTD_LEVEL),
                ", too old for --adapt (needs 1.3.6)",
            ),
        };
        MethodChoice {
            method,
            reason: format!("the server has zstd {version}")
                .trim_end()
                .to_string()
                + note,
        }
    };
    let gzip = |why: &str| MethodChoice {
        method: Method::Gzip(6),
        reason: format!("the server has gzip{why}"),
    };
    match wanted {
        Compression::Auto if probe.tools.zstd => Ok(zstd()),
        Compression::Auto if probe.tools.gzip => Ok(gzip(" but no zstd")),
        Compression::Auto => Ok(MethodChoice {
            method: Method::SshTransport,
            reason: "the server has neither zstd nor gzip; SSH transport compression is used"
                .into(),
        }),
        Compression::Zstd if probe.tools.zstd => Ok(zstd()),
        Compression::Zstd => Err("compression = \"zstd\" but the server has no zstd; \
                                  install zstd there or use compression = \"auto\""
            .into()),
        Compression::Gzip if probe.tools.gzip => Ok(gzip("")),
        Compression::Gzip => Err("compression = \"gzip\" but the server has no gzip".into()),
        Compression::Ssh => Ok(MethodChoice {
            method: Method::SshTransport,
            reason: "configured: SSH transport compression".into(),
        }),
        Compression::None => Ok(MethodChoice {
            method: Method::Plain,
            reason: "configured: no compression".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ssh::hex;

    fn probe(dir_writable: bool) -> Probe {
        Probe {
            user: "ann".into(),
            home: "/home/ann".into(),
            spool: "/var/mail/ann".into(),
            spool_size: Some(10),
            spool_messages: Some(1),
            spool_dir_writable: dir_writable,
            spool_writable: true,
            spool_symlink: false,
            spool_dir_shared: SharedDir::No,
            tools: Tools {
                dotlockfile: true,
                lockfile: false,
                zstd: true,
                gzip: true,
                sha256: true,
                head_cmp: true,
            },
            zstd_version: Some("1.5.4".into()),
            facts: "1-2".into(),
        }
    }

    #[test]
    fn hex_round_trips_any_bytes() {
        let raw = b"/var/mail/a b;$(rm -rf /)\n\xff";
        assert_eq!(unhex(&hex(raw)).unwrap(), raw);
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn reply_error_line_becomes_its_class() {
        let e = parse_reply(
            b"repaired 41 x\nerror lock-busy /var/mail/a.lock held\n",
            b"",
            10,
        )
        .unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::LockBusy);
        assert_eq!(e.failure(), Failure::LockBusy);
        assert_eq!(e.message, "/var/mail/a.lock held");
    }

    #[test]
    fn every_error_class_of_a_reply_is_kept() {
        for (class, kind) in [
            ("lock-busy", ScriptErrorKind::LockBusy),
            ("unsupported", ScriptErrorKind::Unsupported),
            ("missing", ScriptErrorKind::Missing),
            ("bad-request", ScriptErrorKind::BadRequest),
            ("failed", ScriptErrorKind::Failed),
            ("anything-else", ScriptErrorKind::Failed),
        ] {
            let out = format!("error {class} what happened\n");
            let e = parse_reply(out.as_bytes(), b"", 1).unwrap_err();
            assert_eq!(
                (e.kind, e.message.as_str()),
                (kind, "what happened"),
                "{class}"
            );
        }
    }

    #[test]
    fn c1_controls_are_escaped_as_unicode_and_ascii_ones_as_bytes() {
        assert_eq!(
            escape_server_text("a\u{7f}\u{80}\u{9f}\u{a0}".as_bytes()),
            "a\\x7f\\u{80}\\u{9f}\u{a0}"
        );
    }

    #[test]
    fn every_probe_record_is_read() {
        let records: Vec<(String, String)> = [
            ("user", hex(b"ann")),
            ("home", hex(b"/home/ann")),
            ("spool", hex(b"/var/mail/ann")),
            ("spool-symlink", "1".into()),
            ("spool-dir-shared", "sticky".into()),
            ("spool-size", "10".into()),
            ("spool-messages", "1".into()),
            ("spool-dir-writable", "1".into()),
            ("spool-writable", "1".into()),
            ("zstd-version", "1.5.4".into()),
            ("facts", "1-2".into()),
            ("tool", "dotlockfile 1".into()),
            ("tool", "lockfile 1".into()),
            ("tool", "zstd 1".into()),
            ("tool", "gzip 1".into()),
            ("tool", "gzip-login 1".into()),
            ("tool", "sha256 1".into()),
            ("tool", "head-cmp 1".into()),
            ("tool", "unknown 1".into()),
            ("something-new", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let want = Probe {
            spool_symlink: true,
            spool_dir_shared: SharedDir::Sticky,
            tools: Tools {
                lockfile: true,
                ..probe(true).tools
            },
            ..probe(true)
        };
        assert_eq!(parse_probe(&records).unwrap(), want);
        // Each flag read as it is, not always true; an open directory.
        let flipped: Vec<(String, String)> = records
            .iter()
            .map(|(k, v)| match k.as_str() {
                "spool-symlink" | "spool-dir-writable" | "spool-writable" => {
                    (k.clone(), "0".into())
                }
                "spool-dir-shared" => (k.clone(), "open".into()),
                "zstd-version" => (k.clone(), String::new()),
                "tool" => (k.clone(), v.replace(" 1", " 0")),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let p = parse_probe(&flipped).unwrap();
        assert!(!p.spool_symlink && !p.spool_dir_writable && !p.spool_writable);
        assert_eq!(p.spool_dir_shared, SharedDir::Open);
        assert_eq!(p.zstd_version, None);
        assert_eq!(p.tools, Tools::default());
        let no_spool: Vec<_> = records.into_iter().filter(|(k, _)| k != "spool").collect();
        assert!(parse_probe(&no_spool).is_err());
    }

    #[test]
    fn reply_without_ok_is_a_failure_quoting_stderr() {
        let e = parse_reply(b"user 61\n", b"sh: 1: oops\n", 2).unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Failed);
        assert!(e.message.contains("sh: 1: oops"), "{}", e.message);
    }

    #[test]
    fn claims_parse_with_ids() {
        let path = "/home/ann/.mailhaul/claims/ann.20260101T000000-12-345.mbox";
        let out = format!(
            "claimed {h}\nclaim {h} 12 {s}\nok\n",
            h = hex(path.as_bytes()),
            s = "ab".repeat(32)
        );
        let r = parse_claims(&parse_reply(out.as_bytes(), b"", 0).unwrap()).unwrap();
        assert_eq!(r.claimed.as_deref(), Some(path));
        assert_eq!(r.claims.len(), 1);
        assert_eq!(r.claims[0].size, 12);
        assert_eq!(r.claims[0].id(), "20260101T000000-12-345");
        let renamed = RemoteClaim {
            path: "/var/mail/ann.mailhaul-claim.20260101T000000-1-2".into(),
            size: 1,
            sha256: String::new(),
        };
        assert_eq!(renamed.id(), "20260101T000000-1-2");
    }

    #[test]
    fn auto_renames_in_a_writable_dir_and_copies_otherwise() {
        let c = choose_strategy(&probe(true), ClaimStrategy::Auto).unwrap();
        assert_eq!(c.strategy, Strategy::Rename);
        let c = choose_strategy(&probe(false), ClaimStrategy::Auto).unwrap();
        assert_eq!(c.strategy, Strategy::CopyTruncate);
        assert!(c.reason.contains("dotlockfile"), "{}", c.reason);
    }

    /// A forced copy-truncate in a writable directory says it was
    /// configured, not that the directory is not writable.
    #[test]
    fn forced_copy_truncate_gives_the_true_reason() {
        let c = choose_strategy(&probe(true), ClaimStrategy::CopyTruncate).unwrap();
        assert_eq!(c.strategy, Strategy::CopyTruncate);
        assert!(c.reason.starts_with("configured"), "{}", c.reason);
        assert!(!c.reason.contains("not writable"), "{}", c.reason);
        let c = choose_strategy(&probe(false), ClaimStrategy::Auto).unwrap();
        assert!(c.reason.contains("not writable"), "{}", c.reason);
    }

    #[test]
    fn server_text_is_escaped_before_it_is_shown() {
        assert_eq!(escape_server_text(b"/var/mail/ann"), "/var/mail/ann");
        assert_eq!(
            escape_server_text(b"a\x1b[2Jb\nc\\d\xffe\xc2\x9bf\xc3\xa9"),
            "a\\x1b[2Jb\\x0ac\\\\d\\xffe\\u{9b}f\u{e9}"
        );
    }

    /// Names the client cannot use are reported, never fatal: a claim whose
    /// name is not UTF-8, files the script ignored, escaped.
    #[test]
    fn odd_names_in_a_claim_reply_are_reported_not_fatal() {
        let good = "/var/mail/ann.mailhaul-claim.20260101T000000-1-2";
        let out = format!(
            "claim {} 5 {s}\nclaim {} 7 {s}\nignored {}\nstale-lock {} 612 pid-4242\nok\n",
            hex(b"/var/mail/ann.mailhaul-claim.\xff"),
            hex(good.as_bytes()),
            hex(b"/var/mail/ann.mailhaul-claim.\x1b[31m"),
            hex(b"/var/mail/ann.lock"),
            s = "ab".repeat(32)
        );
        let r = parse_claims(&parse_reply(out.as_bytes(), b"", 0).unwrap()).unwrap();
        assert_eq!(r.claims.len(), 1);
        assert_eq!(r.claims[0].path, good);
        assert_eq!(
            r.ignored,
            [
                "/var/mail/ann.mailhaul-claim.\\xff (not UTF-8)",
                "/var/mail/ann.mailhaul-claim.\\x1b[31m"
            ]
        );
        assert_eq!(
            r.stale_locks,
            ["/var/mail/ann.lock: 612 s old, its holder, pid 4242, is not running"]
        );
        let e = parse_reply(b"error failed cannot link \x1b]0;x\x07\n", b"", 12).unwrap_err();
        assert_eq!(e.message, "cannot link \\x1b]0;x\\x07");
    }

    /// A symbolic link as the spool is never renamed (that would move the
    /// link): auto copies and truncates through it, rename is refused.
    #[test]
    fn a_symlinked_spool_is_copied_not_renamed() {
        let mut p = probe(true);
        p.spool_symlink = true;
        let c = choose_strategy(&p, ClaimStrategy::Auto).unwrap();
        assert_eq!(c.strategy, Strategy::CopyTruncate);
        assert!(c.reason.contains("symbolic link"), "{}", c.reason);
        let e = choose_strategy(&p, ClaimStrategy::Rename).unwrap_err();
        assert!(e.0.contains("symbolic link"), "{e}");
    }

    /// A world-writable directory without the sticky bit lets anyone
    /// remove the spool and claims: nothing is claimed there. A sticky one
    /// is fine (only the user's own files are claims).
    #[test]
    fn an_open_world_writable_spool_directory_is_refused() {
        let mut p = probe(true);
        p.spool_dir_shared = SharedDir::Open;
        for wanted in [ClaimStrategy::Auto, ClaimStrategy::CopyTruncate] {
            let e = choose_strategy(&p, wanted).unwrap_err();
            assert!(e.0.contains("chmod +t /var/mail"), "{e}");
        }
        p.spool_dir_shared = SharedDir::Sticky;
        let c = choose_strategy(&p, ClaimStrategy::Auto).unwrap();
        assert_eq!(c.strategy, Strategy::Rename);
        assert!(c.reason.contains("sticky"), "{}", c.reason);
    }

    #[test]
    fn copy_truncate_without_lock_tool_names_the_package() {
        let mut p = probe(false);
        p.tools.dotlockfile = false;
        let e = choose_strategy(&p, ClaimStrategy::Auto).unwrap_err();
        assert!(e.0.contains("liblockfile-bin"), "{e}");
        assert!(choose_strategy(&p, ClaimStrategy::Rename).is_err());
    }

    /// `claim = "rename"` renames in a writable directory and is refused,
    /// saying why, in one that is not (never a copy in its place).
    #[test]
    fn configured_rename_needs_a_writable_directory() {
        let c = choose_strategy(&probe(true), ClaimStrategy::Rename).unwrap();
        assert_eq!(c.strategy, Strategy::Rename);
        assert_eq!(
            c.reason,
            "/var/mail is writable by ann, so the spool is renamed"
        );
        let e = choose_strategy(&probe(false), ClaimStrategy::Rename).unwrap_err();
        assert!(e.0.starts_with("claim = \"rename\" needs"), "{e}");
    }

    /// A claim needs a sha256 tool (verification) and head and cmp (repair
    /// of a claim cut short): without either nothing is claimed.
    #[test]
    fn a_server_without_sha256_or_head_and_cmp_is_refused() {
        for (sha256, head_cmp, why) in [(false, true, "sha256"), (true, false, "head or cmp")] {
            let mut p = probe(true);
            p.tools.sha256 = sha256;
            p.tools.head_cmp = head_cmp;
            for wanted in [ClaimStrategy::Auto, ClaimStrategy::Rename] {
                let e = choose_strategy(&p, wanted).unwrap_err();
                assert!(e.0.contains(why), "{e}");
            }
        }
    }

    /// Every class the script reports becomes its failure (and so its exit
    /// status); "said ok but exited non-zero" is not a success.
    #[test]
    fn every_script_error_has_its_failure() {
        for (kind, failure) in [
            (ScriptErrorKind::LockBusy, Failure::LockBusy),
            (ScriptErrorKind::Unsupported, Failure::ServerUnsupported),
            (ScriptErrorKind::Missing, Failure::Transfer),
            (ScriptErrorKind::Failed, Failure::Transfer),
            (ScriptErrorKind::BadRequest, Failure::Local),
        ] {
            let e = ScriptError {
                kind,
                message: String::new(),
            };
            assert_eq!(e.failure(), failure, "{kind:?}");
        }
        let e = parse_reply(b"claimed 61\nok\n", b"", 3).unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Failed);
        assert_eq!(e.message, "server script said ok but exited with 3");
        assert_eq!(
            parse_reply(b"claimed 61\nok\n", b"", 0).unwrap(),
            [("claimed".to_string(), "61".to_string())]
        );
    }

    /// Each method's label (shown, kept in the history), the script's
    /// `send` arguments for it, and whether SSH must compress.
    #[test]
    fn every_method_has_its_label_and_send_arguments() {
        for (method, label, args, transport) in [
            (Method::Zstd(18), "zstd -18", ("zstd", "18"), false),
            (Method::Zstd(19), "zstd -19 --long", ("zstd", "19"), false),
            (
                Method::ZstdAdapt(9),
                "zstd --adapt=9..19",
                ("zstd-adapt", "9"),
                false,
            ),
            (Method::Gzip(6), "gzip -6", ("gzip", "6"), false),
            (Method::SshTransport, "ssh", ("cat", "0"), true),
            (Method::Plain, "none", ("cat", "0"), false),
        ] {
            assert_eq!(method.label(), label);
            let (name, level) = method.send_args();
            assert_eq!((name, level.as_str()), args, "{label}");
            assert_eq!(method.needs_transport_compression(), transport, "{label}");
        }
    }

    /// A configured compression is used when the server has it and refused
    /// when not; `ssh` and `none` need nothing; a fixed zstd level is kept
    /// within 1..=19.
    #[test]
    fn configured_compression_is_used_or_refused() {
        let mut p = probe(true);
        let m = |p: &Probe, wanted, level| choose_method(p, wanted, level).map(|c| c.method);
        assert_eq!(m(&p, Compression::Gzip, None), Ok(Method::Gzip(6)));
        assert_eq!(m(&p, Compression::Ssh, None), Ok(Method::SshTransport));
        assert_eq!(m(&p, Compression::None, None), Ok(Method::Plain));
        let fixed = |l| Some(ZstdLevel::Fixed(l));
        assert_eq!(m(&p, Compression::Zstd, fixed(25)), Ok(Method::Zstd(19)));
        assert_eq!(m(&p, Compression::Zstd, fixed(0)), Ok(Method::Zstd(1)));
        let auto = choose_method(&p, Compression::Auto, None).unwrap();
        assert_eq!(auto.reason, "the server has zstd 1.5.4");
        p.tools.gzip = false;
        assert!(m(&p, Compression::Gzip, None).is_err());
        p.tools.zstd = false;
        let c = choose_method(&p, Compression::Auto, None).unwrap();
        assert!(c.reason.contains("neither zstd nor gzip"), "{}", c.reason);
    }

    #[test]
    fn compression_auto_prefers_zstd_then_gzip_then_ssh() {
        let mut p = probe(true);
        let m = |p: &Probe| choose_method(p, Compression::Auto, None).unwrap().method;
        assert_eq!(m(&p), Method::Zstd(DEFAULT_ZSTD_LEVEL));
        p.tools.zstd = false;
        assert_eq!(m(&p), Method::Gzip(6));
        p.tools.gzip = false;
        assert_eq!(m(&p), Method::SshTransport);
        assert!(choose_method(&p, Compression::Zstd, None).is_err());
        let l = choose_method(&probe(true), Compression::Zstd, Some(ZstdLevel::Fixed(19)));
        assert_eq!(l.unwrap().method, Method::Zstd(19));
    }

    #[test]
    fn adapt_needs_zstd_1_3_6() {
        let mut p = probe(true);
        let m = |p: &Probe| choose_method(p, Compression::Auto, Some(ZstdLevel::Adapt)).unwrap();
        assert_eq!(m(&p).method, Method::ZstdAdapt(DEFAULT_ZSTD_LEVEL));
        assert_eq!(m(&p).method.send_args().0, "zstd-adapt");
        p.zstd_version = Some("1.3.5".into());
        assert_eq!(m(&p).method, Method::Zstd(DEFAULT_ZSTD_LEVEL));
        assert!(m(&p).reason.contains("too old"), "{}", m(&p).reason);
        assert!(zstd_can_adapt("1.3.6") && zstd_can_adapt("1.10.0"));
        assert!(!zstd_can_adapt("0.8.1") && !zstd_can_adapt(""));
    }

    /// Runs the claim script (as sent, or as written) with the local /bin/sh,
    /// through the loader that runs it on a server, with `home` as `$HOME`
    /// (the test's own directory, kept for all its runs as on a server, and
    /// removed with it).
    fn run_local(home: &std::path::Path, script: &str, args: &[&[u8]]) -> String {
        let script = RemoteScript::new("claim", script);
        let (_, out) = crate::engine::ssh::run_locally(home, &script, args);
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn repairs_are_reported_and_paths_shown_escaped() {
        let records = vec![
            (
                "repaired".to_string(),
                format!("{} finished", hex(b"/h/.mailhaul/claims/a.part")),
            ),
            ("ok-not".to_string(), String::new()),
        ];
        let reply = parse_claims(&records).unwrap();
        assert_eq!(reply.repaired, vec!["/h/.mailhaul/claims/a.part finished"]);
        let claim = RemoteClaim {
            path: "/var/mail/a\u{1b}[31m.mailhaul-claim.1".into(),
            size: 1,
            sha256: String::new(),
        };
        assert_eq!(claim.shown(), "/var/mail/a\\x1b[31m.mailhaul-claim.1");
    }

    #[test]
    fn stale_locks_name_their_holder_and_bad_claim_records_are_refused() {
        let lock = hex(b"/var/mail/ann.lock");
        let records: Vec<(String, String)> = [
            format!("{lock} 612 none"),
            format!("{lock} 700 pid-42"),
            format!("{lock} 800 stamp"),
        ]
        .into_iter()
        .map(|v| ("stale-lock".to_string(), v))
        .collect();
        assert_eq!(
            parse_claims(&records).unwrap().stale_locks,
            vec![
                "/var/mail/ann.lock: 612 s old, it names no holder",
                "/var/mail/ann.lock: 700 s old, its holder, pid 42, is not running",
                "/var/mail/ann.lock: 800 s old, it names no process id",
            ]
        );
        let path = hex(b"/var/mail/ann.mailhaul-claim.1");
        for sha in ["ab".repeat(31), "zz".repeat(32), "ab".repeat(33)] {
            let records = vec![("claim".to_string(), format!("{path} 12 {sha}"))];
            assert!(parse_claims(&records).is_err(), "{sha}");
        }
        assert_eq!(Strategy::Rename.as_str(), "rename");
        assert_eq!(Strategy::CopyTruncate.as_str(), "copy-truncate");
    }

    #[test]
    fn claims_name_their_owner() {
        let claim = |path: &str| RemoteClaim {
            path: path.into(),
            size: 1,
            sha256: String::new(),
        };
        let owned = claim("/var/mail/ann.mailhaul-claim.20261128T101010-42-7-o0123456789ab");
        assert_eq!(owned.owner().as_deref(), Some("0123456789ab"));
        assert!(owned.belongs_to("0123456789ab"));
        assert!(!owned.belongs_to("ba9876543210"));
        let copied =
            claim("/h/.mailhaul/claims/ann.0123abcd0123.20261128T101010-42-7-oba9876543210.mbox");
        assert_eq!(copied.owner().as_deref(), Some("ba9876543210"));
        let unowned = claim("/var/mail/ann.mailhaul-claim.20261128T101010-42-7");
        assert_eq!(unowned.owner(), None);
        // An owner is exactly 12 hex digits: not 12 of anything, nor hex of
        // another length.
        for odd in ["-ozzzzzzzzzzzz", "-o0123456789a", "-o0123456789abc"] {
            let c = claim(&format!(
                "/var/mail/ann.mailhaul-claim.20261128T101010-42-7{odd}"
            ));
            assert_eq!(c.owner(), None, "{odd}");
        }
        assert!(
            unowned.belongs_to("0123456789ab"),
            "claims of earlier versions"
        );
    }

    /// An empty or missing spool is answered `empty` without taking the
    /// lock, so a delivery agent that holds it (here: a lock file made by
    /// hand) is neither waited for nor made to back off, and its lock is
    /// left alone; a spool with mail still waits for the lock.
    /// Runs the claim script's `standby SPOOL` with the local /bin/sh as a
    /// server would (on a channel whose stdin stays open), then sends
    /// `line` (nothing: end-of-file at once) on its stdin.
    fn run_standby(home: &std::path::Path, spool: &[u8], line: &[u8]) -> String {
        use crate::engine::ssh::{run_answering, Reply, ScriptMode};
        let script = RemoteScript::new("claim", script());
        let (_, out) = run_answering(
            home,
            &script,
            &[b"standby", spool],
            ScriptMode::KeepStdin,
            &[],
            |answer| match answer {
                "mh-run" => Some(Reply::Last(line.to_vec())),
                other => script.body_for(other).map(|b| Reply::Send(b.to_vec())),
            },
        );
        // A stream after the reply is binary.
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A claim step sent to a standby answers as one sent with its exec
    /// request: the same facts and key (worked out before the line came),
    /// the claim made and listed with its size, the spool taken.
    #[test]
    fn a_standby_claims_as_an_exec_request_would() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("ann");
        let spool_arg = spool.to_str().unwrap().as_bytes();
        std::fs::write(&spool, "From a\nx\n").unwrap();
        let probe = run_local(dir.path(), script(), &[b"probe", spool_arg]);
        let key = probe
            .lines()
            .find_map(|l| l.strip_prefix("facts "))
            .expect("a facts key")
            .to_string();
        let owner = b"0123456789ab".as_slice();
        let claim: [&[u8]; 9] = [
            b"claim",
            spool_arg,
            b"rename",
            b"0",
            owner,
            b"0",
            b"",
            b"",
            key.as_bytes(),
        ];
        let line = crate::engine::ssh::command_line(&claim).unwrap();
        let reply = run_standby(dir.path(), spool_arg, line.as_bytes());
        let facts = |text: &str| -> Vec<String> {
            text.lines()
                .take_while(|l| !l.starts_with("facts "))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(facts(&reply), facts(&probe), "{reply}");
        assert!(reply.contains(&format!("facts {key}\n")), "{reply}");
        assert!(!reply.contains("resurvey"), "{reply}");
        assert!(reply.contains("\nclaimed "), "{reply}");
        assert!(reply.contains(" 9 "), "the claim's size: {reply}");
        assert!(reply.ends_with("ok\n"), "{reply}");
        assert!(!spool.exists(), "the spool was claimed");
    }

    /// A standby hashes the cached dictionaries while it waits: a claim
    /// step through it streams with the dictionary whose sha256 it names
    /// when the copy there has it, and without (`dict-missing`) when not.
    #[test]
    fn a_standby_uses_only_a_dictionary_whose_hash_it_checked() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("ann");
        let spool_arg = spool.to_str().unwrap().as_bytes();
        let dictionary = b"From a\nSubject: a dictionary of earlier mail\n".repeat(20);
        let sha = hex(&sha2::Sha256::digest(&dictionary));
        let cached = dir
            .path()
            .join(format!(".mailhaul/scripts/dict-{}.zdict", &sha[..16]));
        std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
        for (copy, answer) in [
            (&b"not it"[..], " dict-missing\n"),
            (&dictionary[..], " dict\n"),
        ] {
            std::fs::write(&cached, copy).unwrap();
            std::fs::write(&spool, "From a\nx\n").unwrap();
            // The last round's claim, released (it would go first).
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path.to_string_lossy().contains(".mailhaul-claim.") {
                    std::fs::remove_file(path).unwrap();
                }
            }
            let args: [&[u8]; 12] = [
                b"claim",
                spool_arg,
                b"rename",
                b"0",
                b"0123456789ab",
                b"0",
                b"zstd",
                b"3",
                b"",
                sha.as_bytes(),
                b"1000",
                b"3",
            ];
            let line = crate::engine::ssh::command_line(&args).unwrap();
            let reply = run_standby(dir.path(), spool_arg, line.as_bytes());
            let send = reply
                .lines()
                .find(|l| l.starts_with("send "))
                .unwrap_or_else(|| panic!("no send line: {reply}"));
            assert!(format!("{send}\n").ends_with(answer), "{send}");
        }
    }

    /// A standby runs only a line of hex words, and does nothing when its
    /// channel ends without one.
    #[test]
    fn a_standby_runs_only_hex_words_and_nothing_at_end_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("ann");
        let spool_arg = spool.to_str().unwrap().as_bytes();
        std::fs::write(&spool, "From a\nx\n").unwrap();
        let marker = dir.path().join("ran");
        let bad = format!("claim $(touch {})\n", marker.display());
        for line in [bad.as_bytes(), b"x636c61696d x2f;\n", b"\n", b""] {
            let reply = run_standby(dir.path(), spool_arg, line);
            if line.is_empty() {
                assert_eq!(reply, "", "at end-of-file");
            } else {
                assert!(reply.starts_with("error bad-request "), "{reply}");
            }
            assert!(!marker.exists());
            assert_eq!(std::fs::read(&spool).unwrap(), b"From a\nx\n");
        }
    }

    #[test]
    fn an_idle_spool_is_not_locked() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("ann");
        let lock = dir.path().join("ann.lock");
        let spool_arg = spool.to_str().unwrap().as_bytes();
        for text in [SCRIPT_SOURCE, script()] {
            std::fs::write(&lock, "4242\n").unwrap();
            for contents in [None, Some("")] {
                match contents {
                    Some(c) => std::fs::write(&spool, c).unwrap(),
                    None => drop(std::fs::remove_file(&spool)),
                }
                let reply = run_local(dir.path(), text, &[b"claim", spool_arg, b"rename", b"0"]);
                assert_eq!(reply, "empty\nok\n", "spool {contents:?}");
                assert_eq!(std::fs::read_to_string(&lock).unwrap(), "4242\n");
            }
            std::fs::write(&spool, "From a\nx\n").unwrap();
            let reply = run_local(dir.path(), text, &[b"claim", spool_arg, b"rename", b"0"]);
            assert!(reply.contains("lock-busy"), "{reply}");
            assert_eq!(std::fs::read(&spool).unwrap(), b"From a\nx\n");
            std::fs::remove_file(&lock).unwrap();
        }
    }

    /// Paths of any bytes are hex-encoded exactly (plain ones by the shell
    /// itself, others with od), split as dirname and basename split them (a
    /// copy-truncate claim is named after the spool's file name), and the
    /// spool directory's sticky and world-writable bits read right, by the
    /// commented script and the compact one.
    #[test]
    fn odd_paths_are_encoded_and_split_exactly() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        let top = tempfile::tempdir().unwrap();
        let every: Vec<u8> = (1..=255u8).filter(|&b| b != b'/').collect();
        let cases: [(&[u8], &str, u32, Option<&str>); 3] = [
            (b"plain-Dir_0.9", "ann", 0o755, None),
            (
                b"d'i\"r $(x)\n\x01\xff",
                "s p'o\x7fol",
                0o1777,
                Some("sticky"),
            ),
            (&every, "x", 0o777, Some("open")),
        ];
        for (dir_name, file, mode, shared) in cases {
            let dir = top.path().join(std::ffi::OsStr::from_bytes(dir_name));
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let spool = dir.join(file);
            let spool_arg = spool.as_os_str().as_bytes();
            for text in [SCRIPT_SOURCE, script()] {
                std::fs::write(&spool, "From a\nx\n").unwrap();
                let probe = run_local(top.path(), text, &[b"probe", spool_arg]);
                let records = parse_reply(probe.as_bytes(), b"", 0).unwrap();
                let value = |key: &str| {
                    records
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.as_str())
                };
                assert_eq!(value("spool"), Some(hex(spool_arg).as_str()), "{probe}");
                assert_eq!(value("spool-dir-shared"), shared, "{probe}");
                assert_eq!(value("spool-size"), Some("9"), "{probe}");
                let home = String::from_utf8(unhex(value("home").unwrap()).unwrap()).unwrap();
                let claim = run_local(
                    top.path(),
                    text,
                    &[b"claim", spool_arg, b"copy-truncate", b"0"],
                );
                let claimed =
                    parse_claims(&parse_reply(claim.as_bytes(), b"", 0).unwrap()).unwrap();
                let path = &claimed.claims[0].path;
                let named = format!("{home}/.mailhaul/claims/{file}.");
                assert!(path.starts_with(&named), "{path} {named}");
                assert_eq!(
                    run_local(top.path(), text, &[b"release", path.as_bytes()]),
                    "released\nok\n"
                );
            }
        }
    }

    /// Only a claim file of ours with no other name is a finished claim:
    /// one with a second link (a hard link made to it since) is neither
    /// listed nor sent, by the commented script and the compact one.
    #[test]
    fn a_claim_with_a_second_link_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("ann");
        let claim = dir.path().join("ann.mailhaul-claim.20261204T100000-1-2");
        let other = dir.path().join("elsewhere");
        let spool_arg = spool.to_str().unwrap().as_bytes();
        for text in [SCRIPT_SOURCE, script()] {
            std::fs::write(&claim, "From a\nx\n").unwrap();
            let listed = |reply: &str| {
                reply.contains(&format!(
                    "claim {} ",
                    hex(claim.to_str().unwrap().as_bytes())
                ))
            };
            let recover = run_local(dir.path(), text, &[b"recover", spool_arg]);
            assert!(listed(&recover), "{recover}");
            std::fs::hard_link(&claim, &other).unwrap();
            let recover = run_local(dir.path(), text, &[b"recover", spool_arg]);
            assert_eq!(recover, "ok\n");
            let send = run_local(
                dir.path(),
                text,
                &[b"send", claim.to_str().unwrap().as_bytes(), b"cat", b"0"],
            );
            assert!(send.is_empty(), "{send}");
            std::fs::remove_file(&other).unwrap();
        }
    }

    /// The compacted script parses, is much smaller, and answers as the
    /// commented one does (probe, claim by rename, recover, release).
    #[test]
    fn compact_script_is_valid_and_behaves_the_same() {
        assert!(
            script().len() * 4 < SCRIPT_SOURCE.len() * 3,
            "{}",
            script().len()
        );
        let check = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(script())
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        assert!(
            !SCRIPT_SOURCE.contains("<<"),
            "compact() cannot keep here-documents"
        );

        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("ann");
        let spool_arg = spool.to_str().unwrap().as_bytes();
        let mut replies = Vec::new();
        for text in [SCRIPT_SOURCE, script()] {
            std::fs::write(&spool, "From a\nx\nFrom b\ny\n").unwrap();
            let probe = run_local(dir.path(), text, &[b"probe", spool_arg]);
            let claim = run_local(dir.path(), text, &[b"claim", spool_arg, b"rename", b"0"]);
            let claimed = parse_claims(&parse_reply(claim.as_bytes(), b"", 0).unwrap()).unwrap();
            let recover = run_local(dir.path(), text, &[b"recover", spool_arg]);
            let path = claimed.claims[0].path.as_bytes();
            let release = run_local(dir.path(), text, &[b"release", path]);
            let after = run_local(dir.path(), text, &[b"recover", spool_arg]);
            assert_eq!(
                recover,
                claim
                    .lines()
                    .skip(1)
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            );
            let sizes: Vec<_> = claimed
                .claims
                .iter()
                .map(|c| (c.size, c.sha256.clone()))
                .collect();
            replies.push((probe, sizes, release, after));
        }
        assert!(replies[0].0.ends_with("ok\n"), "{}", replies[0].0);
        let probe = parse_probe(&parse_reply(replies[0].0.as_bytes(), b"", 0).unwrap()).unwrap();
        assert!(probe.tools.sha256, "{}", replies[0].0);
        assert_eq!(replies[0].1.len(), 1);
        assert_eq!(replies[0].3, "ok\n");
        assert_eq!(replies[0], replies[1]);
    }
}
