//! Runs a command under `strace -f` and reads back the system calls that
//! make files durable or visible (writes, fsync, fdatasync, syncfs,
//! renames, links, unlinks), with the paths of their file descriptors
//! (`-y`), their order and their times, so that a test can check what the
//! kernel was asked to do rather than what the program says it did.
//!
//! Needs strace (`apt-get install strace`; tests/run-all.sh installs it).

use std::path::Path;
use std::process::{Command, Output};

use regex::Regex;

/// The system calls traced.
const TRACED: &str = "trace=write,writev,pwrite64,fsync,fdatasync,syncfs,\
                      rename,renameat,renameat2,link,linkat,unlink,unlinkat";

/// One traced system call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Thread id.
    pub tid: u32,
    /// Its name (`fsync`, `renameat2`, ...).
    pub name: String,
    /// The first argument's descriptor number and path, when it is one.
    pub fd: Option<(i32, String)>,
    /// Every quoted string argument, as strace prints it (escapes kept).
    pub strings: Vec<String>,
    /// The return value (`-1` for errors).
    pub result: i64,
    /// Seconds since the epoch when it was entered and when it returned.
    pub start: f64,
    /// See `start`.
    pub end: f64,
    /// Position of its entry among the trace's events (file order: strace
    /// prints an event when it happens, and splits a call in two lines when
    /// another thread's event comes between its entry and its return).
    pub entry: usize,
    /// Position of its return.
    pub exit: usize,
}

impl Call {
    /// The path of its descriptor argument, if any.
    pub fn fd_path(&self) -> Option<&str> {
        self.fd.as_ref().map(|(_, p)| p.as_str())
    }

    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        self.result >= 0
    }
}

/// Runs `cmd` (its program, arguments and environment) under
/// `strace -f -ttt -T -y`, writing the trace to `trace`; returns the
/// command's output and the calls, in the order they were entered.
pub fn run(cmd: &Command, trace: &Path) -> (Output, Vec<Call>) {
    if !Path::new("/usr/bin/strace").exists() {
        panic!(
            "this test watches system calls with strace: `apt-get install strace` \
             (tests/run-all.sh installs it)"
        );
    }
    let mut traced = Command::new("/usr/bin/strace");
    traced
        .args([
            "-f",
            "-qq",
            "-ttt",
            "-T",
            "-y",
            "--seccomp-bpf",
            "-e",
            TRACED,
            "-o",
        ])
        .arg(trace)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => traced.env(key, v),
            None => traced.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        traced.current_dir(dir);
    }
    let out = traced
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run strace");
    let text = std::fs::read_to_string(trace).expect("read the strace output");
    (out, parse(&text))
}

/// Parses `strace -f -ttt -T -y` output.
pub fn parse(text: &str) -> Vec<Call> {
    let line_re = Regex::new(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$").unwrap();
    let done_re = Regex::new(r"^(\w+)\((.*)\)\s+=\s+(-?\d+).*<(\d+\.\d+)>$").unwrap();
    let unfinished_re = Regex::new(r"^(\w+)\((.*) <unfinished \.\.\.>$").unwrap();
    let resumed_re =
        Regex::new(r"^<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(-?\d+).*<(\d+\.\d+)>$").unwrap();
    // `5</dir/tmp/#1234>(deleted)` for an unnamed (O_TMPFILE) file.
    let fd_re = Regex::new(r"^(\d+)<(.*?)>(?:\(deleted\))?(?:, |$)").unwrap();
    let string_re = Regex::new(r#""((?:[^"\\]|\\.)*)""#).unwrap();
    let mut calls: Vec<Call> = Vec::new();
    // Per thread: the index in `calls` of its unfinished call.
    let mut open: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let new_call = |tid: u32, name: &str, args: &str, at: f64, event: usize| Call {
        tid,
        name: name.to_string(),
        fd: fd_re
            .captures(args)
            .map(|c| (c[1].parse().unwrap(), c[2].to_string())),
        strings: string_re
            .captures_iter(args)
            .map(|c| c[1].to_string())
            .collect(),
        result: 0,
        start: at,
        end: at,
        entry: event,
        exit: event,
    };
    for (event, line) in text.lines().enumerate() {
        let Some(c) = line_re.captures(line) else {
            continue;
        };
        let tid: u32 = c[1].parse().unwrap();
        let at: f64 = c[2].parse().unwrap();
        let rest = &c[3];
        if let Some(d) = done_re.captures(rest) {
            let mut call = new_call(tid, &d[1], &d[2], at, event);
            call.result = d[3].parse().unwrap();
            call.end = at + d[4].parse::<f64>().unwrap();
            calls.push(call);
        } else if let Some(u) = unfinished_re.captures(rest) {
            open.insert(tid, calls.len());
            calls.push(new_call(tid, &u[1], &u[2], at, event));
        } else if let Some(r) = resumed_re.captures(rest) {
            let Some(i) = open.remove(&tid) else { continue };
            let call = &mut calls[i];
            assert_eq!(call.name, &r[1], "strace resumed another call: {line}");
            // The rest of the arguments (after the split) may hold strings.
            call.strings
                .extend(string_re.captures_iter(&r[2]).map(|c| c[1].to_string()));
            call.result = r[3].parse().unwrap();
            call.end = call.start + r[4].parse::<f64>().unwrap();
            call.exit = event;
        }
    }
    calls
}
