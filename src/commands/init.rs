//! `mailhaul init`: writes a commented config from a few questions, so that a
//! new user never has to start from an empty file. Answers are read as lines
//! from stdin, so the same code serves a person and a script.

use std::io::{BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::engine::ssh::ssh_config::SshConfig;
use crate::exit::Exit;

/// The answers that shape a new config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    /// Account name.
    pub name: String,
    /// Host name or `~/.ssh/config` alias.
    pub host: String,
    /// Login name, when it differs from the alias's or the local one.
    pub user: Option<String>,
    /// Maildir root.
    pub maildir: PathBuf,
}

/// Asks one question; an empty answer takes `default`.
fn question(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    prompt: &str,
    default: &str,
) -> std::io::Result<String> {
    if default.is_empty() {
        write!(out, "{prompt}: ")?;
    } else {
        write!(out, "{prompt} [{default}]: ")?;
    }
    out.flush()?;
    let mut answer = String::new();
    if input.read_line(&mut answer)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "input ended before every question was answered",
        ));
    }
    let answer = answer.trim();
    Ok(if answer.is_empty() { default } else { answer }.to_string())
}

/// Picks `choices[n-1]` when `answer` is a number in range.
fn numbered<T: Clone>(answer: &str, choices: &[T]) -> Option<T> {
    let n = answer.parse::<usize>().ok()?;
    n.checked_sub(1).and_then(|i| choices.get(i)).cloned()
}

/// Asks the questions on `out`, reads answers from `input`, and returns them.
pub fn ask(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    aliases: &[String],
    maildir_choices: &[PathBuf],
) -> std::io::Result<Answers> {
    if !aliases.is_empty() {
        writeln!(out, "Host aliases in ~/.ssh/config:")?;
        for (i, a) in aliases.iter().enumerate() {
            writeln!(out, "  {}) {a}", i + 1)?;
        }
    }
    let host = loop {
        let answer = question(
            input,
            out,
            "Mail server (host name, or an alias or its number)",
            "",
        )?;
        if let Some(alias) = numbered(&answer, aliases) {
            break alias;
        }
        if !answer.is_empty() {
            break answer;
        }
    };
    let default_name = host.split('.').next().unwrap_or("mail").to_string();
    let name = question(input, out, "Account name", &default_name)?;
    let user = question(
        input,
        out,
        "Login name on the server (empty: the alias's User, else yours)",
        "",
    )?;
    writeln!(out, "Where should your mail be filed?")?;
    for (i, p) in maildir_choices.iter().enumerate() {
        writeln!(out, "  {}) {}", i + 1, p.display())?;
    }
    let maildir = question(input, out, "Maildir (a number or a path)", "1")?;
    let maildir = numbered(&maildir, maildir_choices).unwrap_or_else(|| PathBuf::from(maildir));
    Ok(Answers {
        name,
        host,
        user: (!user.is_empty()).then_some(user),
        maildir,
    })
}

