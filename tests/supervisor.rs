//! The engine's supervisor (`engine::supervisor`) against the real sshd and
//! Postfix, driven through its API as the dashboard drives it, and through
//! `mailhaul watch`: a fetch ordered through it files the spool once over
//! the watcher's session; a delivery seen by the server watcher is fetched
//! by itself; the outbox is sent when the link is up (counts reported as
//! events), and `watch` sends mail queued while the server was unreachable
//! once it becomes reachable, exactly once, over the worker's session; a
//! temporarily refused message waits its backoff unless `flush_outbox` is
//! ordered; a permanent refusal is counted failed and logged; a deferred
//! message coming due while the link is down does not make `watch` spin; a
//! shutdown mid-fetch stops the fetch at a safe point and the next fetch
//! completes it.

mod common;
mod fetch_support;

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use fetch_support::watch::Watch;
use fetch_support::{describe, fill_spool, maildir_files, Client};
use mailhaul::config::Config;
use mailhaul::engine::event::{Event, FetchEvent, Level, LinkState, OutboxCounts, Stage};
use mailhaul::engine::outbox::submit::{Submission, SubmitOptions};
use mailhaul::engine::outbox::Outbox;
use mailhaul::engine::supervisor::{Options, Supervised, Supervisor, Timings};
use mailhaul::engine::watch::WatchMode;

use common::{Postfix, ServerHook, TestSshd, TestUser};

/// Events as they come, and all seen so far.
struct Events {
    rx: Receiver<Event>,
    seen: Vec<Event>,
}

impl Events {
    /// Waits up to `limit` for an event `want` accepts (after those seen).
    fn wait(&mut self, what: &str, limit: Duration, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if want(&event) {
                        return event;
                    }
                }
                Err(_) => panic!("no {what} within {limit:?}; saw {:#?}", self.seen),
            }
        }
    }

    fn states(&self) -> Vec<LinkState> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::Link { state, .. } => Some(state.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Starts a supervisor for the client's account.
fn supervise(client: &Client, headless: bool) -> (Supervisor, Events) {
    let config = Config::load(&client.config).unwrap();
    let supervised = config
        .accounts
        .iter()
        .map(|account| Supervised {
            account: account.clone(),
            destination: config.destination(account),
        })
        .collect();
    let (tx, rx) = crossbeam_channel::unbounded();
    let options = Options {
        data_dir: client.data_dir(),
        timings: Timings::default(),
        headless,
    };
    let supervisor = Supervisor::start(supervised, options, tx).unwrap();
    (
        supervisor,
        Events {
            rx,
            seen: Vec::new(),
        },
    )
}

fn watching(e: &Event) -> bool {
    matches!(
        e,
        Event::Link {
            state: LinkState::Watching(WatchMode::Inotify),
            ..
        }
    )
}

fn fetch_ended(e: &Event) -> bool {
    matches!(
        e,
        Event::Fetch {
            event: FetchEvent::Ended { .. },
            ..
        }
    )
}

fn message(tag: &str) -> Vec<u8> {
    format!(
        "From: sender@example.org\nTo: someone\nSubject: {tag}\nMessage-ID: <{tag}@example.org>\n\nbody of {tag}\n"
    )
    .into_bytes()
}

/// The spool as Postfix writes it: a From_ line before each message.
fn mbox(tags: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for tag in tags {
        out.extend_from_slice(b"From sender@example.org Thu Jan  1 00:00:00 2026\n");
        out.extend_from_slice(&message(tag));
        out.push(b'\n');
    }
    out
}

fn filed_subjects(client: &Client) -> Vec<String> {
    let mut subjects: Vec<String> = maildir_files(&client.maildir)
        .iter()
        .filter_map(|f| {
            String::from_utf8_lossy(&std::fs::read(f).unwrap())
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect();
    subjects.sort();
    subjects
}

#[test]
fn a_fetch_ordered_through_the_supervisor_files_the_spool_once() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "supf");
    let client = Client::new(&sshd, &user.name, "");
    fill_spool(&user.spool, &mbox(&["one", "two", "three"]));
    let (supervisor, mut events) = supervise(&client, false);
    events.wait("the watcher", Duration::from_secs(30), watching);
    let spool = events.seen.iter().find_map(|e| match e {
        Event::Fetch {
            event: FetchEvent::SpoolSize { messages, .. },
            ..
        } => Some(*messages),
        _ => None,
    });
    assert_eq!(spool, Some(Some(3)), "the spool as probed on connect");
    assert!(
        maildir_files(&client.maildir).is_empty(),
        "no fetch unasked"
    );

    supervisor.fetch("acct");
    let ended = events.wait("the fetch's end", Duration::from_secs(60), fetch_ended);
    let Event::Fetch {
        event: FetchEvent::Ended { summary, failure },
        ..
    } = ended
    else {
        unreachable!()
    };
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(summary.unwrap().messages, 3);
    assert_eq!(filed_subjects(&client), ["one", "three", "two"]);
    assert!(user.spool_contents().is_empty());
    // Over the watcher's session: no second connection for the fetch.
    events.wait("watching again", Duration::from_secs(30), |e| {
        matches!(
            e,
            Event::Link {
                state: LinkState::Watching(_),
                ..
            }
        )
    });
    let states = events.states();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == LinkState::Connecting)
            .count(),
        1,
        "{states:?}"
    );
    assert!(states.contains(&LinkState::Fetching), "{states:?}");
    assert!(supervisor.shut_down(Duration::from_secs(10)).is_empty());
}

