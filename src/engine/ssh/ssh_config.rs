//! A small reader for the OpenSSH client config (`~/.ssh/config`), so that an
//! account's `host` may be a Host alias the user already has.
//!
//! Only what a connection target needs is read: `HostName`, `User`, `Port`,
//! `IdentityFile`. As in OpenSSH, blocks apply in file order and for each
//! keyword the first value obtained wins (`IdentityFile` accumulates). `Host`
//! patterns may use `*`, `?` and `!negation`. `Match` blocks and `Include`
//! are not evaluated: a `Match` block never applies.

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

    /// Parses config text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SshConfig, SshError> {
        let mut blocks = vec![Block {
            patterns: Some(vec!["*".to_string()]),
            settings: Vec::new(),
        }];
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
                        return Err(SshError::SshConfig {
                            path: path.to_path_buf(),
                            line: i + 1,
                            message: "`Host` needs at least one pattern".into(),
                        });
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
                "port" => {
                    let port = words.first().map(String::as_str).unwrap_or("");
                    if port.parse::<u16>().is_err() {
                        return Err(SshError::SshConfig {
                            path: path.to_path_buf(),
                            line: i + 1,
                            message: format!("`Port {port}` is not a port number"),
                        });
                    }
                    push(&mut blocks, keyword, port.to_string());
                }
                "hostname" | "user" | "identityfile" => {
                    if let Some(v) = words.into_iter().next() {
                        push(&mut blocks, keyword, v);
                    }
                }
                _ => {}
            }
        }
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
                    _ => {}
                }
            }
        }
        out
    }
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