/// Renders the commented config for `answers`, from the shipped example.
pub fn render(answers: &Answers) -> String {
    let example = include_str!("../../assets/config.example.toml");
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    for line in example.lines() {
        let replaced = if line.starts_with("maildir = ") {
            format!("maildir = {}", quoted(&answers.maildir.to_string_lossy()))
        } else if line.starts_with("name = \"work\"") {
            format!("name = {}", quoted(&answers.name))
        } else if line.starts_with("host = ") {
            format!("host = {}", quoted(&answers.host))
        } else if line.starts_with("# user = ") {
            match &answers.user {
                Some(user) => format!("user = {}", quoted(user)),
                None => line.to_string(),
            }
        } else {
            line.to_string()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

/// The Maildir roots offered: `~/Maildir` and one under the XDG data dir.
pub fn maildir_choices() -> Vec<PathBuf> {
    let mut choices = Vec::new();
    if let Some(base) = directories::BaseDirs::new() {
        choices.push(base.home_dir().join("Maildir"));
    }
    if let Some(dirs) = directories::ProjectDirs::from("", "", "mailhaul") {
        choices.push(dirs.data_dir().join("Maildir"));
    }
    choices
}

/// Writes `text` to `path` with mode 0600 (also when it replaces a file of
/// another mode), creating the directory (0700); never overwrites an
/// existing config unless `force`.
pub fn write_config(path: &Path, text: &str, force: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path)?;
    // `mode` only applies to a new file: a replaced one keeps its mode
    // unless it is set here (before the new text is in it).
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// `mailhaul init [--force]`.
pub fn run(config_path: Option<&Path>, force: bool) -> Exit {
    let Some(path) = config_path
        .map(Path::to_path_buf)
        .or_else(Config::default_path)
    else {
        eprintln!("mailhaul: no home directory; pass --config FILE");
        return Exit::Config;
    };
    if path.exists() && !force {
        eprintln!(
            "mailhaul: {} exists; edit it, or run `mailhaul init --force` to replace it",
            path.display()
        );
        return Exit::Config;
    }
    let aliases = SshConfig::default_path()
        .and_then(|p| SshConfig::load(&p).ok())
        .map(|c| c.aliases())
        .unwrap_or_default();
    let stdin = std::io::stdin();
    let answers = match ask(
        &mut stdin.lock(),
        &mut std::io::stdout(),
        &aliases,
        &maildir_choices(),
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mailhaul: {e}");
            return Exit::Usage;
        }
    };
    let text = render(&answers);
    if let Err(e) = Config::parse(&text, &path) {
        eprintln!("mailhaul: these answers do not make a valid config: {e}");
        return Exit::Config;
    }
    if let Err(e) = write_config(&path, &text, force) {
        eprintln!("mailhaul: cannot write {}: {e}", path.display());
        return Exit::Failure;
    }
    println!(
        "Wrote {}. Next: `mailhaul check {}` to test the connection.",
        path.display(),
        answers.name
    );
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_by_number_and_defaults_make_a_valid_config() {
        let aliases = vec!["mailbox".to_string(), "work".to_string()];
        let choices = vec![
            PathBuf::from("/home/a/Maildir"),
            PathBuf::from("/x/Maildir"),
        ];
        let mut input: &[u8] = b"2\n\nalice\n2\n";
        let mut out = Vec::new();
        let a = ask(&mut input, &mut out, &aliases, &choices).unwrap();
        assert_eq!(
            a,
            Answers {
                name: "work".into(),
                host: "work".into(),
                user: Some("alice".into()),
                maildir: "/x/Maildir".into(),
            }
        );
        let shown = String::from_utf8(out).unwrap();
        assert!(shown.contains("2) work"), "{shown}");
        let c = Config::parse(&render(&a), Path::new("new.toml")).unwrap();
        assert_eq!(c.accounts[0].host, "work");
        assert_eq!(c.accounts[0].user.as_deref(), Some("alice"));
        assert_eq!(c.general.maildir, Some(PathBuf::from("/x/Maildir")));
    }

    #[test]
    fn odd_characters_are_quoted_and_an_early_end_is_an_error() {
        let mut input: &[u8] = b"mail.example.org\nmy \"box\"\n\n/tmp/m\\d\n";
        let a = ask(&mut input, &mut Vec::new(), &[], &[]).unwrap();
        let c = Config::parse(&render(&a), Path::new("n.toml")).unwrap();
        assert_eq!(c.accounts[0].name, "my \"box\"");
        assert_eq!(c.general.maildir, Some(PathBuf::from("/tmp/m\\d")));
        let mut short: &[u8] = b"host\n";
        assert!(ask(&mut short, &mut Vec::new(), &[], &[]).is_err());
    }

    #[test]
    fn write_config_is_private_and_never_clobbers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        write_config(&path, "a = 1\n", false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_config(&path, "b = 2\n", false).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 1\n");
        write_config(&path, "b = 2\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b = 2\n");
    }

    /// `init --force` over a config another tool left world-readable makes
    /// it private again.
    #[test]
    fn forced_write_makes_an_open_config_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "old = 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_config(&path, "new = 1\n", true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new = 1\n");
    }
}