#[test]
fn a_delivery_the_watcher_sees_is_fetched_by_itself_and_the_outbox_is_sent() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "supw");
    let rcpt = TestUser::create("supr");
    let client = Client::new(&sshd, &user.name, "");
    // A message already queued when the supervisor starts.
    let outbox = Outbox::open(&client.data_dir(), "acct").unwrap();
    let submission = Submission::begin(
        &b"Subject: from-the-outbox\n\nqueued before the start\n"[..],
        &SubmitOptions {
            extract_recipients: false,
            ignore_dots: true,
            sender: None,
            full_name: None,
            recipients: vec![format!("{}@localhost", rcpt.name)],
        },
    )
    .unwrap();
    outbox.store(submission).unwrap();

    let (supervisor, mut events) = supervise(&client, true);
    let outbox_event = |want: fn(&OutboxCounts) -> bool| move |e: &Event| matches!(e, Event::Outbox { counts, .. } if want(counts));
    events.wait(
        "one queued",
        Duration::from_secs(10),
        outbox_event(|c| c.queued == 1),
    );
    events.wait(
        "one sent",
        Duration::from_secs(60),
        outbox_event(|c| c.queued == 0 && c.sent_today == 1 && c.wire_bytes > 0),
    );
    assert!(
        events
            .seen
            .iter()
            .any(|e| matches!(e, Event::Outbox { counts, .. } if counts.sending == 1)),
        "{:#?}",
        events.seen
    );
    assert!(
        events.states().contains(&LinkState::Sending),
        "{:?}",
        events.states()
    );
    postfix.wait_delivered(&rcpt, 1);
    let spool = String::from_utf8_lossy(&rcpt.spool_contents()).into_owned();
    assert_eq!(
        spool.matches("Subject: from-the-outbox").count(),
        1,
        "{spool}"
    );

    events.wait("the watcher", Duration::from_secs(30), watching);
    postfix.send(&user.name, &message("pushed"));
    let ended = events.wait("the automatic fetch", Duration::from_secs(60), |e| {
        matches!(e, Event::Fetch { event: FetchEvent::Ended { summary: Some(s), .. }, .. } if s.messages == 1)
    });
    drop(ended);
    assert_eq!(filed_subjects(&client), ["pushed"]);
    assert!(supervisor.shut_down(Duration::from_secs(10)).is_empty());
    events.seen.extend(events.rx.try_iter());
    assert!(matches!(
        events.states().last(),
        Some(LinkState::Stopped(None))
    ));
}

/// Queues `body` for `rcpt` in the client's outbox, as `mailhaul send` does.
fn queue(client: &Client, rcpt: &str, body: &[u8]) {
    let outbox = Outbox::open(&client.data_dir(), "acct").unwrap();
    let submission = Submission::begin(
        body,
        &SubmitOptions {
            extract_recipients: false,
            ignore_dots: true,
            sender: None,
            full_name: None,
            recipients: vec![rcpt.to_string()],
        },
    )
    .unwrap();
    outbox.store(submission).unwrap();
}

fn logged(events: &Events, level: Level, text: &str) -> bool {
    events.seen.iter().any(|e| {
        matches!(e, Event::Log { level: l, message, .. } if *l == level && message.contains(text))
    })
}

