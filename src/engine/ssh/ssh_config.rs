//! A small reader for the OpenSSH client config (`~/.ssh/config`), so that an
//! account's `host` may be a Host alias the user already has.
//!
//! Only what a connection target needs is read: `HostName`, `User`, `Port`,
//! `IdentityFile`, `UserKnownHostsFile` (its first file). As in OpenSSH, blocks apply in file order and for each
//! keyword the first value obtained wins (`IdentityFile` accumulates). `Host`
//! patterns may use `*`, `?` and `!negation`. `Include` is followed (paths
//! relative to the including file's directory, `~/`, wildcards in the file
//! name), also inside a `Host` block. `Match` blocks are not evaluated: they
//! never apply.

use std::path::{Path, PathBuf};

use super::SshError;

/// The parsed file: blocks in order.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

/// One `Host` (or leading, global) block.
#[derive(Debug, Clone)]
struct Block {
    /// Patterns of the `Host` line; `None` for a `Match` block (never applies).
    patterns: Option<Vec<String>>,
    /// (lowercased keyword, value) pairs.
    settings: Vec<(String, String)>,
}

/// What `~/.ssh/config` says about one alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// `HostName`, with `%h` expanded to the alias.
    pub hostname: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// Every `IdentityFile`, in order, unexpanded (`~`, `%d`, ... are the
    /// caller's to expand once the user and host are known).
    pub identity_files: Vec<String>,
    /// The first file of `UserKnownHostsFile`, unexpanded.
    pub user_known_hosts_file: Option<String>,
}

impl SshConfig {
    /// The literal `Host` names (no wildcards, no negations), in file order:
    /// what `mailhaul init` offers as hosts.
    pub fn aliases(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for pattern in self
            .blocks
            .iter()
            .filter_map(|b| b.patterns.as_ref())
            .flatten()
        {
            let literal = !pattern.contains(['*', '?', '!']);
            if literal && !out.contains(pattern) {
                out.push(pattern.clone());
            }
        }
        out
    }

    /// `~/.ssh/config` of the current user.
    pub fn default_path() -> Option<PathBuf> {
        directories::BaseDirs::new().map(|b| b.home_dir().join(".ssh").join("config"))
    }

