//! Maildir folders as the maildir spec (cr.yp.to/proto/maildir.html) and
//! Maildir++ describe them: where a folder name lives under the root, creating
//! `tmp/ new/ cur/`, unique file names, and checking whether a message with a
//! stable name is already there.
//!
//! Layouts ([`FolderLayout`]):
//! - Maildir++ (Dovecot, Courier): `INBOX` (any case) is the root itself;
//!   folder `a/b` (or `a.b`) is the directory `ROOT/.a.b`, which also gets an
//!   empty `maildirfolder` file as Courier expects.
//! - Nested (mutt, neomutt, notmuch): folder `a/b` is `ROOT/a/b`; `INBOX` is
//!   `ROOT/INBOX`.
//!
//! Names: `SECS.M<usec>P<pid>Q<counter>.<host>,S=<size>` (Dovecot's form)
//! for ordinary deliveries; with a [`StableId`], `SECS.C<claim>I<index>.<host>,S=<size>`
//! with `SECS` the claim's time, so the same message of the same claim always
//! gets the same name. In the host part `/`, `:` and `,` are written `\057`,
//! `\072`, `\054`. Directories are made with mode 0700, files with 0600.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::filing::FolderLayout;
use crate::engine::os;

/// The identity that makes names deterministic across a resumed delivery:
/// the claim a message came from and the claim's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StableId {
    /// Seconds since the epoch when the claim was made; leads the name so
    /// that readers that sort by name (Dovecot) keep arrival order.
    pub time: u64,
    /// The claim's id; anything but `[A-Za-z0-9_-]` is replaced by `_`.
    pub claim: String,
    /// An earlier delivery of this claim may have filed some of its
    /// messages, so their names are looked for before filing. False for a
    /// claim downloaded in this run: its names cannot exist yet, and no
    /// folder is listed (the cost of a fetch then does not grow with the
    /// folders it files into).
    pub resumed: bool,
}

/// Why a folder name cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("folder name `{name}` {reason}")]
pub struct BadFolderName {
    /// The name as configured.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The Maildir directory of folder `name` under `root`.
pub fn folder_dir(root: &Path, layout: FolderLayout, name: &str) -> Result<PathBuf, BadFolderName> {
    let bad = |reason| BadFolderName {
        name: name.to_string(),
        reason,
    };
    let path = Path::new(name);
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad(
            "must be relative and must not contain `.` or `..` parts",
        ));
    }
    match layout {
        FolderLayout::Nested => Ok(root.join(path)),
        FolderLayout::MaildirPlusPlus => {
            if name.eq_ignore_ascii_case("INBOX") {
                return Ok(root.to_path_buf());
            }
            let parts: Vec<&str> = name.split(['/', '.']).collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(bad(
                    "has an empty level (leading, trailing or doubled `/` or `.`)",
                ));
            }
            Ok(root.join(format!(".{}", parts.join("."))))
        }
    }
}

/// Makes `dir` a Maildir (with `tmp`, `new`, `cur`, all 0700) if it is not one.
/// `subfolder` adds Courier's `maildirfolder` marker (Maildir++ subfolders).
pub fn ensure(dir: &Path, subfolder: bool) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for sub in ["tmp", "new", "cur"] {
        builder.create(dir.join(sub))?;
    }
    if subfolder {
        let marker = dir.join("maildirfolder");
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&marker)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// This host's name as it goes into Maildir file names.
pub fn host_part() -> String {
    let raw = os::hostname().unwrap_or_else(|| "localhost".to_string());
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            ',' => out.push_str("\\054"),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        "localhost".to_string()
    } else {
        out
    }
}

/// Makes Maildir file names: unique ones, or stable ones for a claim.
#[derive(Debug, Clone)]
pub struct Namer {
    host: String,
    pid: u32,
    stable: Option<(u64, String)>,
}

/// Counter shared by every [`Namer`] of the process, so that two filers in
/// one process never produce the same name in the same microsecond.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

impl Namer {
    /// A namer for this host and process, with stable names when `stable` is given.
    pub fn new(stable: Option<&StableId>) -> Namer {
        Namer {
            host: host_part(),
            pid: std::process::id(),
            stable: stable.map(|s| {
                let claim: String = s
                    .claim
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                (s.time, claim)
            }),
        }
    }

