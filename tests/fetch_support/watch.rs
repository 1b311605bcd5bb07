//! A running `mailhaul watch` whose output the test reads line by line
//! (shared by `watch_command` and `supervisor`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::Client;

/// A running `mailhaul watch` and its output lines; killed on drop.
pub struct Watch {
    /// The `mailhaul watch` process.
    pub child: Child,
    lines: Receiver<String>,
    /// The lines read so far (stdout and stderr), for failure messages.
    pub seen: Vec<String>,
}

impl Watch {
    /// Starts `mailhaul watch` for `client`, echoing its lines to stderr.
    pub fn start(client: &Client) -> Watch {
        let mut child = client
            .command(&["watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailhaul watch");
        let (tx, lines) = crossbeam_channel::unbounded();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("watch| {line}");
                    let _ = tx.send(line);
                }
            });
        }
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text` (after the lines already seen).
    pub fn wait_line(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?} within {limit:?}; saw {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
