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
    /// a host known by its RSA key is not asked for a new ed25519 key; and
    /// offers no certificate types (`*-cert-v01@openssh.com`): a host's
    /// certificate cannot be checked against known_hosts' plain keys, and
    /// their names are 190 bytes of the client's first packet.
    pub fn prefer_known_types(&self, session: &Session, host: &str, port: u16) {
        let known = self.known_key_types(session, host, port);
        let Ok(mut supported) = session.supported_algs(MethodType::HostKey) else {
            return;
        };
        supported.retain(|a| !a.ends_with("-cert-v01@openssh.com"));
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

    /// A key of `kind` whose body is 32 bytes of `seed`.
    fn key(kind: &str, seed: u8) -> HostKey {
        let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(kind.as_bytes());
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[seed; 32]);
        HostKey::from_blob(blob).unwrap()
    }

    fn line(patterns: &str, key: &HostKey) -> String {
        format!("{patterns} {} {}\n", key.key_type, base64_encode(&key.blob))
    }

    /// The user's file and one system-wide file with these texts, read.
    fn known(user: &str, system: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let (u, s) = (dir.path().join("user"), dir.path().join("system"));
        std::fs::write(&u, user).unwrap();
        std::fs::write(&s, system).unwrap();
        let known = KnownHosts::read(&u, &[s]).unwrap();
        (dir, known)
    }

    fn changed(file: &Path, line: usize, was: &HostKey) -> Verdict {
        Verdict::Changed {
            file: file.to_path_buf(),
            line,
            expected_type: was.key_type.clone(),
            expected: was.fingerprint(),
        }
    }

    #[test]
    fn files_are_read_into_numbered_lines_without_comments() {
        let (dir, k) = known(
            "# a comment\n\n  [mx]:2222 ssh-ed25519 AAAA  \nother ssh-rsa BBBB\n",
            "mx ssh-ed25519 CCCC\n",
        );
        assert_eq!(
            k.lines,
            vec![
                (0, 3, "[mx]:2222 ssh-ed25519 AAAA".to_string()),
                (0, 4, "other ssh-rsa BBBB".to_string()),
                (1, 1, "mx ssh-ed25519 CCCC".to_string()),
            ]
        );
        assert_eq!(
            k.files,
            vec![dir.path().join("user"), dir.path().join("system")]
        );
        assert_eq!(k.user_file(), dir.path().join("user"));
        // A missing user file is empty; an unreadable system file is skipped;
        // an unreadable user file is an error.
        let missing = dir.path().join("missing");
        let k = KnownHosts::read(&missing, &[dir.path().to_path_buf()]).unwrap();
        assert!(k.lines.is_empty());
        assert_eq!(k.files, vec![missing]);
        assert!(matches!(
            KnownHosts::read(dir.path(), &[]),
            Err(SshError::KnownHostsFile { action: "read", .. })
        ));
    }

    #[test]
    fn entries_parse_with_and_without_a_marker() {
        let e = Entry::parse("@revoked * ssh-rsa AAAA").unwrap();
        assert_eq!(
            (e.marker, e.key_type, e.key_b64),
            (Some("@revoked"), "ssh-rsa", "AAAA")
        );
        let e = Entry::parse("mx ssh-ed25519 BBBB comment").unwrap();
        assert_eq!(
            (e.marker, e.key_type, e.key_b64),
            (None, "ssh-ed25519", "BBBB")
        );
        assert!(Entry::parse("mx ssh-ed25519").is_none());
        assert!(Entry::parse("@revoked mx ssh-ed25519").is_none());
        assert!(Entry::parse("@revoked").is_none());
    }

    #[test]
    fn a_key_is_known_unknown_changed_or_revoked() {
        let session = Session::new().unwrap();
        let (ed1, ed2, rsa) = (
            key("ssh-ed25519", 1),
            key("ssh-ed25519", 2),
            key("ssh-rsa", 3),
        );
        let (dir, k) = known(&line("[mx]:2222", &ed1), "");
        let user = dir.path().join("user");
        assert_eq!(k.check(&session, "mx", 2222, &ed1), Verdict::Known);
        assert_eq!(k.check(&session, "MX", 2222, &ed1), Verdict::Known);
        // Another port, another host: not this entry.
        assert_eq!(k.check(&session, "mx", 22, &ed1), Verdict::Unknown);
        assert_eq!(k.check(&session, "other", 2222, &ed1), Verdict::Unknown);
        assert_eq!(k.check(&session, "mx", 2222, &ed2), changed(&user, 1, &ed1));
        // Known only by another type: changed, naming that entry.
        assert_eq!(k.check(&session, "mx", 2222, &rsa), changed(&user, 1, &ed1));

        // Another type first, then the same type: the same type is named,
        // and the first entry of it.
        let text = [
            line("[mx]:2222", &rsa),
            line("[mx]:2222", &ed1),
            line("[mx]:2222", &key("ssh-ed25519", 4)),
        ]
        .concat();
        let (dir, k) = known(&text, "");
        let user = dir.path().join("user");
        assert_eq!(k.check(&session, "mx", 2222, &ed2), changed(&user, 2, &ed1));
        // A match after a mismatch, in the system file: known.
        let (_dir, k) = known(&line("[mx]:2222", &ed2), &line("[mx]:2222", &ed1));
        assert_eq!(k.check(&session, "mx", 2222, &ed1), Verdict::Known);

        // @revoked anywhere, whatever its patterns, wins over a match;
        // another key's @revoked line and @cert-authority lines change nothing.
        let system = [
            line("@cert-authority [mx]:2222", &ed2),
            line("@revoked other", &rsa),
            line("@revoked *", &ed1),
        ]
        .concat();
        let (dir, k) = known(&line("[mx]:2222", &ed1), &system);
        assert_eq!(
            k.check(&session, "mx", 2222, &ed1),
            Verdict::Revoked {
                file: dir.path().join("system"),
                line: 3
            }
        );
        assert_eq!(
            k.check(&session, "mx", 2222, &ed2),
            changed(&dir.path().join("user"), 1, &ed1)
        );
    }

    #[test]
    fn known_key_types_are_the_hosts_own_in_file_order() {
        let session = Session::new().unwrap();
        let text = [
            line("@cert-authority [mx]:2222", &key("ssh-dss", 9)),
            line("[other]:2222", &key("ecdsa-sha2-nistp256", 5)),
            line("[mx]:2222", &key("ssh-rsa", 1)),
            line("[mx]:2222", &key("ssh-ed25519", 2)),
            line("[mx]:2222", &key("ssh-rsa", 3)),
        ]
        .concat();
        let (_dir, k) = known(&text, "");
        assert_eq!(
            k.known_key_types(&session, "MX", 2222),
            vec!["ssh-rsa".to_string(), "ssh-ed25519".to_string()]
        );
        assert!(k.known_key_types(&session, "mx", 22).is_empty());
        assert!(k.known_key_types(&session, "nobody", 2222).is_empty());
    }

    #[test]
    fn append_records_the_host_lowercased_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let session = Session::new().unwrap();
        let (ed1, ed2) = (key("ssh-ed25519", 1), key("ssh-ed25519", 2));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/ssh/known_hosts");
        let mut k = KnownHosts::read(&path, &[]).unwrap();
        k.append("MX", 2222, &ed1).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            line("[mx]:2222", &ed1)
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(k.check(&session, "mx", 2222, &ed1), Verdict::Known);

        // A file without a final newline gets one; the new line's number
        // is the one a later mismatch names.
        std::fs::write(&path, "# one\nother ssh-rsa AAAA").unwrap();
        let mut k = KnownHosts::read(&path, &[]).unwrap();
        k.append("mx", 22, &ed1).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("# one\nother ssh-rsa AAAA\n{}", line("mx", &ed1))
        );
        assert_eq!(k.check(&session, "mx", 22, &ed2), changed(&path, 3, &ed1));
        let again = KnownHosts::read(&path, &[]).unwrap();
        assert_eq!(
            again.check(&session, "mx", 22, &ed2),
            changed(&path, 3, &ed1)
        );

        // An unwritable place is an error naming the file.
        let blocked = dir.path().join("blocked");
        let mut k = KnownHosts::read(&blocked, &[]).unwrap();
        std::fs::create_dir(&blocked).unwrap();
        assert!(matches!(
            k.append("mx", 22, &ed1),
            Err(SshError::KnownHostsFile {
                action: "write to",
                ..
            })
        ));
    }
}
