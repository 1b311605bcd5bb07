//! User authentication: the ssh-agent first, then private key files.
//!
//! An encrypted key is recognised *before* libssh2 sees it (libssh2 reports
//! a wrong or missing passphrase with misleading errors), and its passphrase
//! comes from `passphrase_command` or the prompt hook; it is handed to
//! libssh2 and dropped, never kept.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ssh2::{ErrorCode, Session};

use super::host_keys::base64_decode;
use super::{Prompter, SshError, Target};

/// Authenticates `target.user` on a session whose handshake is done;
/// `socket` is (a duplicate of) the session's socket, watched for the server
/// hanging up.
pub fn authenticate(
    session: &Session,
    socket: &TcpStream,
    target: &Target,
    prompter: &dyn Prompter,
) -> Result<(), SshError> {
    // No `none` query first (it costs a round trip on every connection):
    // the server's methods are asked only when no key worked, to say why.
    let mut tried = Vec::new();
    let hung_up = "the server hung up: too many keys offered? (sshd's MaxAuthTries \
                   counts the agent's keys too)";
    if let Some(agent) = &target.agent_socket {
        let clean = match try_agent(session, &target.user, agent) {
            Ok(KeyOutcome::Accepted) => return Ok(()),
            Ok(KeyOutcome::Refused { clean }) => {
                tried.push(format!("agent {}", agent.display()));
                clean
            }
            Ok(KeyOutcome::Failed(e)) | Err(e) => {
                tried.push(format!("agent ({e})"));
                true
            }
        };
        if peer_closed(socket, grace(clean)) {
            tried.push(hung_up.to_string());
            return Err(refused(target, tried, true));
        }
    }
    // The first error that says more than "refused" (a wrong passphrase, an
    // unreadable key) is what the user needs to see if nothing works.
    let mut specific: Option<SshError> = None;
    let mut closed = false;
    for path in &target.identity_files {
        if !path.exists() && !target.identity_files_explicit {
            continue;
        }
        let clean = match try_key_file(session, target, path, prompter) {
            KeyOutcome::Accepted => return Ok(()),
            KeyOutcome::Refused { clean } => {
                tried.push(path.display().to_string());
                clean
            }
            KeyOutcome::Failed(e) => {
                tried.push(format!("{} ({e})", path.display()));
                specific.get_or_insert(e);
                true
            }
        };
        if peer_closed(socket, grace(clean)) {
            tried.push(hung_up.to_string());
            closed = true;
            break;
        }
    }
    if let Some(e) = specific {
        return Err(e);
    }
    if closed {
        return Err(refused(target, tried, closed));
    }
    match session.auth_methods(&target.user) {
        // The "none" method was accepted: logged in after all.
        Err(_) if session.authenticated() => Ok(()),
        Ok(methods) if !methods.split(',').any(|m| m == "publickey") => {
            Err(SshError::AuthRefused {
                user: target.user.clone(),
                host: target.host.clone(),
                tried: format!("nothing: the server only offers `{methods}`, mailhaul uses keys"),
                hung_up: false,
            })
        }
        _ => Err(refused(target, tried, closed)),
    }
}

fn refused(target: &Target, tried: Vec<String>, hung_up: bool) -> SshError {
    SshError::AuthRefused {
        user: target.user.clone(),
        host: target.host.clone(),
        tried: if tried.is_empty() {
            "no key: no agent and no key file (set `identity_file`)".into()
        } else {
            tried.join(", ")
        },
        hung_up,
    }
}

/// How long to wait for the server to hang up after an attempt: not at all
/// after a plain "no", a moment after an unanswered request.
fn grace(clean_refusal: bool) -> Duration {
    if clean_refusal {
        Duration::ZERO
    } else {
        Duration::from_millis(500)
    }
}

/// Whether the server has closed the TCP connection (end-of-file seen by a
/// peek), waiting up to `grace` for it.
fn peer_closed(socket: &TcpStream, grace: Duration) -> bool {
    let fd = socket.as_raw_fd();
    let peek = || {
        let mut byte = [0u8; 1];
        // SAFETY: recv(2) into a 1-byte buffer we own, on an open socket;
        // MSG_PEEK consumes nothing, MSG_DONTWAIT never blocks.
        unsafe {
            libc::recv(
                fd,
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        }
    };
    if peek() == 0 {
        return true;
    }
    if grace.is_zero() {
        return false;
    }
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    let millis = i32::try_from(grace.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, millis) };
    peek() == 0
}

