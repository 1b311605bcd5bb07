//! User authentication: the ssh-agent first, then private key files.
//!
//! An encrypted key is recognised *before* libssh2 sees it (libssh2 reports
//! a wrong or missing passphrase with misleading errors), and its passphrase
//! comes from `passphrase_command` or the prompt hook; it is handed to
//! libssh2 and dropped, never kept.

use std::path::Path;
use std::process::{Command, Stdio};

use ssh2::{ErrorCode, Session};

use super::host_keys::base64_decode;
use super::{Prompter, SshError, Target};

/// Authenticates `target.user` on a session whose handshake is done.
pub fn authenticate(
    session: &Session,
    target: &Target,
    prompter: &dyn Prompter,
) -> Result<(), SshError> {
    let methods = match session.auth_methods(&target.user) {
        Ok(m) => m.to_string(),
        // The "none" method was accepted: nothing more to do.
        Err(_) if session.authenticated() => return Ok(()),
        Err(e) => {
            return Err(SshError::Handshake {
                host: target.host.clone(),
                port: target.port,
                source: e,
            })
        }
    };
    if !methods.split(',').any(|m| m == "publickey") {
        return Err(SshError::AuthRefused {
            user: target.user.clone(),
            host: target.host.clone(),
            tried: format!("nothing: the server only offers `{methods}`, mailhaul uses keys"),
        });
    }
    let mut tried = Vec::new();
    if let Some(socket) = &target.agent_socket {
        match try_agent(session, &target.user, socket) {
            Ok(true) => return Ok(()),
            Ok(false) => tried.push(format!("agent {}", socket.display())),
            Err(e) => tried.push(format!("agent ({e})")),
        }
    }
    // The first error that says more than "refused" (a wrong passphrase, an
    // unreadable key) is what the user needs to see if nothing works.
    let mut specific: Option<SshError> = None;
    for path in &target.identity_files {
        if !path.exists() && !target.identity_files_explicit {
            continue;
        }
        match try_key_file(session, target, path, prompter) {
            Ok(()) => return Ok(()),
            Err(KeyOutcome::Refused) => tried.push(path.display().to_string()),
            Err(KeyOutcome::Failed(e)) => {
                tried.push(format!("{} ({e})", path.display()));
                specific.get_or_insert(e);
            }
            Err(KeyOutcome::HungUp) => {
                tried.push(format!(
                    "{} (the server hung up: too many keys offered? see MaxAuthTries)",
                    path.display()
                ));
                break;
            }
        }
    }
    if let Some(e) = specific {
        return Err(e);
    }
    Err(SshError::AuthRefused {
        user: target.user.clone(),
        host: target.host.clone(),
        tried: if tried.is_empty() {
            "no key: no agent and no key file (set `identity_file`)".into()
        } else {
            tried.join(", ")
        },
    })
}

/// Tries every identity the agent holds; `Ok(false)` when it has none or
/// none is accepted.
fn try_agent(session: &Session, user: &str, socket: &Path) -> Result<bool, SshError> {
    let agent_err = |source| SshError::Agent {
        socket: socket.to_path_buf(),
        source,
    };
    let mut agent = session.agent().map_err(agent_err)?;
    agent.set_identity_path(socket).map_err(agent_err)?;
    agent.connect().map_err(agent_err)?;
    agent.list_identities().map_err(agent_err)?;
    let identities = agent.identities().map_err(agent_err)?;
    let accepted = identities.iter().any(|id| agent.userauth(user, id).is_ok());
    let _ = agent.disconnect();
    Ok(accepted)
}

/// Why a key file did not log us in.
enum KeyOutcome {
    /// The server does not accept this key.
    Refused,
    /// The key could not be used at all; the error says why.
    Failed(SshError),
    /// The server closed the connection.
    HungUp,
}

fn try_key_file(
    session: &Session,
    target: &Target,
    path: &Path,
    prompter: &dyn Prompter,
) -> Result<(), KeyOutcome> {
    let failed = |reason: String| {
        KeyOutcome::Failed(SshError::KeyFile {
            path: path.to_path_buf(),
            reason,
        })
    };
    let text = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let encrypted = key_is_encrypted(&String::from_utf8_lossy(&text)).map_err(failed)?;
    let passphrase = if encrypted {
        let phrase = match &target.passphrase_command {
            Some(argv) => run_passphrase_command(argv).map_err(KeyOutcome::Failed)?,
            None => prompter.passphrase(path).ok_or_else(|| {
                KeyOutcome::Failed(SshError::NoPassphrase {
                    path: path.to_path_buf(),
                })
            })?,
        };
        Some(phrase)
    } else {
        None
    };
    let result = session.userauth_pubkey_file(&target.user, None, path, passphrase.as_deref());
    drop(passphrase);
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(KeyOutcome::Refused),
        Err(e) if is_refusal(&e) => Err(KeyOutcome::Refused),
        Err(e) if is_hang_up(&e) => Err(KeyOutcome::HungUp),
        // libssh2 could not load the key: with an encrypted key that is a
        // wrong passphrase (whatever libssh2's message says).
        Err(_) if encrypted => Err(KeyOutcome::Failed(SshError::WrongPassphrase {
            path: path.to_path_buf(),
        })),
        Err(e) => Err(failed(e.message().to_string())),
    }
}

