//! Host key verification against an OpenSSH known_hosts file.
//!
//! libssh2 does the host-name matching (plain, comma lists, `[host]:port`,
//! hashed `|1|` entries), one line at a time so that a mismatch can name its
//! line. What libssh2 gets wrong is handled here:
//! - `@revoked` lines are parsed but ignored by libssh2: a key listed in any
//!   `@revoked` line is refused here, whatever the line's host patterns
//!   (stricter than OpenSSH, which only looks at lines for that host);
//! - libssh2 compares host names case-sensitively; OpenSSH lowercases the
//!   name it looks up (and records) and matches patterns case-insensitively,
//!   so here both are lowercased (`LocalHost` finds a `[localhost]:2222`
//!   line instead of being "unknown" and recorded again under accept-new);
//! - the algorithms known for the host are preferred in the handshake, as
//!   OpenSSH does; a host known only by keys of other types that then sends
//!   a key of a new type is a changed host, as in OpenSSH 9 ("REMOTE HOST
//!   IDENTIFICATION HAS CHANGED ... Offending RSA key"), never an unknown
//!   one that accept-new would record;
//! - libssh2 falls back from `[host]:port` to plain `host` entries; here a
//!   non-22 port only matches `[host]:port` entries, as in OpenSSH.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use ssh2::{CheckResult, KnownHostFileKind, MethodType, Session};

use super::SshError;

/// A server's public host key as sent in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// The SSH wire-format key blob.
    pub blob: Vec<u8>,
    /// The key type named inside the blob (`ssh-ed25519`, `ssh-rsa`, ...).
    pub key_type: String,
}

impl HostKey {
    /// Reads the host key of a session after its handshake.
    pub fn of_session(session: &Session) -> Option<HostKey> {
        let (blob, _) = session.host_key()?;
        HostKey::from_blob(blob.to_vec())
    }

    /// Wraps a key blob, reading its type name from the blob itself.
    pub fn from_blob(blob: Vec<u8>) -> Option<HostKey> {
        let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let key_type = std::str::from_utf8(blob.get(4..4 + len)?).ok()?.to_string();
        Some(HostKey { blob, key_type })
    }

    /// The fingerprint exactly as OpenSSH prints it (`ssh-keygen -lf`).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }
}

/// `SHA256:` and the unpadded base64 of the SHA-256 of a key blob, as OpenSSH
/// shows fingerprints.
pub fn fingerprint(blob: &[u8]) -> String {
    let mut b64 = base64_encode(&Sha256::digest(blob));
    while b64.ends_with('=') {
        b64.pop();
    }
    format!("SHA256:{b64}")
}

/// The name known_hosts files a host under: `host` on port 22, else
/// `[host]:port`; lowercased, as OpenSSH looks up and records host names.
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// A plain (unhashed) known_hosts line with its host patterns lowercased,
/// as OpenSSH matches them; hashed (`|1|`) patterns are left as they are.
fn lowercase_patterns(line: &str) -> std::borrow::Cow<'_, str> {
    let patterns = line.split_whitespace().next().unwrap_or("");
    if patterns.starts_with("|1|") || !patterns.bytes().any(|b| b.is_ascii_uppercase()) {
        return std::borrow::Cow::Borrowed(line);
    }
    let start = line.len() - line.trim_start().len();
    let end = start + patterns.len();
    std::borrow::Cow::Owned(format!(
        "{}{}{}",
        &line[..start],
        patterns.to_ascii_lowercase(),
        &line[end..]
    ))
}

/// What known_hosts says about a server key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An entry for this host holds this key.
    Known,
    /// No entry for this host has a key of this type.
    Unknown,
    /// An entry for this host holds another key of the same type, or the
    /// host is known only by keys of other types.
    Changed {
        /// The file holding that entry.
        file: PathBuf,
        /// 1-based line of that entry.
        line: usize,
        /// Type of the key in the file (`ssh-ed25519`, ...).
        expected_type: String,
        /// Fingerprint of the key in the file.
        expected: String,
    },
    /// The key is listed in an `@revoked` line.
    Revoked {
        /// The file holding the `@revoked` entry.
        file: PathBuf,
        /// 1-based line of the `@revoked` entry.
        line: usize,
    },
}

