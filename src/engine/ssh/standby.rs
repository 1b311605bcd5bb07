//! A script started ahead of need on an open session, prepared and waiting
//! for its command line (the claim script's `standby`): a step of that
//! script then sends its arguments as one line on the channel's stdin
//! instead of an exec request, so that neither sshd's start of a session
//! command, nor the login shell, the stub's hash check and the reading of
//! the program, nor the work the script does before every step (the claim
//! script's facts) stands between the step and its answer.
//!
//! [`Connection::keep_ready`], called at each turn of an open session's
//! idle loop, never waits: it takes the channel opened ahead
//! ([`Connection::request_channel`]), sends the exec request, and reads the
//! stub's answer as it arrives (the answer wakes the loop's poll of the
//! socket). [`Connection::start_script`] runs a step of the same script
//! (same sha256) on it.
//!
//! A standby that ended before its line came (the server killed it) has
//! done nothing and answers nothing: the step then starts on a new channel
//! as usual, and loses only that round trip. One that has waited
//! [`STANDBY_LIFE`] is told to end (its stdin closed) and replaced, so that
//! what it worked out ahead is never older than that. After
//! [`MAX_FAILURES`] standbys in a row that ended on their own or said
//! anything unasked, none is kept on that session.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use ssh2::Channel;

use super::script::{
    hex_words, is_eagain, Ahead, RemoteScript, ScriptMode, ScriptStream, StubAnswer,
    MAX_NOISE_LINES,
};
use super::{Connection, SshError};

/// How long a standby waits for its step before it is replaced: the age
/// of what it worked out ahead (the claim script's facts) is at most this.
pub const STANDBY_LIFE: Duration = Duration::from_secs(600);

/// Standbys in a row that may fail before a session keeps none.
const MAX_FAILURES: u32 = 3;

/// The standby of one session and how the last ones fared.
pub(super) struct Standby {
    stage: Stage,
    failures: u32,
}

impl Standby {
    /// None kept yet.
    pub(super) fn new() -> Standby {
        Standby {
            stage: Stage::None,
            failures: 0,
        }
    }
}

/// Where a session's standby is.
enum Stage {
    None,
    /// Its exec request is on its way.
    Starting(Start),
    /// Running and waiting for its command line since `since`.
    Ready {
        channel: Channel,
        sha256: String,
        since: Instant,
    },
    /// Told to end; dropped once the server has closed it.
    Retiring(Channel),
}

/// What one look at a stage found.
enum Turn {
    /// Nothing more to do before the server answers.
    Wait(Stage),
    /// Look again at once.
    Next(Stage),
    /// The standby is of no use; it counts as a failure. Its channel, if
    /// it has one to close, is told to end and dropped once the server has
    /// closed it (dropping one whose command still runs would wait for
    /// that command's end).
    Failed(Option<Channel>),
}

