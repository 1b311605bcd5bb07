//! A mailhaul SSH target for the test sshd, so that tests of the engine can
//! connect with one call.

use std::time::Duration;

use mailhaul::engine::account::HostKeyPolicy;
use mailhaul::engine::ssh::Target;

use super::TestSshd;

/// Logs in to `sshd` as `user` with its unencrypted client key, trusting only
/// its known_hosts (strict policy; no system-wide file), without the agent.
pub fn ssh_target(sshd: &TestSshd, user: &str) -> Target {
    Target {
        host: "127.0.0.1".into(),
        port: sshd.port,
        user: user.into(),
        identity_files: vec![sshd.key.clone()],
        identity_files_explicit: true,
        agent_socket: None,
        passphrase_command: None,
        known_hosts_file: sshd.known_hosts.clone(),
        system_known_hosts_files: Vec::new(),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Duration::from_secs(10),
    }
}
