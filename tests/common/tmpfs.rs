//! A tmpfs mounted for a test (a small local or server disk that fills
//! up), shared by the fetch tests of a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for a test, unmounted (lazily, should a process still
/// hold it) on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`) at `at`, owned by
    /// `uid:gid` with mode 0700.
    pub fn mount(at: &Path, size: &str, uid: u32, gid: u32) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        super::run(Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700,uid={uid},gid={gid}"),
            "tmpfs",
            at.to_str().unwrap(),
        ]));
        Tmpfs(at.to_path_buf())
    }

    /// Gives it room for `size` from now on (`mount -o remount,size=`).
    pub fn resize(&self, size: &str) {
        super::run(Command::new("mount").args([
            "-o",
            &format!("remount,size={size}"),
            self.0.to_str().unwrap(),
        ]));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