impl Connection {
    /// Keeps `script` started ahead with `args` on this session (see the
    /// module's doc), without waiting for anything: starts one on the
    /// channel opened ahead when none runs, takes in the stub's answer as
    /// it arrives, replaces one that ended or has waited [`STANDBY_LIFE`].
    /// Only on a session no other thread uses meanwhile.
    pub fn keep_ready<A: AsRef<[u8]>>(&self, script: &RemoteScript, args: &[A]) {
        let mut standby = self.standby.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let turn = match std::mem::replace(&mut standby.stage, Stage::None) {
                Stage::None => {
                    if standby.failures >= MAX_FAILURES {
                        return;
                    }
                    let Some(channel) = self.take_opened() else {
                        return;
                    };
                    let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
                    match script.exec_line(&args, ScriptMode::KeepStdin) {
                        Ok(line) => Turn::Next(Stage::Starting(Start {
                            channel,
                            sha256: script.sha256.clone(),
                            line,
                            execed: false,
                            answer: Vec::new(),
                            noise: 0,
                        })),
                        Err(_) => return,
                    }
                }
                Stage::Starting(start) if start.sha256 == script.sha256 => {
                    self.look_at_start(script, start)
                }
                Stage::Ready {
                    mut channel,
                    sha256,
                    since,
                } if sha256 == script.sha256 => {
                    if since.elapsed() >= STANDBY_LIFE {
                        let _ = self.nonblocking(|| channel.send_eof());
                        Turn::Next(Stage::Retiring(channel))
                    } else {
                        match self.nonblocking(|| channel.read(&mut [0u8; 1])) {
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                Turn::Wait(Stage::Ready {
                                    channel,
                                    sha256,
                                    since,
                                })
                            }
                            // Ended, or said something unasked (an error).
                            _ => Turn::Failed(Some(channel)),
                        }
                    }
                }
                Stage::Retiring(channel) => {
                    // Both streams drained: libssh2 tells no end-of-file
                    // while either holds data (sshd's or a login shell's
                    // messages on stderr).
                    let mut buf = [0u8; 512];
                    for stream in [0, 1] {
                        let mut reader = channel.stream(stream);
                        while let Ok(1..) = self.nonblocking(|| reader.read(&mut buf)) {}
                    }
                    if channel.eof() {
                        Turn::Next(Stage::None)
                    } else {
                        Turn::Wait(Stage::Retiring(channel))
                    }
                }
                // Another script's: ended, to make room for this one's.
                Stage::Starting(Start { mut channel, .. }) | Stage::Ready { mut channel, .. } => {
                    let _ = self.nonblocking(|| channel.send_eof());
                    Turn::Next(Stage::Retiring(channel))
                }
            };
            match turn {
                Turn::Wait(stage) => {
                    standby.stage = stage;
                    return;
                }
                Turn::Next(stage) => standby.stage = stage,
                Turn::Failed(channel) => {
                    standby.failures += 1;
                    if let Some(mut channel) = channel {
                        let _ = self.nonblocking(|| channel.send_eof());
                        standby.stage = Stage::Retiring(channel);
                    }
                }
            }
        }
    }

    /// Ends the session's standby, if it has one (running, starting or
    /// ending), and waits until the server has closed its channel, so that
    /// the session it holds is free for another step (a server whose
    /// `MaxSessions` the watcher and the standby reach). True when there
    /// was one.
    pub(super) fn end_standby(&self) -> bool {
        let stage = std::mem::replace(
            &mut self.standby.lock().unwrap_or_else(|p| p.into_inner()).stage,
            Stage::None,
        );
        let mut channel = match stage {
            Stage::None => return false,
            Stage::Starting(Start { channel, .. })
            | Stage::Ready { channel, .. }
            | Stage::Retiring(channel) => channel,
        };
        // Its stdin ends, so it ends; then the close, answered once it has.
        let _ = self.patiently("ending a standby", || channel.send_eof());
        let _ = self.patiently("ending a standby", || channel.close());
        let _ = self.patiently("ending a standby", || channel.wait_close());
        true
    }

    /// The channel opened ahead, if one is open (not one still asked for).
    fn take_opened(&self) -> Option<Channel> {
        if !matches!(
            *self.ahead.lock().unwrap_or_else(|p| p.into_inner()),
            Ahead::Open(_)
        ) {
            return None;
        }
        match self.take_ahead() {
            Ahead::Open(channel) => Some(channel),
            _ => None,
        }
    }

    /// Sends the exec request (again, while libssh2 wants it) and reads
    /// what has come of the stub's answer, without waiting.
    fn look_at_start(&self, script: &RemoteScript, mut s: Start) -> Turn {
        if !s.execed {
            match self.nonblocking(|| s.channel.exec(&s.line)) {
                Ok(()) => s.execed = true,
                Err(e) if is_eagain(&e) => return Turn::Wait(Stage::Starting(s)),
                Err(_) => return Turn::Failed(None),
            }
        }
        let mut byte = [0u8; 1];
        loop {
            match self.nonblocking(|| s.channel.read(&mut byte)) {
                Ok(0) => return Turn::Failed(Some(s.channel)),
                Ok(_) if byte[0] != b'\n' => {
                    if s.answer.len() < 4096 {
                        s.answer.push(byte[0]);
                    }
                }
                Ok(_) => {
                    let answer = String::from_utf8_lossy(&s.answer).into_owned();
                    s.answer.clear();
                    match script.answer_to(&answer) {
                        StubAnswer::Run => {
                            return Turn::Wait(Stage::Ready {
                                channel: s.channel,
                                sha256: s.sha256,
                                since: Instant::now(),
                            })
                        }
                        // No good copy on the server (rare here: the
                        // session's probe ran this script): sent now.
                        StubAnswer::Send(body) => {
                            if s.channel
                                .write_all(body)
                                .and_then(|()| s.channel.flush())
                                .is_err()
                            {
                                return Turn::Failed(Some(s.channel));
                            }
                        }
                        StubAnswer::Other if s.noise < MAX_NOISE_LINES => s.noise += 1,
                        StubAnswer::Bad | StubAnswer::Other => {
                            return Turn::Failed(Some(s.channel))
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Turn::Wait(Stage::Starting(s))
                }
                Err(_) => return Turn::Failed(Some(s.channel)),
            }
        }
    }

    /// Starts a step of `script` with `args` on its standby, if one runs:
    /// its command line goes on the standby's stdin, which is then closed,
    /// and its first byte is awaited. `None` when there is no standby of
    /// this script, or when it ended before it read the line (it did
    /// nothing then): the caller starts the step as usual.
    pub(super) fn start_on_standby<A: AsRef<[u8]>>(
        &self,
        script: &RemoteScript,
        args: &[A],
    ) -> Result<Option<ScriptStream<'_>>, SshError> {
        let line = command_line(args)?;
        let stage = {
            let mut standby = self.standby.lock().unwrap_or_else(|p| p.into_inner());
            match &standby.stage {
                Stage::Starting(Start { sha256, .. }) | Stage::Ready { sha256, .. }
                    if *sha256 == script.sha256 =>
                {
                    standby.failures = 0;
                    std::mem::replace(&mut standby.stage, Stage::None)
                }
                _ => return Ok(None),
            }
        };
        let mut channel = match stage {
            Stage::Ready { channel, .. } => channel,
            // Its answer has not come yet: awaited here, as a step on a new
            // channel awaits its own.
            Stage::Starting(mut s) => {
                if !s.execed {
                    self.patiently("starting sh", || s.channel.exec(&s.line))?;
                }
                self.await_start(&mut s.channel, script, s.answer, s.noise)?;
                s.channel
            }
            Stage::None | Stage::Retiring(_) => unreachable!("only a started standby is taken"),
        };
        // A standby the server ended meanwhile takes no line: the step
        // starts anew.
        if channel
            .write_all(line.as_bytes())
            .and_then(|()| channel.flush())
            .is_err()
        {
            return Ok(None);
        }
        self.patiently("sending a script's command", || channel.send_eof())?;
        let mut first = [0u8; 1];
        match self.read_patiently(&mut channel, &mut first, None) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(ScriptStream::with_first(self, channel, first[0]))),
            Err(source) => Err(self.io_err("reading a script's output", source)),
        }
    }
}

/// The line a standby reads: each argument hex-encoded after an `x`, as
/// on the exec line, separated by spaces (and nothing else, which the
/// script checks).
pub(crate) fn command_line<A: AsRef<[u8]>>(args: &[A]) -> Result<String, SshError> {
    Ok(format!("{}\n", hex_words(args)?.join(" ")))
}

/// A standby being started.
struct Start {
    channel: Channel,
    /// The script's.
    sha256: String,
    /// Its exec request.
    line: String,
    /// libssh2 has the answer to the exec request.
    execed: bool,
    /// What has come of the current line of the stub's answer.
    answer: Vec<u8>,
    /// Lines of a chatty login shell read so far.
    noise: usize,
}
