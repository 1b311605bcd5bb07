//! `mailhaul filter` as a user runs it: the real binary on real mbox files
//! (the committed sample spool and, when present, ../shared/corpus), with
//! real delivery agents (procmail, `false`) and a real lock holder
//! (`dotlockfile`).

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use common::require_tool;

/// Runs `mailhaul filter` with `args`, an isolated config directory (so no
/// user config is read) and `stdin` as input.
fn filter(home: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailhaul"))
        .arg("filter")
        .args(args)
        .env_remove("MAILHAUL_CONFIG")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailhaul");
    // mailhaul may stop before reading everything (a config error); its
    // exit status and stderr then say so.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An isolated home for `mailhaul filter` runs: `Mail/` is the Maildir
/// root and `c.toml` the config file.
struct Sandbox {
    home: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Sandbox {
    /// A fresh home whose config file holds `config`.
    fn with_config(config: &str) -> Sandbox {
        let home = tempfile::tempdir().unwrap();
        let sandbox = Sandbox {
            root: home.path().join("Mail"),
            config: home.path().join("c.toml"),
            home,
        };
        fs::write(&sandbox.config, config).unwrap();
        sandbox
    }

    /// Runs `mailhaul filter -c CONFIG --maildir ROOT ARGS...` on `stdin`.
    fn filter(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut all = vec![
            "-c",
            self.config.to_str().unwrap(),
            "--maildir",
            self.root.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        filter(self.home.path(), &all, stdin)
    }
}

/// Every delivered file (in some `new/`) under `root`, by folder directory
/// relative to the root (`""` for the root itself).
fn delivered(root: &Path) -> HashMap<String, Vec<PathBuf>> {
    fn walk(dir: &Path, root: &Path, out: &mut HashMap<String, Vec<PathBuf>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().unwrap() == "new" {
                    let folder = dir
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    let files = out.entry(folder).or_default();
                    for f in fs::read_dir(&path).unwrap() {
                        files.push(f.unwrap().path());
                    }
                } else {
                    walk(&path, root, out);
                }
            }
        }
    }
    let mut out = HashMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("MAILHAUL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if dir.join("MANIFEST.tsv").exists() {
        Some(dir)
    } else {
        eprintln!(
            "note: no corpus at {}; skipping (set MAILHAUL_CORPUS)",
            dir.display()
        );
        None
    }
}

/// Six realistic rules over the corpus, shared with bench/filter.sh.
const CORPUS_RULES: &str = include_str!("../bench/corpus-rules.toml");

#[test]
fn corpus_is_filed_exactly_once_byte_exact_and_by_the_rules() {
    let Some(corpus) = corpus() else { return };
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("Mail");
    let config = home.path().join("rules.toml");
    fs::write(&config, CORPUS_RULES).unwrap();
    let manifest = fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = manifest
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let mut files: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    files.dedup();
    let paths: Vec<String> = files
        .iter()
        .map(|f| corpus.join(f).display().to_string())
        .collect();
    let mut args = vec!["--config", config.to_str().unwrap(), "--maildir"];
    args.push(root.to_str().unwrap());
    args.extend(paths.iter().map(String::as_str));
    let out = filter(home.path(), &args, b"");
    assert!(out.status.success(), "{}", stderr(&out));

    let folders = delivered(&root);
    let mut got: HashMap<String, (String, usize)> = HashMap::new();
    let mut total = 0;
    for (folder, paths) in &folders {
        for p in paths {
            total += 1;
            let md5 = md5_hex(&fs::read(p).unwrap());
            got.entry(md5)
                .and_modify(|e| e.1 += 1)
                .or_insert((folder.clone(), 1));
        }
    }
    assert_eq!(total, rows.len(), "every message filed exactly once");
    let mut want: HashMap<&str, usize> = HashMap::new();
    for r in &rows {
        *want.entry(r[3]).or_default() += 1;
    }
    for (md5, n) in &want {
        assert_eq!(got.get(*md5).map(|g| g.1), Some(*n), "message {md5}");
    }
    // Routing: every linux-mips-04 message carries its List-Id.
    for r in rows.iter().filter(|r| r[0] == "ham-linux-mips-04.mbox") {
        assert_eq!(got[r[3]].0, ".lists.linux-mips", "{r:?}");
    }
    let enron = &folders[".enron"];
    assert!(enron.len() >= 1745, "{} in enron", enron.len());
    for p in enron {
        let text = String::from_utf8_lossy(&fs::read(p).unwrap()).to_lowercase();
        let header = &text[..text.find("\n\n").unwrap_or(text.len())];
        assert!(header.contains("sally.beck@enron.com"), "{}", p.display());
    }
    for p in &folders[".big"] {
        assert!(fs::metadata(p).unwrap().len() > 100_000);
    }
    assert!(folders.contains_key(".Junk") && folders.contains_key(".lists.other"));
    assert!(folders[""].len() > 100, "INBOX gets the rest");
}

/// The committed sample (mboxrd) filed with `format = "mboxrd"`: every
/// message byte for byte as `assets/sample-spool.md5` says an mboxrd reader
/// returns it (digests made from the corpus, not by mailhaul).
#[test]
fn sample_spool_is_filed_byte_exact() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let sample = assets.join("sample-spool.mbox");
    let mut want: Vec<String> = fs::read_to_string(assets.join("sample-spool.md5"))
        .expect("assets/sample-spool.md5 is committed")
        .lines()
        .map(|l| l.split_once('\t').expect("INDEX TAB MD5").1.to_string())
        .collect();
    assert_eq!(want.len(), 315);
    let sandbox = Sandbox::with_config("[filter]\nformat = \"mboxrd\"\n");
    let out = sandbox.filter(&[sample.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let folders = delivered(&sandbox.root);
    assert_eq!(folders.len(), 1, "no rules: everything in INBOX");
    let mut got: Vec<String> = folders[""]
        .iter()
        .map(|p| md5_hex(&fs::read(p).unwrap()))
        .collect();
    got.sort();
    want.sort();
    let differ = got.iter().zip(&want).filter(|(g, w)| g != w).count();
    assert!(
        got == want,
        "filed {} messages, want {}; {differ} differ from assets/sample-spool.md5",
        got.len(),
        want.len()
    );
}

/// Every queued message holds an open file until its batch is published:
/// under a low limit on open files (here 64, hard), batches shrink to fit
/// instead of failing with EMFILE.
#[test]
fn a_low_open_file_limit_shrinks_batches_instead_of_failing() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-spool.mbox");
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("Mail");
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_mailhaul"))
        .args(["filter", "--batch", "4096", "--maildir"])
        .arg(&root)
        .arg(&sample)
        .env_remove("MAILHAUL_CONFIG")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(delivered(&root)[""].len(), 315, "{}", stderr(&out));
}

const SMALL: &str = "From alice@a.example Mon Jan  1 10:00:00 2024\n\
Subject: patch for mips\nList-Id: Linux MIPS <linux-mips.eddie.linux-mips.org>\n\n\
a body\n>From quoted\n\n\
From bob@b.example Mon Jan  1 10:01:00 2024\n\
Subject: =?utf-8?Q?R=C3=A9union?= lundi\nTo: team@x.example\n\nsee you\n\n\
From carol@c.example Mon Jan  1 10:02:00 2024\n\
Subject: hello\n\nplain\n\n";

fn read_folder(root: &Path, folder: &str) -> Vec<String> {
    let mut texts: Vec<String> = delivered(root)
        .get(folder)
        .map(|ps| ps.iter().map(|p| fs::read_to_string(p).unwrap()).collect())
        .unwrap_or_default();
    texts.sort();
    texts
}

#[test]
fn rules_route_stdin_messages_to_their_folders() {
    let sandbox = Sandbox::with_config(
        "[filter]\nformat = \"mboxrd\"\n\
         [[filter.rule]]\nheader = \"list-id\"\ncontains = \"LINUX-MIPS\"\nfolder = \"lists/mips\"\n\
         [[filter.rule]]\nheader = \"Subject\"\nregex = \"^Réunion\"\nfolder = \"meetings\"\n",
    );
    let root = &sandbox.root;
    let out = sandbox.filter(&[], SMALL.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read_folder(root, ".lists.mips"),
        ["Subject: patch for mips\nList-Id: Linux MIPS <linux-mips.eddie.linux-mips.org>\n\na body\nFrom quoted\n"]
    );
    assert_eq!(
        read_folder(root, ".meetings"),
        ["Subject: =?utf-8?Q?R=C3=A9union?= lundi\nTo: team@x.example\n\nsee you\n"]
    );
    assert_eq!(read_folder(root, ""), ["Subject: hello\n\nplain\n"]);
    let err = stderr(&out);
    assert!(err.contains("stdin: 3 messages, 3 delivered"), "{err}");
}

#[test]
fn nested_layout_makes_plain_directories() {
    let sandbox = Sandbox::with_config(
        "[filter]\nlayout = \"nested\"\n\
         [[filter.rule]]\nheader = \"list-id\"\ncontains = \"mips\"\nfolder = \"lists/mips\"\n",
    );
    // A relative root, as users type it, is relative to the working directory.
    let out = filter(
        sandbox.home.path(),
        &["-c", sandbox.config.to_str().unwrap(), "--maildir", "Mail"],
        SMALL.as_bytes(),
    );
    let root = &sandbox.root;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_folder(root, "lists/mips").len(), 1);
    assert_eq!(read_folder(root, "INBOX").len(), 2);
}