/// The known_hosts files to check: the user's own (written to by
/// `accept-new`) and read-only system-wide ones, read into lines.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    /// Index 0 is the user's file; the others are system-wide.
    files: Vec<PathBuf>,
    /// (file index, 1-based line number, text) of every non-empty,
    /// non-comment line.
    lines: Vec<(usize, usize, String)>,
}

/// Fields of one known_hosts line.
struct Entry<'a> {
    marker: Option<&'a str>,
    key_type: &'a str,
    key_b64: &'a str,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Entry<'a>> {
        let mut fields = line.split_whitespace();
        let first = fields.next()?;
        let marker = first.starts_with('@').then_some(first);
        if marker.is_some() {
            fields.next()?; // host patterns
        }
        Some(Entry {
            marker,
            key_type: fields.next()?,
            key_b64: fields.next()?,
        })
    }
}

impl KnownHosts {
    /// Reads the user's file and the system-wide ones; missing files are
    /// empty, and an unreadable system-wide file is skipped.
    pub fn read(user_file: &Path, system_files: &[PathBuf]) -> Result<KnownHosts, SshError> {
        let mut known = KnownHosts {
            files: vec![user_file.to_path_buf()],
            lines: Vec::new(),
        };
        known.add_lines(0, read_text(user_file)?);
        for path in system_files {
            if let Ok(text) = read_text(path) {
                known.files.push(path.clone());
                known.add_lines(known.files.len() - 1, text);
            }
        }
        Ok(known)
    }

    fn add_lines(&mut self, file: usize, text: String) {
        self.lines.extend(
            text.lines()
                .enumerate()
                .map(|(i, l)| (file, i + 1, l.trim().to_string()))
                .filter(|(_, _, l)| !l.is_empty() && !l.starts_with('#')),
        );
    }

    /// The user's file, which `append` writes to.
    pub fn user_file(&self) -> &Path {
        &self.files[0]
    }

    /// How libssh2 sees `blob` for `host`/`port` on one plain (unmarked) line:
    /// `None` if libssh2 cannot parse the line.
    fn check_line(
        session: &Session,
        line: &str,
        host: &str,
        port: u16,
        blob: &[u8],
    ) -> Option<CheckResult> {
        let mut one = session.known_hosts().ok()?;
        one.read_str(&lowercase_patterns(line), KnownHostFileKind::OpenSSH)
            .ok()?;
        // ssh2's check_port tries `[NAME]:22` and then `NAME` itself; passing
        // the exact lookup name with port 22 thus matches only that name.
        Some(one.check_port(&lookup_name(host, port), 22, blob))
    }

    /// Checks the server's key for `host`/`port`: a key listed `@revoked`
    /// anywhere is refused, a matching entry in any file accepts it, another
    /// key of its type for the host means it changed, and so does a host
    /// known only by keys of other types (the first such entry is named).
    pub fn check(&self, session: &Session, host: &str, port: u16, key: &HostKey) -> Verdict {
        let key_b64 = base64_encode(&key.blob);
        let entries = || {
            self.lines
                .iter()
                .filter_map(|(f, n, l)| Entry::parse(l).map(|e| (*f, *n, l, e)))
        };
        if let Some((f, line, _, _)) =
            entries().find(|(_, _, _, e)| e.marker == Some("@revoked") && e.key_b64 == key_b64)
        {
            return Verdict::Revoked {
                file: self.files[f].clone(),
                line,
            };
        }
        let changed = |f: usize, line: usize, entry: &Entry| Verdict::Changed {
            file: self.files[f].clone(),
            line,
            expected_type: entry.key_type.to_string(),
            expected: base64_decode(entry.key_b64)
                .map(|b| fingerprint(&b))
                .unwrap_or_else(|| format!("(unreadable key {})", entry.key_b64)),
        };
        let mut same_type = None;
        let mut other_type = None;
        for (f, n, line, entry) in entries().filter(|(_, _, _, e)| e.marker.is_none()) {
            match Self::check_line(session, line, host, port, &key.blob) {
                Some(CheckResult::Match) => return Verdict::Known,
                Some(CheckResult::Mismatch) if entry.key_type == key.key_type => {
                    same_type.get_or_insert_with(|| changed(f, n, &entry));
                }
                Some(CheckResult::Mismatch) => {
                    other_type.get_or_insert_with(|| changed(f, n, &entry));
                }
                _ => {}
            }
        }
        same_type.or(other_type).unwrap_or(Verdict::Unknown)
    }

