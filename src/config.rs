//! The TOML configuration: accounts, filter rules and defaults.
//!
//! It lives in the XDG config dir (`directories`), `--config FILE` overrides
//! it. Every error names the file, the line and the key, so that a user can go
//! straight to the mistake. Passwords never appear here: authentication uses
//! the ssh-agent, key files, and a passphrase *command*.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::account::{expand_tilde, Account};
use crate::engine::filing::{Destination, FilterConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings shared by all accounts.
    #[serde(default)]
    pub general: General,
    /// How fetched mail is split and filed.
    #[serde(default)]
    pub filter: FilterConfig,
    /// The dashboard's settings.
    #[serde(default)]
    pub ui: UiSettings,
    /// The mail servers to fetch from, in the order they are shown.
    #[serde(default, rename = "account")]
    pub accounts: Vec<Account>,
}

/// Settings shared by all accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// Maildir root that mail is filed under (`~` is expanded).
    pub maildir: Option<PathBuf>,
    /// Seconds between spool-size checks in the dashboard.
    pub check_interval: u64,
}

impl Default for General {
    fn default() -> Self {
        General {
            maildir: None,
            check_interval: 60,
        }
    }
}

/// The dashboard's settings (`[ui]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiSettings {
    /// Ring the terminal bell when a fetch files new mail.
    pub bell_on_new_mail: bool,
    /// Put the count of new mail filed since the dashboard started into the
    /// terminal's window title (`mailhaul: N new`).
    pub title_on_new_mail: bool,
}

/// A config error, naming the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// The key (dotted path) at fault, or `-` when TOML itself is broken.
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// No config file exists at the default place.
    #[error("no config at {0}; run `mailhaul init` to write one, or pass --config FILE")]
    Missing(PathBuf),
}