#[test]
fn failing_agent_quarantines_the_message_and_exits_8_naming_it() {
    let sandbox = Sandbox::with_config(
        "[[filter.rule]]\nheader = \"Subject\"\ncontains = \"réunion\"\nmda = [\"false\"]\n",
    );
    let root = &sandbox.root;
    let input = sandbox.home.path().join("in.mbox");
    fs::write(&input, SMALL).unwrap();
    let out = sandbox.filter(&[input.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let kept = read_folder(root, ".mailhaul-undelivered");
    assert_eq!(
        kept,
        ["Subject: =?utf-8?Q?R=C3=A9union?= lundi\nTo: team@x.example\n\nsee you\n"]
    );
    let offset = SMALL.find("From bob").unwrap();
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("not delivered"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(&format!(
            "{}: message 2 at byte {offset} not delivered to mda:false",
            input.display()
        )),
        "{line}"
    );
    assert!(
        line.contains("kept in ") && line.contains(".mailhaul-undelivered/new/"),
        "{line}"
    );
    assert_eq!(read_folder(root, "").len(), 2, "the others are delivered");
}

#[test]
fn missing_agent_is_quarantined_too() {
    let sandbox = Sandbox::with_config("[filter]\ndefault_mda = [\"/nonexistent/mda\"]\n");
    let root = &sandbox.root;
    let out = sandbox.filter(&[], SMALL.as_bytes());
    assert_eq!(out.status.code(), Some(8));
    assert_eq!(read_folder(root, ".mailhaul-undelivered").len(), 3);
    assert!(stderr(&out).contains("cannot start `/nonexistent/mda`"));
}

#[test]
fn procmail_as_agent_files_by_its_recipes() {
    require_tool("procmail", "procmail");
    // The config names the procmailrc in the sandbox: written below.
    let sandbox = Sandbox::with_config("");
    let root = &sandbox.root;
    let pm = sandbox.home.path().join("pm");
    fs::create_dir(&pm).unwrap();
    let rc = sandbox.home.path().join("procmailrc");
    fs::write(
        &rc,
        format!(
            "MAILDIR={pm}\nDEFAULT={pm}/inbox/\nLOGFILE={pm}/log\n:0\n* ^Subject:.*mips\nmips/\n",
            pm = pm.display()
        ),
    )
    .unwrap();
    fs::write(
        &sandbox.config,
        format!(
            "[filter]\nformat = \"mboxrd\"\ndefault_mda = [\"procmail\", \"-m\", \"{}\"]\n",
            rc.display()
        ),
    )
    .unwrap();
    let out = sandbox.filter(&[], SMALL.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let mips = read_folder(&pm, "mips");
    // procmail drops the From_ line mailhaul passes it for Maildir delivery.
    assert_eq!(
        mips,
        ["Subject: patch for mips\nList-Id: Linux MIPS <linux-mips.eddie.linux-mips.org>\n\na body\nFrom quoted\n"]
    );
    assert_eq!(read_folder(&pm, "inbox").len(), 2);
    assert!(stderr(&out).contains("mda:procmail -m"), "{}", stderr(&out));
    assert!(
        delivered(root).is_empty(),
        "nothing in mailhaul's own folders"
    );
}

#[test]
fn mbox_target_waits_for_a_dotlockfile_holder() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("Mail");
    fs::create_dir(&root).unwrap();
    let mbox = root.join("archive.mbox");
    let old = "From old@x Mon Jan  1 00:00:00 2024\nSubject: old\n\nold\n";
    fs::write(&mbox, old).unwrap();
    let config = home.path().join("c.toml");
    fs::write(
        &config,
        "[filter]\nformat = \"mboxrd\"\ndefault_folder = \"mbox:archive.mbox\"\n",
    )
    .unwrap();
    require_tool("dotlockfile", "liblockfile-bin");
    // dotlockfile takes the lock file's name (liblockfile's FILE.lock).
    let lock_file = root.join("archive.mbox.lock");
    let lock = Command::new("dotlockfile")
        .args(["-r", "0", "-l"])
        .arg(&lock_file)
        .status()
        .unwrap();
    assert!(lock.success());
    assert!(root.join("archive.mbox.lock").exists());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailhaul"))
        .args(["filter", "-c", config.to_str().unwrap(), "--maildir"])
        .arg(&root)
        .env_remove("MAILHAUL_CONFIG")
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SMALL.as_bytes())
        .unwrap();
    // Watched until the moment before the unlock: mailhaul keeps waiting
    // and the mbox stays as it was.
    let hold_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < hold_until {
        assert!(
            child.try_wait().unwrap().is_none(),
            "it must wait for the lock"
        );
        assert_eq!(
            fs::read_to_string(&mbox).unwrap(),
            old,
            "nothing appended while the lock is held"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let unlock = Command::new("dotlockfile")
        .arg("-u")
        .arg(&lock_file)
        .status()
        .unwrap();
    assert!(unlock.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!root.join("archive.mbox.lock").exists(), "lock released");
    let text = fs::read_to_string(&mbox).unwrap();
    assert_eq!(
        text,
        format!("{old}\n{SMALL}"),
        "appended in mboxrd after a blank separator"
    );
}

#[test]
fn maildir_names_and_modes_are_what_mutt_and_dovecot_expect() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("Mail");
    let mut input = String::new();
    for i in 0..50 {
        input.push_str(&format!(
            "From a@b Mon Jan  1 00:00:00 2024\nSubject: {i}\n\nbody {i}\n\n"
        ));
    }
    let out = filter(
        home.path(),
        &["--maildir", root.to_str().unwrap()],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let re = regex::Regex::new(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.([^/:,]+),S=(\d+)$").unwrap();
    let files = &delivered(&root)[""];
    assert_eq!(files.len(), 50);
    let mut names = std::collections::HashSet::new();
    for p in files {
        let name = p.file_name().unwrap().to_str().unwrap();
        let caps = re
            .captures(name)
            .unwrap_or_else(|| panic!("bad name {name}"));
        let meta = fs::metadata(p).unwrap();
        assert_eq!(
            caps[6].parse::<u64>().unwrap(),
            meta.len(),
            "S= is the size"
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(names.insert(name.to_string()));
    }
    for sub in ["", "tmp", "new", "cur"] {
        let mode = fs::metadata(root.join(sub)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{sub}");
    }
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn without_maildir_or_config_everything_goes_to_home_maildir_inbox() {
    let home = tempfile::tempdir().unwrap();
    let out = filter(home.path(), &[], SMALL.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_folder(&home.path().join("Maildir"), "").len(), 3);
}

#[test]
fn a_message_with_an_unparsable_header_goes_to_the_default_folder() {
    let sandbox = Sandbox::with_config(
        "[[filter.rule]]\nheader = \"List-Id\"\ncontains = \"mips\"\nfolder = \"lists\"\n",
    );
    // A lone CR at the start of a header line: mailparse refuses the section.
    let broken = "List-Id: <linux-mips.org>\n\rX: y\n\nbody\n";
    let input = format!("From a@b Mon Jan  1 00:00:00 2024\n{broken}\n");
    let out = filter(
        sandbox.home.path(),
        &["-c", sandbox.config.to_str().unwrap(), "--maildir", "Mail"],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_folder(&sandbox.root, ""), [broken]);
    assert!(read_folder(&sandbox.root, ".lists").is_empty());
}