/// A temporary refusal (Postfix's sendmail refusing a user not in
/// `authorized_submit_users`: EX_TEMPFAIL) leaves the message queued with a
/// minute's backoff; `flush_outbox` sends it at once once the server takes
/// mail again.
#[test]
fn a_deferred_message_waits_its_backoff_unless_a_flush_is_ordered() {
    Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "supd");
    let client = Client::new(&sshd, &user.name, "");
    let rcpt = format!("{}@localhost", user.name);
    queue(&client, &rcpt, b"Subject: held-back\n\nbody\n");
    let (supervisor, mut events) = {
        let _lock = common::SystemLock::acquire("postfix-submit-users");
        let postconf = || std::process::Command::new("/usr/sbin/postconf");
        let before = common::run(postconf().args(["-h", "authorized_submit_users"]));
        let before = String::from_utf8_lossy(&before.stdout).trim().to_string();
        common::run(postconf().arg("-e").arg(format!(
            "authorized_submit_users = !{}, {before}",
            user.name
        )));
        let (supervisor, mut events) = supervise(&client, true);
        events.wait(
            "the deferral",
            Duration::from_secs(60),
            |e| matches!(e, Event::Log { message, .. } if message.contains("not sent yet")),
        );
        common::run(
            postconf()
                .arg("-e")
                .arg(format!("authorized_submit_users = {before}")),
        );
        (supervisor, events)
    };
    let listing = String::from_utf8_lossy(&client.run(&["queue"]).stdout).into_owned();
    assert!(listing.contains(" queued, 1 attempts "), "{listing}");
    assert!(listing.contains("EX_TEMPFAIL"), "{listing}");
    // Its next try is a minute away: ordered now, it goes now.
    let ordered = Instant::now();
    supervisor.flush_outbox(Some("acct"));
    events.wait("the sent message", Duration::from_secs(40), |e| {
        matches!(e, Event::Outbox { counts, .. } if counts.sent_today == 1 && counts.queued == 0)
    });
    assert!(ordered.elapsed() < Duration::from_secs(40));
    // Delivered to the user's spool, which this same supervisor watches and
    // fetches from as mail arrives: the message is in the spool or, once
    // fetched, in the client's Maildir; exactly once in all.
    let copies = || {
        let in_spool = String::from_utf8_lossy(&user.spool_contents())
            .matches("Subject: held-back")
            .count();
        let filed = maildir_files(&client.maildir)
            .iter()
            .filter(|f| {
                String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default())
                    .contains("Subject: held-back")
            })
            .count();
        in_spool + filed
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while copies() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(copies(), 1, "the flushed message, delivered once");
    assert!(supervisor.shut_down(Duration::from_secs(10)).is_empty());
}

/// A permanent refusal (the server's sendmail is msmtp, which Postfix's
/// SMTP answers 550 for an unknown user: EX_DATAERR) moves the message to
/// the failed folder, counted as failed and logged as an error.
#[test]
fn a_permanent_refusal_is_counted_failed_and_logged() {
    Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "supp");
    user.write_msmtprc();
    let client = Client::new(&sshd, &user.name, "sendmail = \"/usr/bin/msmtp\"\n");
    queue(
        &client,
        &format!("nosuch-{}@localhost", user.name),
        b"Subject: refused\n\nbody\n",
    );
    let (supervisor, mut events) = supervise(&client, false);
    events.wait(
        "the failed count",
        Duration::from_secs(60),
        |e| matches!(e, Event::Outbox { counts, .. } if counts.failed == 1 && counts.queued == 0),
    );
    assert!(
        logged(&events, Level::Error, "kept in the failed folder"),
        "{:#?}",
        events.seen
    );
    let listing = String::from_utf8_lossy(&client.run(&["queue"]).stdout).into_owned();
    assert!(listing.contains(" FAILED "), "{listing}");
    assert!(listing.contains("EX_DATAERR"), "{listing}");
    assert!(supervisor.shut_down(Duration::from_secs(10)).is_empty());
}

/// The quit must interrupt the fetch: the server trickles the transfer,
/// the shutdown comes mid-transfer and returns well within its limit;
/// nothing is filed, the claim waits on the server, and the next fetch
/// files every message exactly once.
#[test]
fn a_shutdown_mid_fetch_leaves_it_to_the_journal() {
    let hook = ServerHook::new();
    let sshd = hook.start_sshd();
    let user = TestUser::create_for(&sshd, "supq");
    let client = Client::new(&sshd, &user.name, "");
    client.set_format("mboxrd");
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    fill_spool(
        &user.spool,
        &std::fs::read(assets.join("sample-spool.mbox")).unwrap(),
    );
    hook.set("slow", true);
    let (supervisor, mut events) = supervise(&client, false);
    supervisor.fetch("acct");
    events.wait("the transfer", Duration::from_secs(120), |e| {
        matches!(
            e,
            Event::Fetch {
                event: FetchEvent::Stage(Stage::Transferring),
                ..
            }
        )
    });
    assert!(supervisor.is_fetching("acct"));
    let started = Instant::now();
    let failures = supervisor.shut_down(Duration::from_secs(20));
    let took = started.elapsed();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(took < Duration::from_secs(20), "the shutdown took {took:?}");
    eprintln!("shut down mid-transfer in {took:?}");
    let ended = events.wait(
        "the stopped fetch's end",
        Duration::from_secs(5),
        fetch_ended,
    );
    assert!(
        matches!(
            &ended,
            Event::Fetch {
                event: FetchEvent::Ended {
                    failure: Some(_),
                    ..
                },
                ..
            }
        ),
        "{ended:?}"
    );
    assert!(maildir_files(&client.maildir).is_empty(), "filed nothing");
    let claims: Vec<_> = std::fs::read_dir(user.home.join(".mailhaul/claims"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(claims.len(), 1, "the claim waits on the server");

    hook.set("slow", false);
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(maildir_files(&client.maildir).len(), 315);
}

/// A TCP gate in front of sshd: while closed, every connection is accepted
/// and closed at once (the server is unreachable for SSH); once opened,
/// connections are forwarded (and counted).
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
    forwarded: Arc<AtomicUsize>,
}

impl Gate {
    fn start(target: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let is_open = Arc::clone(&open);
        let forwarded = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&forwarded);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !is_open.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Gate {
            port,
            open,
            forwarded,
        }
    }
}