    /// The name's base (everything before `,S=`) for message `index`:
    /// stable when the namer has a [`StableId`], unique otherwise.
    pub fn base(&self, index: u64) -> String {
        match &self.stable {
            Some((time, claim)) => format!("{time}.C{claim}I{index}.{}", self.host),
            None => self.unique_base(),
        }
    }

    /// What every stable base of this namer starts with (`SECS.C<claim>I`);
    /// `None` for unique names.
    pub fn stable_prefix(&self) -> Option<String> {
        self.stable
            .as_ref()
            .map(|(time, claim)| format!("{time}.C{claim}I"))
    }

    /// A name base that no other delivery uses: time, microseconds, pid and a
    /// process-wide counter.
    pub fn unique_base(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = DELIVERIES.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            self.pid,
            n,
            self.host
        )
    }
}

/// The full file name in `new/`: the base plus the size, as Dovecot writes it.
pub fn file_name(base: &str, size: u64) -> String {
    format!("{base},S={size}")
}

/// The base of a Maildir file name: up to the first `,` or `:` (so `cur/`
/// names with `:2,FLAGS` and extra `,W=` fields compare equal to `new/` ones).
pub fn base_of(file_name: &str) -> &str {
    file_name.split([',', ':']).next().unwrap_or(file_name)
}

/// The bases of the messages in `new/` and `cur/` of the Maildir `dir` that
/// start with `prefix` (empty when it does not exist yet). The directories
/// are read through once; only the matching bases are kept, so memory
/// follows what matches, not the folder's size.
pub fn delivered_bases(dir: &Path, prefix: &str) -> io::Result<HashSet<String>> {
    let mut bases = HashSet::new();
    for sub in ["new", "cur"] {
        let entries = match fs::read_dir(dir.join(sub)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let name = entry?.file_name();
            if let Some(name) = name.to_str() {
                let base = base_of(name);
                if base.starts_with(prefix) {
                    bases.insert(base.to_string());
                }
            }
        }
    }
    Ok(bases)
}

/// A message file being written in a Maildir's `tmp/`, open until it is
/// published. Where the kernel and file system allow (Linux `O_TMPFILE`,
/// with `/proc` mounted to link it), the file has no name at all until
/// [`publish`] links it into `new/`: readers see exactly what the spec's
/// `tmp/NAME` then rename gives them, a crash leaves no garbage in `tmp/`,
/// and the delivery costs one directory entry instead of three changes in
/// two directories (which also serialise on the file system's rename lock).
/// Elsewhere it is `tmp/NAME`, as the maildir spec describes.
#[derive(Debug)]
pub struct TmpFile {
    file: File,
    path: Option<PathBuf>,
}

impl TmpFile {
    /// The open file, to write the message into and to fsync.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Removes the file (an unnamed one vanishes when it is closed).
    pub fn discard(self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_file(path);
        }
    }
}

