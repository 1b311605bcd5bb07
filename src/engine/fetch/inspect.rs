//! What a fetch would do on a server, asked without claiming anything: the
//! probe (spool, tools, permissions), the strategy and compression it would
//! choose and why, and the claims earlier runs left there (`check`, a dry
//! run, the dashboard's spool check).

use crate::engine::account::Account;
use crate::engine::claim::{
    self, choose_method, choose_strategy, parse_claims, parse_probe, parse_reply, ClaimReply,
    MethodChoice, Probe, RemoteClaim, StrategyChoice, Unsupported,
};
use crate::engine::ssh::{Connection, OpenChannel};

use super::FetchError;

/// What `check` (and a dry run) learned about an account's server.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The probe's facts.
    pub probe: Probe,
    /// The claim strategy a fetch would use, or why none is safe.
    pub strategy: Result<StrategyChoice, Unsupported>,
    /// The compression a fetch would use, or why the configured one cannot.
    pub method: Result<MethodChoice, Unsupported>,
    /// Claims left on the server by earlier interrupted runs.
    pub leftovers: Vec<RemoteClaim>,
    /// SSH transport compression negotiated on this connection.
    pub transport_compression: String,
}

/// Runs one command of the claim script and returns its records.
pub(super) fn script(
    conn: &Connection,
    args: &[&[u8]],
) -> Result<Vec<(String, String)>, FetchError> {
    let out = conn.run_script(claim::remote_script(), args)?;
    Ok(parse_reply(&out.stdout, out.stderr.as_bytes(), out.status)?)
}

/// [`script`] on a channel opened before ([`Connection::open_channel`]).
pub(super) fn script_on(
    conn: &Connection,
    channel: OpenChannel,
    args: &[&[u8]],
) -> Result<Vec<(String, String)>, FetchError> {
    let out = conn.run_script_on(channel, claim::remote_script(), args)?;
    Ok(parse_reply(&out.stdout, out.stderr.as_bytes(), out.status)?)
}

pub(super) fn spool_arg(account: &Account) -> &[u8] {
    account.spool.as_deref().unwrap_or("").as_bytes()
}

/// Keeps the claim script started ahead on an open session, prepared for
/// the account's spool (claim.sh `standby`), so that the next fetch's
/// claim step (or probe) starts with its command line, not an exec
/// request. Never waits; called at each turn of the session's idle loop.
pub fn keep_ready(conn: &Connection, account: &Account) {
    conn.keep_ready(claim::remote_script(), &[b"standby", spool_arg(account)]);
}

/// Probes the server over an open connection: spool path and size, tools.
/// The dashboard's periodic spool-size check.
pub fn probe(conn: &Connection, account: &Account) -> Result<Probe, FetchError> {
    Ok(parse_probe(&script(
        conn,
        &[b"probe", spool_arg(account)],
    )?)?)
}

/// Probes the server and lists the finished claims earlier runs left there
/// (when it can hash them), in one remote step.
pub(super) fn survey(
    conn: &Connection,
    account: &Account,
) -> Result<(Probe, ClaimReply), FetchError> {
    let (probe, claims, _) = survey_records(conn, account)?;
    Ok((probe, claims))
}

/// A script reply's records, `(KEY, REST)`.
pub(super) type Records = Vec<(String, String)>;

/// [`survey`], with the reply's records (the facts a fetch keeps).
pub(super) fn survey_records(
    conn: &Connection,
    account: &Account,
) -> Result<(Probe, ClaimReply, Records), FetchError> {
    let records = script(conn, &[b"survey", spool_arg(account)])?;
    Ok((parse_probe(&records)?, parse_claims(&records)?, records))
}

/// Probes the server and says what a fetch would do, claiming nothing.
pub fn inspect(conn: &Connection, account: &Account) -> Result<Inspection, FetchError> {
    let (probe, leftovers) = survey(conn, account)?;
    let leftovers = leftovers.claims;
    Ok(Inspection {
        strategy: choose_strategy(&probe, account.claim),
        method: choose_method(&probe, account.compression, account.zstd_level),
        leftovers,
        transport_compression: conn.compression().1,
        probe,
    })
}

/// A paragraph saying what a fetch of this server would do, and why.
pub fn describe(i: &Inspection) -> String {
    let p = &i.probe;
    let mut lines = vec![match p.spool_size {
        Some(n) => format!(
            "spool {} holds {n} bytes{}",
            p.spool,
            p.spool_messages
                .map(|m| format!(" ({m} message(s))"))
                .unwrap_or_default()
        ),
        None => format!("spool {} does not exist (no mail)", p.spool),
    }];
    lines.push(match &i.strategy {
        Ok(s) => format!("claim: {} — {}", s.strategy.as_str(), s.reason),
        Err(e) => format!("claim: impossible — {e}"),
    });
    lines.push(match &i.method {
        Ok(m) => format!("compression: {} — {}", m.method.label(), m.reason),
        Err(e) => format!("compression: impossible — {e}"),
    });
    lines.push(format!(
        "SSH transport compression on this connection: {}",
        i.transport_compression
    ));
    if !i.leftovers.is_empty() {
        let bytes: u64 = i.leftovers.iter().map(|c| c.size).sum();
        lines.push(format!(
            "{} claim(s) left by earlier runs ({bytes} bytes) will be fetched first",
            i.leftovers.len()
        ));
    }
    lines.join("\n")
}