/// Tries every identity the agent holds, until one is accepted or the
/// server stops answering cleanly.
fn try_agent(session: &Session, user: &str, socket: &Path) -> Result<KeyOutcome, SshError> {
    let agent_err = |source| SshError::Agent {
        socket: socket.to_path_buf(),
        source,
    };
    let mut agent = session.agent().map_err(agent_err)?;
    agent.set_identity_path(socket).map_err(agent_err)?;
    agent.connect().map_err(agent_err)?;
    agent.list_identities().map_err(agent_err)?;
    let identities = agent.identities().map_err(agent_err)?;
    let mut outcome = KeyOutcome::Refused { clean: true };
    for id in &identities {
        match agent.userauth(user, id) {
            Ok(()) => {
                outcome = KeyOutcome::Accepted;
                break;
            }
            Err(e) if is_clean_refusal(&e) => {}
            Err(_) => {
                outcome = KeyOutcome::Refused { clean: false };
                break;
            }
        }
    }
    let _ = agent.disconnect();
    Ok(outcome)
}

/// Why a key file did not log us in.
enum KeyOutcome {
    /// Logged in.
    Accepted,
    /// The server does not accept this key; `clean` when it said so in a
    /// plain "no" (rather than not answering: it may have hung up).
    Refused {
        /// Whether the server answered with a plain refusal.
        clean: bool,
    },
    /// The key could not be used at all; the error says why.
    Failed(SshError),
}

fn try_key_file(
    session: &Session,
    target: &Target,
    path: &Path,
    prompter: &dyn Prompter,
) -> KeyOutcome {
    let (encrypted, passphrase) = match read_key(target, path, prompter) {
        Ok(key) => key,
        Err(failure) => return KeyOutcome::Failed(failure),
    };
    let result = session.userauth_pubkey_file(&target.user, None, path, passphrase.as_deref());
    drop(passphrase);
    match result {
        Ok(()) if session.authenticated() => KeyOutcome::Accepted,
        Ok(()) => KeyOutcome::Refused { clean: true },
        Err(e) if is_clean_refusal(&e) => KeyOutcome::Refused { clean: true },
        Err(e) if is_refusal(&e) => KeyOutcome::Refused { clean: false },
        // libssh2 could not load the key: with an encrypted key that is a
        // wrong passphrase (whatever libssh2's message says).
        Err(_) if encrypted => KeyOutcome::Failed(SshError::WrongPassphrase {
            path: path.to_path_buf(),
        }),
        Err(e) => KeyOutcome::Failed(SshError::KeyFile {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        }),
    }
}

/// Reads a key file to learn whether it is encrypted and, if it is, gets
/// its passphrase.
fn read_key(
    target: &Target,
    path: &Path,
    prompter: &dyn Prompter,
) -> Result<(bool, Option<String>), SshError> {
    let failed = |reason: String| SshError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let encrypted =
        key_is_encrypted(&String::from_utf8_lossy(&text)).map_err(|e| failed(e.to_string()))?;
    if !encrypted {
        return Ok((false, None));
    }
    let phrase = match &target.passphrase_command {
        Some(argv) => run_passphrase_command(argv)?,
        None => prompter
            .passphrase(path)
            .ok_or_else(|| SshError::NoPassphrase {
                path: path.to_path_buf(),
            })?,
    };
    Ok((true, Some(phrase)))
}

/// Whether libssh2's error is the server's plain "no" to a key.
fn is_clean_refusal(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_AUTHENTICATION_FAILED)
}

/// Whether libssh2's error means "the server did not accept this key" (a
/// refused signature, or no answer at all).
fn is_refusal(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_AUTHENTICATION_FAILED)
            | ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED)
    )
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
pub fn key_is_encrypted(text: &str) -> Result<bool, NotAKey> {
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

/// Why a key file's text is not a private key mailhaul can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAKey(&'static str);

impl From<&'static str> for NotAKey {
    fn from(why: &'static str) -> NotAKey {
        NotAKey(why)
    }
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
