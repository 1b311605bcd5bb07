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

use crate::config::FolderLayout;

/// The identity that makes names deterministic across a resumed delivery:
/// the claim a message came from and the claim's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StableId {
    /// Seconds since the epoch when the claim was made; leads the name so
    /// that readers that sort by name (Dovecot) keep arrival order.
    pub time: u64,
    /// The claim's id; anything but `[A-Za-z0-9_-]` is replaced by `_`.
    pub claim: String,
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
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // or truncates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let raw = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_string()
    };
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

/// The bases of all messages in `new/` and `cur/` of the Maildir `dir`
/// (empty when it does not exist yet).
pub fn delivered_bases(dir: &Path) -> io::Result<HashSet<String>> {
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
                bases.insert(base_of(name).to_string());
            }
        }
    }
    Ok(bases)
}

/// Whether a message whose name has this `base` is already in `new/` or
/// `cur/` of the Maildir `dir` (a one-off check; the filer caches
/// [`delivered_bases`] instead).
pub fn already_delivered(dir: &Path, base: &str) -> io::Result<bool> {
    Ok(delivered_bases(dir)?.contains(base))
}

/// Creates a new file in `dir/tmp` with a unique name (0600, O_EXCL).
pub fn create_tmp(dir: &Path, namer: &Namer) -> io::Result<(PathBuf, File)> {
    loop {
        let path = dir.join("tmp").join(namer.unique_base());
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes a finished file in `tmp/` visible as `new/NAME` without ever
/// overwriting: renameat2(RENAME_NOREPLACE) on Linux (one step), else (or
/// where the file system lacks it) link(2) then unlink of the `tmp/` name, as
/// the maildir spec says. Returns false (and removes the tmp file) when
/// `new/NAME` already exists.
pub fn publish(tmp: &Path, dir: &Path, name: &str) -> io::Result<bool> {
    let target = dir.join("new").join(name);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    match rename_noreplace(tmp, &target) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(tmp)?;
            return Ok(false);
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {}
        Err(e) => return Err(e),
    }
    let linked = match fs::hard_link(tmp, &target) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    fs::remove_file(tmp)?;
    Ok(linked)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// fsyncs a directory, making the names created in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn publish_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), false).unwrap();
        let namer = Namer::new(None);
        let (tmp1, _) = create_tmp(dir.path(), &namer).unwrap();
        fs::write(&tmp1, "first").unwrap();
        assert!(publish(&tmp1, dir.path(), "m,S=5").unwrap());
        let (tmp2, _) = create_tmp(dir.path(), &namer).unwrap();
        fs::write(&tmp2, "other").unwrap();
        assert!(!publish(&tmp2, dir.path(), "m,S=5").unwrap());
        assert_eq!(fs::read(dir.path().join("new/m,S=5")).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn base_ignores_size_and_flags() {
        assert_eq!(base_of("1.M2P3Q4.h,S=10"), "1.M2P3Q4.h");
        assert_eq!(base_of("1.M2P3Q4.h,S=10,W=12:2,RS"), "1.M2P3Q4.h");
        assert_eq!(base_of("1.M2P3Q4.h:2,"), "1.M2P3Q4.h");
    }
}