    /// Reads and parses `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<SshConfig, SshError> {
        match std::fs::read_to_string(path) {
            Ok(text) => SshConfig::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SshConfig::default()),
            Err(e) => Err(SshError::SshConfig {
                path: path.to_path_buf(),
                line: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// Parses config text read from `path` (used in errors and to find
    /// `Include`d files).
    pub fn parse(text: &str, path: &Path) -> Result<SshConfig, SshError> {
        let mut blocks = vec![Block {
            patterns: Some(vec!["*".to_string()]),
            settings: Vec::new(),
        }];
        parse_into(&mut blocks, text, path, 0)?;
        Ok(SshConfig { blocks })
    }

    /// The settings that apply to `alias`, OpenSSH's first-value-wins way.
    pub fn resolve(&self, alias: &str) -> HostSettings {
        let mut out = HostSettings::default();
        for block in &self.blocks {
            let Some(patterns) = &block.patterns else {
                continue;
            };
            if !host_matches(alias, patterns) {
                continue;
            }
            for (key, value) in &block.settings {
                match key.as_str() {
                    "hostname" if out.hostname.is_none() => {
                        out.hostname = Some(value.replace("%h", alias).replace("%%", "%"))
                    }
                    "user" if out.user.is_none() => out.user = Some(value.clone()),
                    "port" if out.port.is_none() => out.port = value.parse().ok(),
                    "identityfile" => out.identity_files.push(value.clone()),
                    "userknownhostsfile" if out.user_known_hosts_file.is_none() => {
                        out.user_known_hosts_file = Some(value.clone())
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// How deep `Include`s may nest (OpenSSH's limit).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Parses `text` (read from `path`) onto `blocks`.
fn parse_into(
    blocks: &mut Vec<Block>,
    text: &str,
    path: &Path,
    depth: usize,
) -> Result<(), SshError> {
    let error = |line: usize, message: String| SshError::SshConfig {
        path: path.to_path_buf(),
        line,
        message,
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, value) = split_keyword(line);
        let keyword = keyword.to_ascii_lowercase();
        let words = split_words(value);
        match keyword.as_str() {
            "host" => {
                if words.is_empty() {
                    return Err(error(i + 1, "`Host` needs at least one pattern".into()));
                }
                blocks.push(Block {
                    patterns: Some(words),
                    settings: Vec::new(),
                });
            }
            "match" => blocks.push(Block {
                patterns: None,
                settings: Vec::new(),
            }),
            "include" => {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(error(i + 1, "`Include` nested too deeply".into()));
                }
                let context = blocks.last().and_then(|b| b.patterns.clone());
                for pattern in &words {
                    for file in include_paths(pattern, path) {
                        let text = match std::fs::read_to_string(&file) {
                            Ok(text) => text,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(e) => {
                                return Err(error(
                                    i + 1,
                                    format!("cannot read included {}: {e}", file.display()),
                                ))
                            }
                        };
                        parse_into(blocks, &text, &file, depth + 1)?;
                    }
                }
                // Back in the including block for the lines that follow.
                blocks.push(Block {
                    patterns: context,
                    settings: Vec::new(),
                });
            }
            "port" => {
                let port = words.first().map(String::as_str).unwrap_or("");
                if port.parse::<u16>().is_err() {
                    return Err(error(i + 1, format!("`Port {port}` is not a port number")));
                }
                push(blocks, keyword, port.to_string());
            }
            "hostname" | "user" | "identityfile" | "userknownhostsfile" => {
                if let Some(v) = words.into_iter().next() {
                    push(blocks, keyword, v);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The files an `Include` pattern names: `~/` is the home directory, a
/// relative path is relative to the including file's directory, and `*`/`?`
/// in the file name match (not a leading dot), sorted as glob(3) sorts.
fn include_paths(pattern: &str, including: &Path) -> Vec<PathBuf> {
    let path = match pattern.strip_prefix("~/") {
        Some(rest) => directories::BaseDirs::new()
            .map(|b| b.home_dir().join(rest))
            .unwrap_or_else(|| PathBuf::from(pattern)),
        None if Path::new(pattern).is_absolute() => PathBuf::from(pattern),
        None => including.parent().unwrap_or(Path::new(".")).join(pattern),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && glob(name.as_bytes(), n.as_bytes()))
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

fn push(blocks: &mut [Block], keyword: String, value: String) {
    if let Some(last) = blocks.last_mut() {
        last.settings.push((keyword, value));
    }
}

/// Splits `Keyword value`, `Keyword=value` or `Keyword = value`.
fn split_keyword(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (keyword, rest)
}

/// Whitespace-separated words; double quotes group words and are removed.
fn split_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// Whether `host` matches a `Host` line: some positive pattern matches and
/// no negated one does (case-insensitively, as OpenSSH does).
fn host_matches(host: &str, patterns: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    let mut matched = false;
    for p in patterns {
        let p = p.to_ascii_lowercase();
        if let Some(negated) = p.strip_prefix('!') {
            if glob(negated.as_bytes(), host.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), host.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// `*` matches any run of characters, `?` exactly one.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SshConfig {
        SshConfig::parse(text, Path::new("/home/u/.ssh/config")).unwrap()
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = parse(
            "# mail\nHost mail\n  HostName mx.example.org\n  User bob\n  IdentityFile ~/.ssh/mail\n\
             Host *\n  User nobody\n  Port 2222\n  IdentityFile ~/.ssh/id_ed25519\n",
        );
        assert_eq!(
            c.resolve("mail"),
            HostSettings {
                hostname: Some("mx.example.org".into()),
                user: Some("bob".into()),
                port: Some(2222),
                identity_files: vec!["~/.ssh/mail".into(), "~/.ssh/id_ed25519".into()],
                user_known_hosts_file: None,
            }
        );
        assert_eq!(c.resolve("other").user.as_deref(), Some("nobody"));
        assert_eq!(c.resolve("other").hostname, None);
    }

    #[test]
    fn wildcards_negation_and_equals_syntax() {
        let c = parse(
            "Host *.example.org !bad.example.org\n HostName=%h.internal\nHost mx?\n Port = 2200\n",
        );
        assert_eq!(
            c.resolve("a.example.org").hostname.as_deref(),
            Some("a.example.org.internal")
        );
        assert_eq!(c.resolve("bad.example.org").hostname, None);
        assert_eq!(c.resolve("MX1").port, Some(2200));
        assert_eq!(c.resolve("mx12").port, None);
    }

    #[test]
    fn match_blocks_never_apply_and_quotes_are_removed() {
        let c = parse("Match host x\n User m\nHost \"my host\" x\n User q\n");
        assert_eq!(c.resolve("x").user.as_deref(), Some("q"));
        assert_eq!(c.resolve("my host").user.as_deref(), Some("q"));
    }

    #[test]
    fn settings_before_any_host_apply_everywhere() {
        let c = parse("User early\nHost a\n User late\n");
        assert_eq!(c.resolve("a").user.as_deref(), Some("early"));
    }

    #[test]
    fn aliases_lists_literal_host_names_once() {
        let c = parse("Host mail work\n  User a\nHost *.example.org !x\nHost mail\n  Port 2\n");
        assert_eq!(c.aliases(), vec!["mail".to_string(), "work".to_string()]);
    }

    #[test]
    fn include_is_followed_in_place_and_returns_to_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("config.d")).unwrap();
        std::fs::write(
            d.join("config.d/b.conf"),
            "Host mail\n HostName b.example.org\n",
        )
        .unwrap();
        std::fs::write(
            d.join("config.d/a.conf"),
            "User from-a\nHost other\n User other-user\n",
        )
        .unwrap();
        std::fs::write(d.join("config.d/.hidden.conf"), "Host mail\n Port 1\n").unwrap();
        let main = d.join("config");
        std::fs::write(
            &main,
            "Host mail\n Include config.d/*.conf missing.conf\n Port 2200\n",
        )
        .unwrap();
        let c = SshConfig::load(&main).unwrap();
        let mail = c.resolve("mail");
        // a.conf's leading User belongs to `Host mail`; after the include,
        // Port is back in `Host mail`; .hidden.conf is not matched by `*`.
        assert_eq!(mail.user.as_deref(), Some("from-a"));
        assert_eq!(mail.hostname.as_deref(), Some("b.example.org"));
        assert_eq!(mail.port, Some(2200));
        assert_eq!(c.resolve("other").user.as_deref(), Some("other-user"));
        assert_eq!(c.resolve("other").port, None);

        std::fs::write(&main, "Include config\n").unwrap();
        let e = SshConfig::load(&main).unwrap_err();
        assert!(e.to_string().contains("nested too deeply"), "{e}");
    }

    #[test]
    fn bad_port_names_the_line() {
        let e = SshConfig::parse("Host a\n\n Port ssh\n", Path::new("/c")).unwrap_err();
        assert_eq!(e.to_string(), "/c:3: `Port ssh` is not a port number");
    }

    #[test]
    fn glob_handles_backtracking() {
        assert!(glob(b"*a*b", b"xaxxab"));
        assert!(!glob(b"*a*b", b"xaxxa"));
        assert!(glob(b"**", b""));
        assert!(!glob(b"?", b""));
    }
}
