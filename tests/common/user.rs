//! Throwaway local users: created with `useradd`, removed with `userdel -r`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

use super::{proc, require_root_and_packages, run, unique_name, SystemLock, TestSshd};

/// An unprivileged local user with a home directory and a mail spool
/// `/var/mail/NAME` (NAME:mail 0660, as Debian creates it); removed with its
/// home and spool on drop, after its remaining processes are killed by PID.
pub struct TestUser {
    /// The login name: the prefix given to [`TestUser::create`] plus a random suffix.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
    /// The home directory.
    pub home: PathBuf,
    /// The mail spool, `/var/mail/NAME`.
    pub spool: PathBuf,
}

impl TestUser {
    /// Writes the user's `~/.msmtprc` (0600, theirs): msmtp sends through
    /// the local Postfix's SMTP on port 25 as NAME@localhost. The tests that
    /// make msmtp the server's sendmail use it to get SMTP's refusals.
    pub fn write_msmtprc(&self) {
        let rc = self.home.join(".msmtprc");
        std::fs::write(
            &rc,
            format!(
                "account default\nhost 127.0.0.1\nport 25\nauth off\ntls off\nfrom {}@localhost\n",
                self.name
            ),
        )
        .unwrap();
        std::os::unix::fs::chown(&rc, Some(self.uid), Some(self.gid)).unwrap();
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Creates a user named `prefix` (at most 8 characters, lowercase letter
    /// first) followed by 8 random hex digits, so parallel tests never collide.
    pub fn create(prefix: &str) -> TestUser {
        require_root_and_packages();
        let name = unique_name(prefix);
        {
            let _lock = SystemLock::acquire("users");
            run(Command::new("/usr/sbin/useradd")
                .args(["-m", "-s", "/bin/sh", "-U"])
                .arg(&name));
            // With `UsePAM no`, a locked password (`!`) refuses even key logins.
            run(Command::new("/usr/sbin/usermod")
                .args(["-p", "*"])
                .arg(&name));
        }
        let home = PathBuf::from(format!("/home/{name}"));
        let meta = std::fs::metadata(&home).expect("home directory");
        let spool = PathBuf::from(format!("/var/mail/{name}"));
        let mail_gid = group_id("mail");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&spool)
            .expect("create spool");
        std::os::unix::fs::chown(&spool, Some(meta.uid()), Some(mail_gid)).expect("chown spool");
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o660))
            .expect("chmod spool");
        TestUser {
            name,
            uid: meta.uid(),
            gid: meta.gid(),
            home,
            spool,
        }
    }

    /// Creates a user as [`TestUser::create`] does and lets `sshd`'s client
    /// keys log in as it.
    pub fn create_for(sshd: &TestSshd, prefix: &str) -> TestUser {
        let user = TestUser::create(prefix);
        sshd.authorize(&user.name);
        user
    }

    /// The spool's current contents (empty if it is gone).
    pub fn spool_contents(&self) -> Vec<u8> {
        std::fs::read(&self.spool).unwrap_or_default()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        proc::kill_user_processes(self.uid);
        let _lock = SystemLock::acquire("users");
        let _ = Command::new("/usr/sbin/userdel")
            .args(["-r", "-f"])
            .arg(&self.name)
            .output();
        let _ = std::fs::remove_file(&self.spool);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// The numeric id of a group, from `/etc/group`.
pub fn group_id(group: &str) -> u32 {
    std::fs::read_to_string("/etc/group")
        .expect("read /etc/group")
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(group)).then(|| f.nth(1)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no group {group} in /etc/group"))
}
