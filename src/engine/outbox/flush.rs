//! Sending an account's outbox: the one call `mailhaul queue flush`,
//! `send --now` and the engine's background flush make. It takes the
//! outbox's relay lock, connects (or uses a session already open, see
//! [`flush_over`]), and hands the queue to the transport `account.send`
//! names: the server's sendmail (`relay`, the default) or SMTP to the
//! forward's target (`smtp`).

use std::io;

use super::relay::{self, Method, Outcome, RelayError, RelayReport};
use super::{smtp, Outbox, OutboxMessage};
use crate::engine::account::{Account, Compression, SendVia, TransportCompression, ZstdLevel};
use crate::engine::failure::Failure;
use crate::engine::ssh::{self, Connection, Prompter, Target};
use crate::engine::tunnel::{forward_target, ForwardSpecError};

/// Which queued messages a flush takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Every queued message, backoff ignored (`mailhaul queue flush`).
    All,
    /// Those whose backoff has run out at this time (seconds since the
    /// epoch): a background flush.
    At(u64),
}

/// Why a flush sent nothing; every message it was to send stays queued,
/// its attempt counted.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The outbox's relay lock could not be taken.
    #[error("cannot lock the outbox: {0}")]
    Lock(#[source] io::Error),
    /// The queue could not be read.
    #[error("cannot read the outbox: {0}")]
    Read(#[source] io::Error),
    /// `forward.target` is not host:port (`send = "smtp"`).
    #[error(transparent)]
    Target(#[from] ForwardSpecError),
    /// Connecting or relaying failed.
    #[error(transparent)]
    Relay(#[from] RelayError),
}

impl FlushError {
    /// The class of failure, for exit codes and the dashboard.
    pub fn failure(&self) -> Failure {
        match self {
            FlushError::Lock(_) | FlushError::Read(_) => Failure::Local,
            FlushError::Target(_) => Failure::Config,
            FlushError::Relay(RelayError::Ssh(e)) => e.failure(),
            FlushError::Relay(RelayError::Server { .. } | RelayError::SmtpLink { .. }) => {
                Failure::Transfer
            }
            FlushError::Relay(RelayError::Io(_)) => Failure::Local,
        }
    }
}

/// Sends the queued messages of `account` (those `due`) through the
/// transport `account.send` names, and records every outcome in `outbox`.
/// `prompter` answers host-key and passphrase questions (`NoPrompts` in
/// the background). A message an earlier SMTP run left unsure (its end of
/// data out, no answer recorded) goes to the failed folder first, whatever
/// the transport, and is reported as [`Outcome::Unsure`].
pub fn flush(
    account: &Account,
    outbox: &Outbox,
    prompter: &dyn Prompter,
    due: Due,
) -> Result<RelayReport, FlushError> {
    flush_over(None, account, outbox, prompter, due)
}

/// [`flush`] over `session`, an open session to the account's server (the
/// supervisor worker's), unless the messages rely on a transport
/// compression it lacks (`compression = "ssh"`, SMTP with another
/// compression than the forward's); then (or without one) over a session
/// of its own, closed at the end.
pub fn flush_over(
    session: Option<&Connection>,
    account: &Account,
    outbox: &Outbox,
    prompter: &dyn Prompter,
    due: Due,
) -> Result<RelayReport, FlushError> {
    let _lock = outbox.lock_sending().map_err(FlushError::Lock)?;
    let queued = outbox.queued().map_err(FlushError::Read)?;
    let mut unsure = Vec::new();
    let mut todo = Vec::new();
    for m in due_messages(queued, due) {
        if outbox.was_sending(&m.id) {
            outbox
                .mark_failed(&m.id, &smtp::interrupted_reason())
                .map_err(|e| FlushError::Relay(e.into()))?;
            unsure.push((m.id, Outcome::Unsure));
        } else {
            todo.push(m);
        }
    }
    let mut report = if todo.is_empty() {
        RelayReport::default()
    } else {
        relay_all(session, account, outbox, &todo, prompter).inspect_err(|e| {
            // Those still queued (none was sent) wait for the next try.
            let why = e.to_string();
            if let Ok(left) = outbox.queued() {
                for m in left.iter().filter(|m| todo.iter().any(|t| t.id == m.id)) {
                    let _ = outbox.mark_deferred(&m.id, &why);
                }
            }
        })?
    };
    unsure.append(&mut report.outcomes);
    report.outcomes = unsure;
    Ok(report)
}

fn due_messages(queued: Vec<OutboxMessage>, due: Due) -> Vec<OutboxMessage> {
    match due {
        Due::All => queued,
        Due::At(now) => queued.into_iter().filter(|m| m.next_try <= now).collect(),
    }
}

/// The transport compression a session of the flush's own is opened with.
/// Through sendmail, SSH compresses too (but with `compression = "none"`):
/// the exec request's fixed stub text (about 0.3 kB) shrinks a little,
/// and the message stream, compressed already, passes through nearly
/// unchanged. SMTP goes as it is: the SSH transport compresses it, as the
/// forward's session does.
fn transport_for(account: &Account) -> TransportCompression {
    match account.send {
        SendVia::Sendmail if account.compression == Compression::None => TransportCompression::Off,
        SendVia::Sendmail => TransportCompression::Zlib,
        SendVia::Smtp => account.forward.compression,
    }
}

/// Whether an open session with `transport` compression may carry the
/// flush: one with the compression a session of its own would have, or,
/// through sendmail, any session when the messages go up compressed by
/// their method (the handshake a new session costs is far more than the
/// stub text SSH would have compressed); not for messages that rely on
/// the SSH transport's compression (`compression = "ssh"`, SMTP).
fn can_use(transport: TransportCompression, account: &Account) -> bool {
    transport == transport_for(account)
        || (account.send == SendVia::Sendmail
            && !matches!(account.compression, Compression::Ssh | Compression::None))
}

fn relay_all(
    session: Option<&Connection>,
    account: &Account,
    outbox: &Outbox,
    messages: &[OutboxMessage],
    prompter: &dyn Prompter,
) -> Result<RelayReport, FlushError> {
    let target = Target::resolve_with_user_config(account).map_err(RelayError::from)?;
    let smtp_target = match account.send {
        SendVia::Sendmail => None,
        SendVia::Smtp => Some(forward_target(account)?),
    };
    let transport = transport_for(account);
    let own;
    let conn = match session.filter(|c| can_use(c.transport(), account)) {
        Some(conn) => conn,
        None => {
            own = ssh::connect(&target, transport, prompter).map_err(RelayError::from)?;
            &own
        }
    };
    match smtp_target {
        None => Ok(relay::relay(
            conn,
            outbox,
            messages,
            &methods(account, messages.iter().map(|m| m.size).sum()),
            account.sendmail.as_deref(),
        )?),
        Some((host, port)) => Ok(smtp::relay(
            conn,
            outbox,
            messages,
            (&host, port),
            &helo_name(),
            &target.user,
        )?),
    }
}

/// The name the SMTP client gives in EHLO: this host's name when it is a
/// plain domain name, else `localhost`.
fn helo_name() -> String {
    crate::engine::os::hostname()
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
        .unwrap_or_else(|| "localhost".to_string())
}

/// How the account's messages go up to its sendmail, best first, from
/// `account.compression` and the batch's size (bytes of messages).
fn methods(account: &Account, batch: u64) -> Vec<Method> {
    // What goes up is small next to the link, and the uplink is the scarce
    // thing: a batch of ordinary size goes as xz (its best, slowest
    // setting), a larger one as zstd at its best level, unless the account
    // names a zstd level.
    let (level, xz) = match account.zstd_level {
        Some(ZstdLevel::Fixed(n)) => (n, false),
        _ => (19, batch <= relay::XZ_MAX_BATCH),
    };
    match account.compression {
        Compression::Auto if xz => vec![Method::Xz, Method::Zstd(level), Method::Gzip],
        Compression::Auto => vec![Method::Zstd(level), Method::Gzip],
        Compression::Zstd => vec![Method::Zstd(level)],
        Compression::Gzip => vec![Method::Gzip],
        Compression::Ssh | Compression::None => vec![Method::Plain],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::outbox::submit::Envelope;

    fn message(id: &str, next_try: u64) -> OutboxMessage {
        OutboxMessage {
            id: id.to_string(),
            place: super::super::Place::Queued,
            queued_at: 0,
            size: 1,
            envelope: Envelope::default(),
            body_offset: 0,
            attempts: 1,
            next_try,
            last_error: None,
        }
    }

    #[test]
    fn a_kept_session_carries_messages_unless_they_need_its_compression() {
        use TransportCompression::{Huffman, Off, Zlib};
        let account = |extra: &str| {
            crate::engine::account::first_account(&format!(
                "[[account]]\nname = \"a\"\nhost = \"h\"\n{extra}"
            ))
        };
        // Compressed by their method: any session will do.
        for extra in ["", "compression = \"zstd\"\n", "compression = \"gzip\"\n"] {
            assert!(can_use(Off, &account(extra)), "{extra}");
            assert!(can_use(Huffman, &account(extra)), "{extra}");
        }
        // Compressed by SSH only: zlib, as a session of the flush's own.
        let ssh = account("compression = \"ssh\"\n");
        assert!(!can_use(Huffman, &ssh));
        assert!(can_use(Zlib, &ssh));
        let none = account("compression = \"none\"\n");
        assert!(can_use(Off, &none));
        assert!(!can_use(Zlib, &none));
        let smtp = account("send = \"smtp\"\n[account.forward]\ncompression = \"zlib\"\n");
        assert!(!can_use(Off, &smtp));
        assert!(can_use(Zlib, &smtp));
    }

    #[test]
    fn a_background_flush_takes_only_messages_whose_backoff_ran_out() {
        let queued = vec![
            message("early", 100),
            message("late", 300),
            message("new", 0),
        ];
        let ids = |v: Vec<OutboxMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(
            ids(due_messages(queued.clone(), Due::At(200))),
            ["early", "new"]
        );
        assert_eq!(
            ids(due_messages(queued, Due::All)),
            ["early", "late", "new"]
        );
    }

    #[test]
    fn compression_setting_chooses_the_methods() {
        let account = crate::engine::account::first_account(
            "[[account]]\nname = \"a\"\nhost = \"h\"\ncompression = \"gzip\"\n",
        );
        assert_eq!(methods(&account, 100), [Method::Gzip]);
        let account = crate::engine::account::first_account(
            "[[account]]\nname = \"a\"\nhost = \"h\"\nzstd_level = 3\n",
        );
        assert_eq!(methods(&account, 100), [Method::Zstd(3), Method::Gzip]);
        let account =
            crate::engine::account::first_account("[[account]]\nname = \"a\"\nhost = \"h\"\n");
        assert_eq!(
            methods(&account, 100),
            [Method::Xz, Method::Zstd(19), Method::Gzip]
        );
        assert_eq!(
            methods(&account, relay::XZ_MAX_BATCH + 1),
            [Method::Zstd(19), Method::Gzip]
        );
    }
}