/// Whether libssh2's error means "the server did not accept this key".
fn is_refusal(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Session(libssh2_codes::AUTHENTICATION_FAILED)
            | ErrorCode::Session(libssh2_codes::PUBLICKEY_UNVERIFIED)
    )
}

/// Whether libssh2's error means the server closed the connection (e.g.
/// after `MaxAuthTries`).
fn is_hang_up(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Session(libssh2_codes::SOCKET_DISCONNECT)
            | ErrorCode::Session(libssh2_codes::SOCKET_RECV)
            | ErrorCode::Session(libssh2_codes::SOCKET_SEND)
    )
}

/// libssh2's error numbers used here (from libssh2.h).
mod libssh2_codes {
    pub const SOCKET_SEND: i32 = -7;
    pub const SOCKET_DISCONNECT: i32 = -13;
    pub const AUTHENTICATION_FAILED: i32 = -18;
    pub const PUBLICKEY_UNVERIFIED: i32 = -19;
    pub const SOCKET_RECV: i32 = -43;
}

/// Runs `passphrase_command` and returns its stdout without the trailing
/// line break (other whitespace is kept: it may be part of the passphrase).
pub fn run_passphrase_command(argv: &[String]) -> Result<String, SshError> {
    let fail = |reason: String| SshError::PassphraseCommand {
        command: argv.to_vec(),
        reason,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| fail("the command is empty".into()))?;
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!(
            "{}: {}",
            out.status,
            stderr.lines().next().unwrap_or("").trim()
        )));
    }
    let mut phrase =
        String::from_utf8(out.stdout).map_err(|_| fail("its output is not UTF-8".into()))?;
    if phrase.ends_with('\n') {
        phrase.pop();
        if phrase.ends_with('\r') {
            phrase.pop();
        }
    }
    Ok(phrase)
}

/// Whether a private key file's text is passphrase-protected: OpenSSH format
/// with a cipher other than `none`, PKCS#8 `ENCRYPTED PRIVATE KEY`, or a
/// legacy PEM key with `Proc-Type: 4,ENCRYPTED`. An error says why the text
/// is not a private key.
pub fn key_is_encrypted(text: &str) -> Result<bool, String> {
    const OPENSSH_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    if let Some(start) = text.find(OPENSSH_BEGIN) {
        let body = &text[start + OPENSSH_BEGIN.len()..];
        let body = &body[..body.find("-----END").ok_or("truncated OpenSSH key")?];
        let b64: String = body.split_whitespace().collect();
        let blob = base64_decode(&b64).ok_or("OpenSSH key body is not base64")?;
        let rest = blob
            .strip_prefix(b"openssh-key-v1\0")
            .ok_or("not an openssh-key-v1 key")?;
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("truncated OpenSSH key")?;
        let cipher = rest.get(4..4 + len).ok_or("truncated OpenSSH key")?;
        return Ok(cipher != b"none");
    }
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Ok(true);
    }
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
        return Ok(text.contains("Proc-Type: 4,ENCRYPTED"));
    }
    Err("not a private key (expected OpenSSH or PEM format)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssh_key(cipher: &str) -> String {
        let mut blob = b"openssh-key-v1\0".to_vec();
        blob.extend((cipher.len() as u32).to_be_bytes());
        blob.extend(cipher.as_bytes());
        blob.extend([0, 0, 0, 0]);
        let b64 = super::super::host_keys::base64_encode(&blob);
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{b64}\n-----END OPENSSH PRIVATE KEY-----\n")
    }

    #[test]
    fn recognises_encrypted_keys_of_every_format() {
        assert_eq!(key_is_encrypted(&openssh_key("none")), Ok(false));
        assert_eq!(key_is_encrypted(&openssh_key("aes256-ctr")), Ok(true));
        assert_eq!(
            key_is_encrypted("-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n"),
            Ok(true)
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nxx\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(key_is_encrypted(pem), Ok(true));
        assert_eq!(
            key_is_encrypted(
                "-----BEGIN RSA PRIVATE KEY-----\nxx\n-----END RSA PRIVATE KEY-----\n"
            ),
            Ok(false)
        );
        assert!(key_is_encrypted("ssh-ed25519 AAAA pub").is_err());
    }

    #[test]
    fn passphrase_command_output_loses_only_the_line_break() {
        let argv = |s: &str| vec!["printf".to_string(), s.to_string()];
        assert_eq!(run_passphrase_command(&argv(" a b \n")).unwrap(), " a b ");
        assert_eq!(run_passphrase_command(&argv("x\r\n")).unwrap(), "x");
        let e = run_passphrase_command(&["false".to_string()]).unwrap_err();
        assert!(e.to_string().contains("passphrase_command"), "{e}");
        assert!(run_passphrase_command(&[]).is_err());
    }
}