#[test]
fn watch_sends_what_was_queued_offline_once_the_link_is_back() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "supo");
    let rcpt = TestUser::create("supt");
    let gate = Gate::start(sshd.port);
    // The gate's port is not the one known_hosts has the key for.
    let client = Client::new(&sshd, &user.name, "known_hosts = \"accept-new\"\n");
    client.connect_on_port(&sshd, gate.port);

    // Sent while the server cannot be reached: queued, exit 0.
    let mut send = client
        .command(&["send", "-i", &format!("{}@localhost", rcpt.name)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: sent-offline\n\nwritten on a train\n")
        .unwrap();
    let out = send.wait_with_output().unwrap();
    assert!(out.status.success(), "offline send: {}", describe(&out));

    let mut watch = Watch::start(&client);
    watch.wait_line("reconnecting in", Duration::from_secs(30));
    // Still unreachable a while: nothing sent, nothing lost.
    std::thread::sleep(Duration::from_secs(2));
    assert!(rcpt.spool_contents().is_empty());

    gate.open.store(true, Ordering::SeqCst);
    watch.wait_line("outbox: sent 1 message(s)", Duration::from_secs(60));
    // Over the worker's session: no second login for the send.
    assert_eq!(gate.forwarded.load(Ordering::SeqCst), 1);
    postfix.wait_delivered(&rcpt, 1);
    // A few more seconds: it must not come a second time.
    std::thread::sleep(Duration::from_secs(3));
    postfix.wait_delivered(&rcpt, 1);
    let spool = String::from_utf8_lossy(&rcpt.spool_contents()).into_owned();
    assert_eq!(spool.matches("Subject: sent-offline").count(), 1, "{spool}");
    let listing = client.run(&["queue"]);
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "the outbox is empty\n"
    );

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.child.id() as i32, libc::SIGTERM) };
    let status = watch.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{:#?}", watch.seen);
}

/// Context switches of all the process's threads so far: each wakeup of a
/// thread that sleeps in poll(2) is one (a count load does not skew).
fn wakeups(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += n.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

/// While the server is unreachable, a deferred message whose next try
/// comes and goes does not make `watch` spin: it waits for the reconnect
/// (which sends the whole outbox) and stays idle meanwhile.
#[test]
fn a_due_message_while_the_link_is_down_does_not_spin() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "supi");
    let gate = Gate::start(sshd.port);
    let client = Client::new(&sshd, &user.name, "known_hosts = \"accept-new\"\n");
    client.connect_on_port(&sshd, gate.port);
    queue(&client, "someone@example.org", b"Subject: later\n\nbody\n");
    // Deferred once, next try in two seconds (the outbox's own format).
    let queue_dir = client.data_dir().join("outbox/acct/queue");
    let id = std::fs::read_dir(&queue_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.contains('.'))
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        queue_dir.join(format!("{id}.state")),
        format!("attempts 1\nnext {}\nerror the link was down\n", now + 2),
    )
    .unwrap();
    let mut watch = Watch::start(&client);
    watch.wait_line("reconnecting in", Duration::from_secs(30));
    // The next try has passed by now; the reconnects are seconds apart.
    std::thread::sleep(Duration::from_secs(3));
    let before = wakeups(watch.child.id());
    std::thread::sleep(Duration::from_secs(3));
    let woke = wakeups(watch.child.id()) - before;
    eprintln!("{woke} wakeups in 3 s while the link was down");
    assert!(
        woke < 300,
        "watch woke {woke} times in 3 s while waiting for the link"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        watch.child.wait().unwrap().code(),
        Some(0),
        "{:#?}",
        watch.seen
    );
}
