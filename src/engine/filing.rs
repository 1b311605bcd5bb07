//! The settings of filing, as the `[filter]` section of the config gives
//! them: the mbox dialect, the folder layout, the default target, durability
//! and the rules. The engine owns these types; `config` deserialises the
//! file into them, and code that files mail (`mailhaul filter`, a fetch's
//! delivery) takes them from here.

use serde::Deserialize;
use toml::Spanned;

/// Messages made durable together before they appear in `new/` (see
/// `deliver::Filer::should_commit`), unless `filter.batch` says otherwise.
pub const DEFAULT_BATCH: usize = 1024;

/// Where fetched messages go: the Maildir root and the filter settings
/// that choose folders under it (or other targets).
#[derive(Debug, Clone)]
pub struct Destination {
    /// How messages are split and filed.
    pub filter: std::sync::Arc<FilterConfig>,
    /// The Maildir root folders are under (`~` already expanded).
    pub maildir: std::path::PathBuf,
}

/// The mbox dialect of the input: how `>From ` lines in bodies are quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MboxFormat {
    /// Only `From ` is quoted, as `>From `; quoting is never undone (Postfix,
    /// procmail and most MTAs on Debian write this).
    #[default]
    Mboxo,
    /// Every `>*From ` line got one more `>`; one is removed on reading.
    Mboxrd,
}

/// How folder names map onto directories under the Maildir root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderLayout {
    /// Maildir++ as Dovecot and Courier use it: `INBOX` is the root itself,
    /// folder `a/b` is the directory `.a.b`.
    #[default]
    #[serde(rename = "maildir++")]
    MaildirPlusPlus,
    /// Every folder is its own directory path under the root (`a/b`), as
    /// mutt, neomutt and notmuch users often lay them out; `INBOX` is `INBOX`.
    Nested,
}

/// The split-and-file pipeline's settings and rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Dialect of the spool being split.
    pub format: MboxFormat,
    /// How folder names become directories.
    pub layout: FolderLayout,
    /// Folder for messages no rule matches.
    pub default_folder: String,
    /// If set, messages no rule matches are piped to this command instead.
    pub default_mda: Option<Vec<String>>,
    /// fsync every delivered file and its directory (the maildir spec's
    /// durability); off only for benchmarks or throwaway imports.
    pub fsync: bool,
    /// How many messages are made durable together (one `syncfs` per batch
    /// before they appear in `new/`); 1 fsyncs each message.
    pub batch: usize,
    /// The rules, first match wins.
    #[serde(rename = "rule")]
    pub rules: Vec<Spanned<RuleConfig>>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            format: MboxFormat::Mboxo,
            layout: FolderLayout::MaildirPlusPlus,
            default_folder: "INBOX".to_string(),
            default_mda: None,
            fsync: true,
            batch: DEFAULT_BATCH,
            rules: Vec::new(),
        }
    }
}

/// One filter rule as written in the config; `engine::rules` compiles it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A label for logs; defaults to the rule's position.
    pub name: Option<String>,
    /// Header to test (case-insensitive), with `contains` or `regex`.
    pub header: Option<String>,
    /// Case-insensitive substring the header value must contain.
    pub contains: Option<String>,
    /// Regular expression the header value must match.
    pub regex: Option<Spanned<String>>,
    /// Matches messages larger than this many bytes.
    pub size_over: Option<u64>,
    /// Matches messages smaller than this many bytes.
    pub size_under: Option<u64>,
    /// Folder to file a matching message into.
    pub folder: Option<String>,
    /// Command (argv) to pipe a matching message to instead.
    pub mda: Option<Vec<String>>,
}

/// The `[filter]` section of a config text, read as `config` reads it (for
/// the engine's unit tests, which must not depend on `config`).
#[cfg(test)]
pub(crate) fn filter_section(text: &str) -> FilterConfig {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        filter: FilterConfig,
    }
    toml::from_str::<File>(text)
        .expect("a valid [filter] section")
        .filter
}
