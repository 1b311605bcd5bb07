//! What every subcommand starts from: the config (from `--config`, else the
//! default place), the accounts the command line names, and the Maildir
//! root each files into. One place, so that every command says the same
//! thing, with the same exit code, about a missing config, a config without
//! accounts, or an unknown account name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::engine::account::{expand_tilde, Account};
use crate::exit::Exit;

/// The loaded configuration of one run of a subcommand.
pub struct Context {
    /// The config, shared with worker threads.
    pub config: Arc<Config>,
}

impl Context {
    /// Loads the config from `path`, else from the default place; prints the
    /// error (file, line and key, or the hint to run `mailhaul init`) and
    /// answers [`Exit::Config`] when it cannot.
    pub fn load(path: Option<&Path>) -> Result<Context, Exit> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => Config::default_path().ok_or_else(|| {
                eprintln!("mailhaul: cannot find the config directory (no home directory?)");
                Exit::Config
            })?,
        };
        Self::read(&path)
    }

    /// Like [`Context::load`], but without `path` and without a config at
    /// the default place, the defaults (for `filter`, which needs no account).
    pub fn load_or_defaults(path: Option<&Path>) -> Result<Context, Exit> {
        match path {
            Some(p) => Self::read(p),
            None => match Config::default_path() {
                Some(p) if p.exists() => Self::read(&p),
                _ => Ok(Context {
                    config: Arc::new(Config::default()),
                }),
            },
        }
    }

    fn read(path: &Path) -> Result<Context, Exit> {
        match Config::load(path) {
            Ok(config) => Ok(Context {
                config: Arc::new(config),
            }),
            Err(e) => {
                eprintln!("mailhaul: {e}");
                Err(Exit::Config)
            }
        }
    }

    /// The accounts named on the command line, or all of them. A config
    /// without accounts is a config error ([`Exit::Config`]); an unknown
    /// name a usage error ([`Exit::Usage`]).
    pub fn accounts(&self, names: &[String]) -> Result<Vec<Account>, Exit> {
        let config = &self.config;
        if config.accounts.is_empty() {
            eprintln!("mailhaul: the config has no [[account]]");
            return Err(Exit::Config);
        }
        if names.is_empty() {
            return Ok(config.accounts.clone());
        }
        names
            .iter()
            .map(|n| {
                config.account(n).cloned().ok_or_else(|| {
                    let known: Vec<&str> =
                        config.accounts.iter().map(|a| a.name.as_str()).collect();
                    eprintln!(
                        "mailhaul: no account named `{n}` (known: {})",
                        known.join(", ")
                    );
                    Exit::Usage
                })
            })
            .collect()
    }

    /// The account named, or the config's first one.
    pub fn account_or_first(&self, name: Option<&str>) -> Result<Account, Exit> {
        let names: Vec<String> = name.into_iter().map(str::to_string).collect();
        Ok(self.accounts(&names)?.swap_remove(0))
    }

    /// The Maildir root to file into: `over` (a command-line override) when
    /// given, else the account's own, else `general.maildir`, else `~/Maildir`.
    pub fn maildir_root(&self, over: Option<&Path>, account: Option<&Account>) -> PathBuf {
        match (over, account) {
            (Some(dir), _) => expand_tilde(dir),
            (None, Some(a)) => self.config.maildir_root(a),
            (None, None) => expand_tilde(
                self.config
                    .general
                    .maildir
                    .as_deref()
                    .unwrap_or(Path::new("~/Maildir")),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(text: &str) -> Context {
        Context {
            config: Arc::new(Config::parse(text, Path::new("c")).unwrap()),
        }
    }

    #[test]
    fn accounts_are_picked_by_name_or_all_or_first() {
        let c = context(
            "[[account]]\nname = \"a\"\nhost = \"h\"\n[[account]]\nname = \"b\"\nhost = \"h\"\n",
        );
        assert_eq!(c.account_or_first(None).unwrap().name, "a");
        assert_eq!(c.account_or_first(Some("b")).unwrap().name, "b");
        assert_eq!(c.account_or_first(Some("x")).unwrap_err(), Exit::Usage);
        assert_eq!(c.accounts(&[]).unwrap().len(), 2);
    }

    #[test]
    fn a_config_without_accounts_is_a_config_error() {
        let c = context("[general]\ncheck_interval = 5\n");
        assert_eq!(c.accounts(&[]).unwrap_err(), Exit::Config);
        assert_eq!(c.account_or_first(None).unwrap_err(), Exit::Config);
    }

    #[test]
    fn the_maildir_root_is_the_override_then_the_account_then_general() {
        let c = context(
            "[general]\nmaildir = \"/g\"\n[[account]]\nname = \"a\"\nhost = \"h\"\nmaildir = \"/a\"\n\
             [[account]]\nname = \"b\"\nhost = \"h\"\n",
        );
        let accounts = c.accounts(&[]).unwrap();
        assert_eq!(
            c.maildir_root(Some(Path::new("/o")), Some(&accounts[0])),
            Path::new("/o")
        );
        assert_eq!(c.maildir_root(None, Some(&accounts[0])), Path::new("/a"));
        assert_eq!(c.maildir_root(None, Some(&accounts[1])), Path::new("/g"));
        assert_eq!(c.maildir_root(None, None), Path::new("/g"));
    }
}