impl Config {
    /// The default config path: `$XDG_CONFIG_HOME/mailhaul/config.toml`.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "mailhaul")
            .map(|d| d.config_dir().join("config.toml"))
    }

    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound
                && Some(path) == Self::default_path().as_deref()
            {
                ConfigError::Missing(path.to_path_buf())
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line: span.map_or(1, |s| line_of(text, s.start)),
                key,
                message,
            }
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            let key = key_at(text, e.span());
            invalid(e.span(), key, e.message().trim().to_string())
        })?;
        config.validate(text, path)?;
        Ok(config)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |span: std::ops::Range<usize>, key: String, message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: line_of(text, span.start),
                key,
                message,
            };
        if self.filter.batch == 0 {
            let at = text.find("batch").unwrap_or(0);
            return Err(invalid(
                at..at,
                "filter.batch".into(),
                "must be at least 1 (1 fsyncs every message)".into(),
            ));
        }
        for (i, rule) in self.filter.rules.iter().enumerate() {
            let key = format!("filter.rule[{i}]");
            let r = rule.get_ref();
            if let Some(re) = &r.regex {
                if let Err(e) = regex::Regex::new(re.get_ref()) {
                    return Err(invalid(re.span(), format!("{key}.regex"), e.to_string()));
                }
            }
            let tests = usize::from(r.header.is_some())
                + usize::from(r.size_over.is_some())
                + usize::from(r.size_under.is_some());
            if tests == 0 {
                return Err(invalid(
                    rule.span(),
                    key,
                    "a rule needs `header` (with `contains` or `regex`), `size_over` or `size_under`"
                        .into(),
                ));
            }
            if r.header.is_some() && (r.contains.is_some() == r.regex.is_some()) {
                return Err(invalid(
                    rule.span(),
                    format!("{key}.header"),
                    "give exactly one of `contains` or `regex` with `header`".into(),
                ));
            }
            if r.folder.is_some() == r.mda.is_some() {
                return Err(invalid(
                    rule.span(),
                    key,
                    "a rule needs exactly one target: `folder` or `mda`".into(),
                ));
            }
            if r.mda.as_ref().is_some_and(|m| m.is_empty()) {
                return Err(invalid(
                    rule.span(),
                    format!("{key}.mda"),
                    "empty command".into(),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, a) in self.accounts.iter().enumerate() {
            let key = format!("account[{i}]");
            if let Err(why) = check_account_name(&a.name) {
                let at = account_key_offset(text, i, "name")
                    .or_else(|| text.find(&format!("\"{}\"", a.name)))
                    .unwrap_or(0);
                return Err(invalid(at..at, format!("{key}.name"), why));
            }
            if !names.insert(a.name.as_str()) {
                let at = text.find(&format!("\"{}\"", a.name)).unwrap_or(0);
                return Err(invalid(
                    at..at,
                    format!("{key}.name"),
                    format!("duplicate account name `{}`", a.name),
                ));
            }
            if let Some(hook) = &a.on_new_mail {
                if hook
                    .get_ref()
                    .first()
                    .is_none_or(|program| program.is_empty())
                {
                    return Err(invalid(
                        hook.span(),
                        format!("{key}.on_new_mail"),
                        "empty command: give the program and its arguments, e.g. \
                         [\"notify-send\", \"new mail\"]"
                            .into(),
                    ));
                }
            }
            let listen = &a.forward.listen;
            match listen.get_ref().parse::<std::net::SocketAddr>() {
                Err(e) => {
                    return Err(invalid(
                        listen.span(),
                        format!("{key}.forward.listen"),
                        format!("`{}` is not an address:port ({e})", listen.get_ref()),
                    ))
                }
                Ok(addr) if !addr.ip().is_loopback() && !a.forward.allow_non_loopback => {
                    return Err(invalid(
                        listen.span(),
                        format!("{key}.forward.listen"),
                        format!(
                            "{addr} is not a loopback address; set `allow_non_loopback = true` \
                             to let other machines use this forward"
                        ),
                    ))
                }
                Ok(_) => {}
            }
            if let Err(e) = crate::engine::tunnel::forward_target(a) {
                let at = account_key_offset(text, i, "target").unwrap_or(0);
                return Err(invalid(
                    at..at,
                    format!("{key}.forward.target"),
                    format!("{e}: give it as host:port, e.g. \"localhost:587\""),
                ));
            }
        }
        Ok(())
    }

    /// The Maildir root mail of `account` is filed under: its own, else
    /// `general.maildir`, else `~/Maildir`.
    pub fn maildir_root(&self, account: &Account) -> PathBuf {
        let root = account
            .maildir
            .clone()
            .or_else(|| self.general.maildir.clone())
            .unwrap_or_else(|| PathBuf::from("~/Maildir"));
        expand_tilde(&root)
    }

    /// Where a fetch of `account` files its messages.
    pub fn destination(&self, account: &Account) -> Destination {
        Destination {
            filter: std::sync::Arc::new(self.filter.clone()),
            maildir: self.maildir_root(account),
        }
    }

    /// The account with this name.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

/// Checks an account name: it names the account's directory under the data
/// dir (journal, staging) and appears in terminal output, so it must be one
/// plain path component without control characters: not empty, not `.` or
/// `..`, no `/` or NUL, at most 255 bytes.
pub fn check_account_name(name: &str) -> Result<(), String> {
    let quoted = name.escape_debug();
    if name.is_empty() {
        Err("an account name must not be empty".into())
    } else if name == "." || name == ".." {
        Err(format!(
            "`{quoted}` cannot be an account name (it names the account's data directory)"
        ))
    } else if name.contains('/') {
        Err(format!(
            "`{quoted}`: an account name must not contain `/` (it names the account's data directory)"
        ))
    } else if name.chars().any(char::is_control) {
        Err(format!(
            "`{quoted}`: an account name must not contain control characters"
        ))
    } else if name.len() > 255 {
        Err("an account name must be at most 255 bytes long".into())
    } else {
        Ok(())
    }
}

/// The byte offset of `key = ...` in the `index`-th `[[account]]` table of
/// `text`, when it is written there as a plain key.
fn account_key_offset(text: &str, index: usize, key: &str) -> Option<usize> {
    let mut offset = 0;
    let mut table = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("[[account]]") {
            table = Some(table.map_or(0, |t| t + 1));
        } else if trimmed.starts_with('[') {
            if table == Some(index) && !trimmed.starts_with("[account.") {
                return None;
            }
        } else if table == Some(index)
            && trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key on the line at `span`, or `-` when none can be read.
fn key_at(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else { return "-".into() };
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').to_string());
    match line.split_once('=') {
        Some((k, _)) => match table {
            Some(t) => format!("{t}.{}", k.trim()),
            None => k.trim().to_string(),
        },
        None => table.unwrap_or_else(|| "-".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::account::{TransportCompression, ZstdLevel};

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("/x/config.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn empty_config_files_everything_into_inbox() {
        let c = Config::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c.filter.default_folder, "INBOX");
        assert!(c.filter.rules.is_empty());
        assert!(c.filter.fsync);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err("[general]\ncheck_interval = 5\n\n[[account]]\nname = \"a\"\nhots = \"x\"\n");
        assert!(e.starts_with("/x/config.toml:6: account.hots:"), "{e}");
        assert!(e.contains("unknown field `hots`"), "{e}");
    }

    #[test]
    fn account_names_that_are_not_one_path_component_are_refused() {
        let config = |name: &str| {
            format!(
                "[general]\ncheck_interval = 5\n\n[[account]]\nname = \"ok\"\nhost = \"h\"\n\n\
                 [[account]]\nhost = \"h\"\n  name = {}\n",
                toml::Value::String(name.into())
            )
        };
        for bad in [
            "../../..",
            "..",
            ".",
            "",
            "a/b",
            "/etc",
            "x\u{1b}[2Jy",
            "nul\0",
        ] {
            let e = err(&config(bad));
            assert!(
                e.starts_with("/x/config.toml:10: account[1].name:"),
                "{bad:?}: {e}"
            );
        }
        assert!(err(&config("../../..")).contains("`/`"));
        assert!(
            err(&config("x\u{1b}y")).contains("\\u{1b}"),
            "escaped in the message"
        );
        for good in ["work", "my \"box\"", "büro", "a.b-c@d", "...x"] {
            Config::parse(&config(good), Path::new("c")).unwrap();
        }
    }

    #[test]
    fn bad_regex_names_its_line() {
        let e = err("[[filter.rule]]\nheader = \"Subject\"\nregex = \"(\"\nfolder = \"x\"\n");
        assert!(
            e.starts_with("/x/config.toml:3: filter.rule[0].regex:"),
            "{e}"
        );
    }

    #[test]
    fn rule_without_target_is_refused() {
        let e = err("[[filter.rule]]\nheader = \"Subject\"\ncontains = \"x\"\n");
        assert!(e.contains("exactly one target"), "{e}");
    }

    #[test]
    fn non_loopback_listen_needs_explicit_setting() {
        let base = "[[account]]\nname = \"a\"\nhost = \"h\"\n[account.forward]\nlisten = \"0.0.0.0:2525\"\n";
        let e = err(base);
        assert!(
            e.starts_with("/x/config.toml:5: account[0].forward.listen:"),
            "{e}"
        );
        let ok = format!("{base}allow_non_loopback = true\n");
        assert!(Config::parse(&ok, Path::new("c")).is_ok());
    }

    #[test]
    fn forward_compression_is_zlib_huffman_or_off() {
        let forward = |line: &str| {
            format!("[[account]]\nname = \"a\"\nhost = \"h\"\n[account.forward]\n{line}\n")
        };
        let compression = |line: &str| {
            Config::parse(&forward(line), Path::new("c"))
                .unwrap()
                .accounts[0]
                .forward
                .compression
        };
        assert_eq!(compression(""), TransportCompression::Zlib);
        assert_eq!(
            compression("compression = \"zlib\""),
            TransportCompression::Zlib
        );
        assert_eq!(
            compression("compression = \"huffman\""),
            TransportCompression::Huffman
        );
        assert_eq!(
            compression("compression = \"off\""),
            TransportCompression::Off
        );
        let e = err(&forward("compression = \"zstd\""));
        assert!(
            e.starts_with("/x/config.toml:5: account.forward.compression:"),
            "{e}"
        );
        assert!(e.contains("`zlib`, `huffman`, `off`"), "{e}");
        let e = err(&forward("compression = true"));
        assert!(
            e.starts_with("/x/config.toml:5: account.forward.compression:"),
            "{e}"
        );
    }

    #[test]
    fn send_is_sendmail_or_smtp_and_the_target_host_port() {
        use crate::engine::account::SendVia;
        let account = |lines: &str| format!("[[account]]\nname = \"a\"\nhost = \"h\"\n{lines}\n");
        let send = |lines: &str| {
            Config::parse(&account(lines), Path::new("c"))
                .unwrap()
                .accounts[0]
                .send
        };
        assert_eq!(send(""), SendVia::Sendmail);
        assert_eq!(send("send = \"sendmail\""), SendVia::Sendmail);
        assert_eq!(send("send = \"smtp\""), SendVia::Smtp);
        let e = err(&account("send = \"smtps\""));
        assert!(e.starts_with("/x/config.toml:4: account.send:"), "{e}");
        assert!(e.contains("expected `sendmail` or `smtp`"), "{e}");
        let e = err(&account(
            "send = \"smtp\"\n[account.forward]\ntarget = \"mail.example.org\"",
        ));
        assert!(
            e.starts_with("/x/config.toml:6: account[0].forward.target:"),
            "{e}"
        );
        assert!(e.contains("is not host:port"), "{e}");
        assert_eq!(
            Config::parse(
                &account("send = \"smtp\"\n[account.forward]\ntarget = \"[::1]:587\""),
                Path::new("c")
            )
            .unwrap()
            .accounts[0]
                .forward
                .target
                .as_deref(),
            Some("[::1]:587")
        );
    }

    #[test]
    fn zstd_level_is_a_level_or_adapt() {
        let account = |value: &str| {
            format!("[[account]]\nname = \"a\"\nhost = \"h\"\nzstd_level = {value}\n")
        };
        let level = |value: &str| {
            Config::parse(&account(value), Path::new("c"))
                .unwrap()
                .accounts[0]
                .zstd_level
        };
        assert_eq!(level("9"), Some(ZstdLevel::Fixed(9)));
        assert_eq!(level("\"adapt\""), Some(ZstdLevel::Adapt));
        let e = err(&account("40"));
        assert!(
            e.starts_with("/x/config.toml:4: account.zstd_level:"),
            "{e}"
        );
        assert!(e.contains("1 to 19"), "{e}");
        let e = err(&account("\"fast\""));
        assert!(
            e.starts_with("/x/config.toml:4: account.zstd_level:"),
            "{e}"
        );
        assert!(e.contains("\"adapt\""), "{e}");
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let text = include_str!("../assets/config.example.toml");
        let c = Config::parse(text, Path::new("assets/config.example.toml")).unwrap();
        assert_eq!(c.accounts.len(), 1);
        assert_eq!(c.filter.rules.len(), 2);
    }

    #[test]
    fn batch_of_zero_is_refused_with_its_line() {
        let e = err("[filter]\nfsync = true\nbatch = 0\n");
        assert!(e.starts_with("/x/config.toml:3: filter.batch:"), "{e}");
    }

    #[test]
    fn ui_keys_are_read_and_checked() {
        let c = Config::parse(
            "[ui]\nbell_on_new_mail = true\ntitle_on_new_mail = true\n",
            Path::new("/x/config.toml"),
        )
        .unwrap();
        assert!(c.ui.bell_on_new_mail && c.ui.title_on_new_mail);
        let c = Config::parse("", Path::new("/x/config.toml")).unwrap();
        assert!(!c.ui.bell_on_new_mail && !c.ui.title_on_new_mail);
        let e = err("[general]\ncheck_interval = 5\n\n[ui]\nbell_on_new_mail = \"yes\"\n");
        assert!(
            e.starts_with("/x/config.toml:5: ui.bell_on_new_mail:"),
            "{e}"
        );
        let e = err("[ui]\ntitle_on_new_mail = true\nbell = true\n");
        assert!(e.starts_with("/x/config.toml:3: ui.bell:"), "{e}");
        assert!(
            e.contains("bell_on_new_mail"),
            "names the keys there are: {e}"
        );
    }

    #[test]
    fn type_error_names_the_key() {
        let e = err("[general]\ncheck_interval = \"soon\"\n");
        assert!(
            e.starts_with("/x/config.toml:2: general.check_interval:"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_new_mail_hook_is_refused_with_its_line() {
        let e = err("[[account]]\nname = \"a\"\nhost = \"h\"\non_new_mail = []\n");
        assert!(
            e.starts_with("/x/config.toml:4: account[0].on_new_mail: empty command"),
            "{e}"
        );
        let e = err("[[account]]\nname = \"a\"\nhost = \"h\"\non_new_mail = \"notify-send\"\n");
        assert!(
            e.starts_with("/x/config.toml:4: account.on_new_mail:"),
            "{e}"
        );
        let ok = "[[account]]\nname = \"a\"\nhost = \"h\"\non_new_mail = [\"true\"]\n";
        let c = Config::parse(ok, Path::new("/x/config.toml")).unwrap();
        let hook = c.accounts[0].on_new_mail.as_ref().unwrap();
        assert_eq!(hook.get_ref(), &vec!["true".to_string()]);
    }
}