    /// Key types (`ssh-ed25519`, ...) recorded for `host`/`port`, in file order.
    pub fn known_key_types(&self, session: &Session, host: &str, port: u16) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for (_, _, line) in &self.lines {
            let Some(entry) = Entry::parse(line) else {
                continue;
            };
            if entry.marker.is_some() || types.iter().any(|t| t == entry.key_type) {
                continue;
            }
            // A blob no entry can equal: any hit on the host name is a mismatch.
            if Self::check_line(session, line, host, port, b"\0")
                .is_some_and(|r| matches!(r, CheckResult::Mismatch | CheckResult::Match))
            {
                types.push(entry.key_type.to_string());
            }
        }
        types
    }

    /// Makes the handshake prefer the key types known for this host, so that
    /// a host known by its RSA key is not asked for a new ed25519 key.
    pub fn prefer_known_types(&self, session: &Session, host: &str, port: u16) {
        let known = self.known_key_types(session, host, port);
        if known.is_empty() {
            return;
        }
        let Ok(supported) = session.supported_algs(MethodType::HostKey) else {
            return;
        };
        let mut order: Vec<&str> = Vec::new();
        for t in &known {
            let algs = match t.as_str() {
                "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
                other => vec![other],
            };
            for alg in algs {
                if let Some(a) = supported.iter().find(|s| **s == alg) {
                    if !order.contains(a) {
                        order.push(a);
                    }
                }
            }
        }
        for a in &supported {
            if !order.contains(a) {
                order.push(a);
            }
        }
        // A preference libssh2 rejects only leaves its default order.
        let _ = session.method_pref(MethodType::HostKey, &order.join(","));
    }

    /// Appends `host`/`port` with `key` (creating the directory 0700 and
    /// the file 0600 as needed), as `accept-new` and a user's "yes" do.
    pub fn append(&mut self, host: &str, port: u16, key: &HostKey) -> Result<(), SshError> {
        let path = self.files[0].clone();
        let err = |source| SshError::KnownHostsFile {
            action: "write to",
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
        let existing = std::fs::read(&path).unwrap_or_default();
        let line = format!(
            "{} {} {}",
            lookup_name(host, port),
            key.key_type,
            base64_encode(&key.blob)
        );
        let mut text = String::new();
        if !existing.is_empty() && !existing.ends_with(b"\n") {
            text.push('\n');
        }
        text.push_str(&line);
        text.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        let number = String::from_utf8_lossy(&existing).lines().count() + 1;
        self.lines.push((0, number, line));
        Ok(())
    }
}

/// A file's text; a missing file reads as empty.
fn read_text(path: &Path) -> Result<String, SshError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(SshError::KnownHostsFile {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as known_hosts stores key blobs.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on a bad character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = BASE64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        let data: Vec<u8> = (0..=255).collect();
        for n in 0..20 {
            let enc = base64_encode(&data[..n]);
            assert_eq!(enc.len() % 4, 0);
            assert_eq!(base64_decode(&enc).unwrap(), &data[..n]);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64_decode("Zm9vYg=="), Some(b"foob".to_vec()));
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    #[test]
    fn key_type_comes_from_the_blob() {
        let blob = [&[0, 0, 0, 11][..], b"ssh-ed25519", &[0, 0, 0, 1, 7]].concat();
        let key = HostKey::from_blob(blob).unwrap();
        assert_eq!(key.key_type, "ssh-ed25519");
        assert!(key.fingerprint().starts_with("SHA256:"));
        assert!(!key.fingerprint().ends_with('='));
        assert_eq!(HostKey::from_blob(vec![0, 0, 0, 9, b'x']), None);
    }

    #[test]
    fn lookup_name_brackets_only_non_default_ports() {
        assert_eq!(lookup_name("mx", 22), "mx");
        assert_eq!(lookup_name("mx", 2222), "[mx]:2222");
        assert_eq!(lookup_name("LocalHost", 2222), "[localhost]:2222");
    }

    #[test]
    fn plain_patterns_are_lowercased_hashed_ones_kept() {
        assert_eq!(
            lowercase_patterns("  [LocalHost]:22,MX ssh-ed25519 AAAAbC c"),
            "  [localhost]:22,mx ssh-ed25519 AAAAbC c"
        );
        let hashed = "|1|AbC=|DeF= ssh-ed25519 AAAAbC";
        assert_eq!(lowercase_patterns(hashed), hashed);
    }
}
