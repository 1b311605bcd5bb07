//! Process exit codes, documented in the README, so that cron jobs and
//! scripts can tell a bad config from a busy lock from a failed transfer.

use crate::engine::failure::Failure;

/// What a `mailhaul` run ended with; the discriminant is the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done.
    Ok = 0,
    /// An error that fits no other class (I/O on the local side, a bug).
    Failure = 1,
    /// The command line was wrong (clap uses 2 as well).
    Usage = 2,
    /// The config file could not be read or is invalid.
    Config = 3,
    /// The server's host key is unknown (under `strict`), changed or revoked.
    HostKey = 4,
    /// Authentication failed.
    Auth = 5,
    /// The spool's lock stayed busy longer than the bounded wait.
    LockBusy = 6,
    /// The connection or the transfer failed, or the download did not verify.
    Transfer = 7,
    /// Some messages could not be delivered; they are kept, and named.
    PartialDelivery = 8,
    /// The server lacks a tool a safe claim needs (the message says which).
    ServerUnsupported = 9,
    /// sendmail interface (`send`): bad command line or no recipients
    /// (sysexits EX_USAGE).
    SysUsage = 64,
    /// sendmail interface: bad input data, e.g. a line break in an address
    /// (EX_DATAERR).
    SysDataErr = 65,
    /// sendmail interface: the server's sendmail said the recipient does not
    /// exist (EX_NOUSER).
    SysNoUser = 67,
    /// sendmail interface: the server's sendmail refused for another
    /// permanent reason (EX_UNAVAILABLE).
    SysUnavailable = 69,
    /// sendmail interface: the message could not be written to the outbox
    /// (EX_CANTCREAT).
    SysCantCreat = 73,
    /// sendmail interface: reading the message failed (EX_IOERR).
    SysIoErr = 74,
    /// sendmail interface: queued but not delivered yet (`--now`), or a
    /// temporary failure (EX_TEMPFAIL).
    SysTempFail = 75,
    /// sendmail interface: the server's sendmail refused, not permitted
    /// (EX_NOPERM).
    SysNoPerm = 77,
    /// sendmail interface: the config is missing or wrong (EX_CONFIG).
    SysConfig = 78,
}

impl Exit {
    /// The numeric exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Failure> for Exit {
    /// The exit code a headless run ends with after an engine failure.
    fn from(f: Failure) -> Exit {
        match f {
            Failure::Local => Exit::Failure,
            Failure::Config => Exit::Config,
            Failure::HostKey => Exit::HostKey,
            Failure::Auth => Exit::Auth,
            Failure::LockBusy => Exit::LockBusy,
            Failure::Transfer => Exit::Transfer,
            Failure::PartialDelivery => Exit::PartialDelivery,
            Failure::ServerUnsupported => Exit::ServerUnsupported,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}
