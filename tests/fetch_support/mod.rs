//! Helpers shared by the fetch tests: a config for an account on the test
//! sshd, running the real `mailhaul` binary in an isolated home, real mail
//! to put into spools, and reading back what was filed.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use md5::{Digest, Md5};

use crate::common::{TestSshd, TestUser};

pub mod send;
pub mod watch;

/// One isolated mailhaul installation: HOME, XDG dirs, config and Maildir.
pub struct Client {
    /// Holds everything; removed on drop.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
    /// The Maildir root mail is filed under.
    pub maildir: PathBuf,
}

impl Client {
    /// A client whose only account `acct` logs in to `sshd` as `user`;
    /// `extra` is appended to the account table (e.g. `spool = "..."`).
    pub fn new(sshd: &TestSshd, user: &str, extra: &str) -> Client {
        Client::with_known_hosts(sshd, user, &sshd.known_hosts, extra)
    }

    /// As [`Client::new`], trusting the given known_hosts file.
    pub fn with_known_hosts(
        sshd: &TestSshd,
        user: &str,
        known_hosts: &Path,
        extra: &str,
    ) -> Client {
        let dir = tempfile::Builder::new()
            .prefix("mailhaul-client.")
            .tempdir()
            .unwrap();
        let maildir = dir.path().join("Maildir");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[general]\nmaildir = {maildir:?}\n\n[filter]\nformat = \"mboxo\"\n\
                 # Small batches: a delivery killed midway has filed some.\n\
                 batch = 64\n\n\
                 [[account]]\nname = \"acct\"\nhost = \"127.0.0.1\"\nport = {port}\n\
                 user = {user:?}\nidentity_file = {key:?}\nuse_agent = false\n\
                 known_hosts_file = {known_hosts:?}\n{lock}{extra}\n",
                port = sshd.port,
                key = sshd.key,
                // Short, so that the busy-lock test is quick; `extra` may set it.
                lock = if extra.contains("lock_timeout") {
                    ""
                } else {
                    "lock_timeout = 3\n"
                },
            ),
        )
        .unwrap();
        Client {
            dir,
            config,
            maildir,
        }
    }

    /// Replaces `[filter]`'s format line (the corpus is mboxrd).
    pub fn set_format(&self, format: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(
            &self.config,
            text.replace("format = \"mboxo\"", &format!("format = {format:?}")),
        )
        .unwrap();
    }

    /// The data dir (journal, staging, history).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data/mailhaul")
    }

    /// Makes the account log in on loopback `port` instead of `sshd`'s own
    /// (a proxy, a gate or a dead port in front of it), for the tests of a
    /// link that drops or is down.
    pub fn connect_on_port(&self, sshd: &TestSshd, port: u16) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(
            &self.config,
            text.replace(&format!("port = {}", sshd.port), &format!("port = {port}")),
        )
        .unwrap();
    }

    /// A `mailhaul` command in this client's isolated environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailhaul"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("MAILHAUL_TEST_CRASH_AT")
            .env_remove("MAILHAUL_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `mailhaul ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `mailhaul fetch` with the crash point set; asserts it was killed.
    pub fn fetch_crashing_at(&self, point: &str) {
        let out = self
            .command(&["fetch"])
            .env("MAILHAUL_TEST_CRASH_AT", point)
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(9),
            "expected a SIGKILL at {point}: {}",
            describe(&out)
        );
    }

    /// The md5 of every filed message (all folders), sorted.
    pub fn filed_md5s(&self) -> Vec<String> {
        let mut all = Vec::new();
        for file in maildir_files(&self.maildir) {
            let bytes = std::fs::read(&file).unwrap();
            all.push(format!("{:x}", Md5::digest(&bytes)));
        }
        all.sort();
        all
    }

    /// Every filed message's bytes.
    pub fn filed_messages(&self) -> Vec<Vec<u8>> {
        maildir_files(&self.maildir)
            .into_iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect()
    }

    /// The history file's text ("" when missing).
    pub fn history(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("history.tsv")).unwrap_or_default()
    }
}

/// Every file in `new/` and `cur/` of every Maildir folder under `root`.
pub fn maildir_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            let name = e.file_name();
            if name == "new" || name == "cur" {
                out.extend(
                    std::fs::read_dir(&path)
                        .unwrap()
                        .flatten()
                        .map(|f| f.path())
                        .filter(|p| p.is_file()),
                );
            } else if name != "tmp" {
                stack.push(path);
            }
        }
    }
    out
}

/// A process's output for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Real mail for a spool: the bytes (mboxrd) and each message's md5, sorted.
pub struct RealMail {
    /// The spool bytes.
    pub spool: Vec<u8>,
    /// md5 of every message as an mboxrd reader returns it, sorted.
    pub md5s: Vec<String>,
    /// Where it came from (for messages).
    pub source: String,
}

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MAILHAUL_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    };
    dir.join("MANIFEST.tsv").is_file().then_some(dir)
}