/// Whether unnamed files have worked so far in this process; cleared for
/// good on the first file system or kernel that refuses them.
#[cfg(target_os = "linux")]
static UNNAMED_TMP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Creates a new file (0600) in `dir/tmp`: unnamed where possible (see
/// [`TmpFile`]), else with a unique name (O_EXCL).
pub fn create_tmp(dir: &Path, namer: &Namer) -> io::Result<TmpFile> {
    let tmp_dir = dir.join("tmp");
    #[cfg(target_os = "linux")]
    if UNNAMED_TMP.load(Ordering::Relaxed) {
        match OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(&tmp_dir)
        {
            Ok(file) => return Ok(TmpFile { file, path: None }),
            // Kernels before 3.11 and file systems without support; also
            // no /proc to link through.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
                ) =>
            {
                UNNAMED_TMP.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    create_named_tmp(&tmp_dir, namer)
}

/// Creates `tmp_dir/NAME` with a unique name (0600, O_EXCL), the maildir
/// spec's way.
fn create_named_tmp(tmp_dir: &Path, namer: &Namer) -> io::Result<TmpFile> {
    loop {
        let path = tmp_dir.join(namer.unique_base());
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => {
                return Ok(TmpFile {
                    file,
                    path: Some(path),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes a finished file in `tmp/` visible as `new/NAME` without ever
/// overwriting: an unnamed file is linked there (linkat(2) through
/// `/proc/self/fd`); a named one is moved with renameat2(RENAME_NOREPLACE)
/// on Linux, else (or where the file system lacks it) link(2) then unlink
/// of the `tmp/` name, as the maildir spec says. Returns false (and removes
/// the tmp file) when `new/NAME` already exists.
pub fn publish(tmp: &TmpFile, dir: &Path, name: &str) -> io::Result<bool> {
    let target = dir.join("new").join(name);
    let Some(path) = &tmp.path else {
        return os::link_unnamed(&tmp.file, &target);
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    match os::rename_noreplace(path, &target) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            return Ok(false);
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {}
        Err(e) => return Err(e),
    }
    link_then_unlink(path, &target)
}

/// The maildir spec's move where no atomic no-replace rename is to be had:
/// link(2) `path` to `target` (which never overwrites), then unlink `path`.
/// False when `target` already exists (`path` is removed all the same); on
/// any other error `path` is left as it is.
fn link_then_unlink(path: &Path, target: &Path) -> io::Result<bool> {
    let linked = match fs::hard_link(path, target) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    fs::remove_file(path)?;
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maildirplusplus_layout() {
        let root = Path::new("/m");
        let l = FolderLayout::MaildirPlusPlus;
        assert_eq!(folder_dir(root, l, "INBOX").unwrap(), Path::new("/m"));
        assert_eq!(folder_dir(root, l, "inbox").unwrap(), Path::new("/m"));
        assert_eq!(
            folder_dir(root, l, "lists/mips").unwrap(),
            Path::new("/m/.lists.mips")
        );
        assert_eq!(
            folder_dir(root, l, "lists.mips").unwrap(),
            Path::new("/m/.lists.mips")
        );
        assert!(folder_dir(root, l, "a//b").is_err());
        assert!(folder_dir(root, l, "a/../b").is_err());
        assert!(folder_dir(root, l, "/etc").is_err());
        assert!(folder_dir(root, l, "").is_err());
    }

    #[test]
    fn nested_layout() {
        let root = Path::new("/m");
        let l = FolderLayout::Nested;
        assert_eq!(folder_dir(root, l, "INBOX").unwrap(), Path::new("/m/INBOX"));
        assert_eq!(
            folder_dir(root, l, "lists/mips").unwrap(),
            Path::new("/m/lists/mips")
        );
        assert!(folder_dir(root, l, "../x").is_err());
    }

    #[test]
    fn stable_names_repeat_unique_names_do_not() {
        let stable = StableId {
            time: 1_700_000_000,
            claim: "ab/c:d".into(),
            resumed: false,
        };
        let a = Namer::new(Some(&stable));
        let b = Namer::new(Some(&stable));
        assert_eq!(a.base(7), b.base(7));
        assert_ne!(a.base(7), a.base(8));
        assert!(
            a.base(7).starts_with("1700000000.Cab_c_dI7."),
            "{}",
            a.base(7)
        );
        let u = Namer::new(None);
        assert_ne!(u.base(1), u.base(1));
    }

    /// Both kinds of tmp file: unnamed where this machine allows it (as
    /// `create_tmp` makes them here), and named (the fallback).
    fn both_kinds(dir: &Path, namer: &Namer) -> [TmpFile; 2] {
        [
            create_tmp(dir, namer).unwrap(),
            create_named_tmp(&dir.join("tmp"), namer).unwrap(),
        ]
    }

    #[test]
    fn publish_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), false).unwrap();
        let namer = Namer::new(None);
        let [unnamed1, named1] = both_kinds(dir.path(), &namer);
        let [unnamed2, named2] = both_kinds(dir.path(), &namer);
        for (kind, (first, second)) in [(unnamed1, named2), (named1, unnamed2)]
            .into_iter()
            .enumerate()
        {
            let name = format!("m{kind},S=5");
            first.file().write_all(b"first").unwrap();
            assert!(publish(&first, dir.path(), &name).unwrap());
            second.file().write_all(b"other").unwrap();
            assert!(!publish(&second, dir.path(), &name).unwrap());
            assert_eq!(
                fs::read(dir.path().join("new").join(&name)).unwrap(),
                b"first"
            );
        }
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn unnamed_tmp_files_are_invisible_until_published() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), false).unwrap();
        let namer = Namer::new(None);
        let [unnamed, named] = both_kinds(dir.path(), &namer);
        let in_tmp = || fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(in_tmp(), 1, "only the named one is in tmp/");
        unnamed.file().write_all(b"x").unwrap();
        assert!(publish(&unnamed, dir.path(), "u,S=1").unwrap());
        drop(unnamed);
        let mode = fs::metadata(dir.path().join("new/u,S=1")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        named.discard();
        assert_eq!(in_tmp(), 0);
        let discarded = create_tmp(dir.path(), &namer).unwrap();
        discarded.discard();
        assert_eq!(fs::read_dir(dir.path().join("new")).unwrap().count(), 1);
    }

    /// A named tmp file whose `new/` is gone is not published, and is kept
    /// (it would otherwise be removed as if its name were taken: lost).
    #[test]
    fn a_failed_publish_keeps_the_named_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), false).unwrap();
        let named = create_named_tmp(&dir.path().join("tmp"), &Namer::new(None)).unwrap();
        named.file().write_all(b"kept").unwrap();
        fs::remove_dir(dir.path().join("new")).unwrap();
        assert!(publish(&named, dir.path(), "m,S=4").is_err());
        let path = named.path.clone().unwrap();
        assert_eq!(fs::read(path).unwrap(), b"kept");
        assert!(create_named_tmp(&dir.path().join("missing"), &Namer::new(None)).is_err());
    }

    /// The link-then-unlink move never overwrites, and on an error other
    /// than a taken name it leaves the source where it was.
    #[test]
    fn link_then_unlink_never_overwrites_nor_drops_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, taken) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("taken"),
        );
        fs::write(&a, "a").unwrap();
        fs::write(&b, "b").unwrap();
        fs::write(&taken, "first").unwrap();
        assert!(!link_then_unlink(&a, &taken).unwrap());
        assert_eq!(fs::read(&taken).unwrap(), b"first");
        assert!(!a.exists(), "the source of a taken name is removed");
        assert!(link_then_unlink(&b, &dir.path().join("missing/b")).is_err());
        assert_eq!(fs::read(&b).unwrap(), b"b", "the source is kept");
        assert!(link_then_unlink(&b, &dir.path().join("c")).unwrap());
        assert_eq!(fs::read(dir.path().join("c")).unwrap(), b"b");
        assert!(!b.exists());
    }

    /// A resumed delivery that cannot list `new/` or `cur/` must fail, not
    /// take the folder for empty and file its messages a second time.
    #[test]
    fn delivered_bases_are_read_or_the_error_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(delivered_bases(&dir.path().join("none"), "p")
            .unwrap()
            .is_empty());
        ensure(dir.path(), false).unwrap();
        fs::write(dir.path().join("new/p1.h,S=1"), "x").unwrap();
        fs::write(dir.path().join("new/q1.h,S=1"), "x").unwrap();
        assert_eq!(
            delivered_bases(dir.path(), "p").unwrap(),
            HashSet::from(["p1.h".to_string()])
        );
        fs::remove_dir(dir.path().join("cur")).unwrap();
        fs::write(dir.path().join("cur"), "not a directory").unwrap();
        assert!(delivered_bases(dir.path(), "p").is_err());
    }

    /// Names end with this host's name (the part a reader shows and the
    /// resumed delivery looks for), and only stable namers have a prefix.
    #[test]
    fn names_carry_the_host_and_stable_namers_a_prefix() {
        let host = host_part();
        let raw = os::hostname().unwrap_or_default();
        if !raw.is_empty() && !raw.contains(['/', ':', ',']) {
            assert_eq!(host, raw);
        }
        assert!(
            !host.is_empty() && !host.contains(['/', ':', ',']),
            "{host}"
        );
        let unique = Namer::new(None);
        assert!(unique.base(1).ends_with(&format!(".{host}")));
        assert_eq!(unique.stable_prefix(), None);
        let stable = Namer::new(Some(&StableId {
            time: 5,
            claim: "c".into(),
            resumed: true,
        }));
        assert_eq!(stable.stable_prefix().as_deref(), Some("5.CcI"));
        assert_eq!(stable.base(3), format!("5.CcI3.{host}"));
    }

    #[test]
    fn base_ignores_size_and_flags() {
        assert_eq!(base_of("1.M2P3Q4.h,S=10"), "1.M2P3Q4.h");
        assert_eq!(base_of("1.M2P3Q4.h,S=10,W=12:2,RS"), "1.M2P3Q4.h");
        assert_eq!(base_of("1.M2P3Q4.h:2,"), "1.M2P3Q4.h");
    }
}