/// About 1,000 real messages from the shared corpus (1,064: spam-gp-01,
/// ham-enron-beck-02, ham-linux-mips-04), or, without the corpus, the
/// committed 315-message sample (with a printed note).
pub fn real_mail() -> RealMail {
    const FILES: [&str; 3] = [
        "spam-gp-01.mbox",
        "ham-enron-beck-02.mbox",
        "ham-linux-mips-04.mbox",
    ];
    if let Some(dir) = corpus_dir() {
        let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
        let mut md5s = Vec::new();
        let mut spool = Vec::new();
        for file in FILES {
            spool.extend(std::fs::read(dir.join(file)).unwrap());
            md5s.extend(
                manifest
                    .lines()
                    .filter(|l| l.split('\t').next() == Some(file))
                    .map(|l| l.split('\t').nth(3).unwrap().to_string()),
            );
        }
        md5s.sort();
        assert_eq!(md5s.len(), 1_064);
        return RealMail {
            spool,
            md5s,
            source: format!("corpus {}", FILES.join(" + ")),
        };
    }
    eprintln!(
        "NOTE: no corpus (set MAILHAUL_CORPUS or put it at ../shared/corpus); \
         using the committed 315-message sample instead of 1,064 corpus messages"
    );
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut md5s: Vec<String> = std::fs::read_to_string(assets.join("sample-spool.md5"))
        .unwrap()
        .lines()
        .map(|l| l.split_once('\t').unwrap().1.to_string())
        .collect();
    md5s.sort();
    RealMail {
        spool: std::fs::read(assets.join("sample-spool.mbox")).unwrap(),
        md5s,
        source: "assets/sample-spool.mbox".into(),
    }
}

/// Asserts that `got` and `want` (sorted md5 lists) are the same multiset,
/// naming what is missing and what is extra (duplicated or foreign).
pub fn assert_same_messages(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for m in want {
        *count.entry(m).or_default() += 1;
    }
    for m in got {
        *count.entry(m).or_default() -= 1;
    }
    let missing: Vec<_> = count.iter().filter(|(_, c)| **c > 0).collect();
    let extra: Vec<_> = count.iter().filter(|(_, c)| **c < 0).collect();
    panic!(
        "{what}: filed {} messages, want {}; {} missing, {} extra (duplicates or cut): \
         missing {:?}, extra {:?}",
        got.len(),
        want.len(),
        missing.len(),
        extra.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        extra.iter().take(5).collect::<Vec<_>>()
    );
}

/// Writes `bytes` as the spool at `path`, keeping its owner and mode.
pub fn fill_spool(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// The usual start of a fetch test once its sshd runs: an account whose
/// spool on that server is seeded with mail, and a client whose config
/// fetches it (filter format mboxrd, the corpus's). The spool is root's in
/// a fresh directory (rename) or a fresh ordinary user's `/var/mail/NAME`
/// (copy-truncate under dotlockfile).
pub struct Fixture {
    /// The mailhaul side; account `acct`.
    pub client: Client,
    /// The spool the account fetches.
    pub spool: PathBuf,
    user: Option<TestUser>,
    server: Option<tempfile::TempDir>,
}

impl Fixture {
    /// root's spool `DIR/spool` in a fresh directory, holding `mail`;
    /// `extra` is appended to the account table.
    pub fn as_root(sshd: &TestSshd, mail: &[u8], extra: &str) -> Fixture {
        let server = tempfile::tempdir().unwrap();
        let spool = server.path().join("spool");
        fill_spool(&spool, mail);
        let client = Client::new(sshd, "root", &format!("spool = {spool:?}\n{extra}"));
        client.set_format("mboxrd");
        Fixture {
            client,
            spool,
            user: None,
            server: Some(server),
        }
    }

    /// A fresh ordinary user (`prefix` + random digits) that `sshd` lets in,
    /// whose spool holds `mail`; `extra` is appended to the account table.
    pub fn as_user(sshd: &TestSshd, prefix: &str, mail: &[u8], extra: &str) -> Fixture {
        let user = TestUser::create_for(sshd, prefix);
        fill_spool(&user.spool, mail);
        let client = Client::new(sshd, &user.name, extra);
        client.set_format("mboxrd");
        Fixture {
            client,
            spool: user.spool.clone(),
            user: Some(user),
            server: None,
        }
    }

    /// The ordinary user; panics for a root fixture.
    pub fn user(&self) -> &TestUser {
        self.user
            .as_ref()
            .expect("a fixture made with Fixture::as_user")
    }

    /// The directory holding root's spool; panics for a user fixture.
    pub fn server_dir(&self) -> &Path {
        self.server
            .as_ref()
            .expect("a fixture made with Fixture::as_root")
            .path()
    }
}

/// `list()` once it is empty, or its last result after 10 s. A one-shot
/// fetch sends its last release without waiting for the answer
/// (docs/design.md, "The last release goes unanswered"): the server removes
/// that claim a moment after the client has exited, so a test that expects
/// no claim left on the server waits for it (and still fails when one stays).
pub fn settled<T>(mut list: impl FnMut() -> Vec<T>) -> Vec<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = list();
        if now.is_empty() || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The names in `dir` (empty when it cannot be read).
pub fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
