//! The real `mailhaul` binary's dashboard on the real engine, in a
//! pseudo-terminal (tmux), against a real sshd: the spool watcher shows the
//! waiting mail, `f` fetches the 315 sample messages into the Maildir exactly
//! once, `q` exits 0 and gives the terminal back; an unknown host key is
//! asked about on screen with its SHA256 fingerprint, and `y` records it in
//! known_hosts and lets the fetch go on; `auto_fetch` fetches new mail the
//! spool check sees without a key pressed; quitting mid-fetch stops it at a
//! safe point and the next fetch files every message exactly once; a server
//! that stays down is logged once, not at every check; `t` starts the SMTP
//! forward (Postfix answers through it) and stops it again; with `[ui]`'s
//! alerts, filed mail rings the bell and sets the window title.

mod common;
mod fetch_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::tmux::{self, Tmux};
use common::{TestSshd, TestUser};
use fetch_support::{assert_same_messages, fill_spool, Client};

/// How long a fetch of the sample spool may take on a loaded machine.
const FETCH_LIMIT: Duration = Duration::from_secs(180);

/// The sample spool's bytes and the sorted md5 of each message.
fn sample_spool() -> (Vec<u8>, Vec<String>) {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut md5s: Vec<String> = std::fs::read_to_string(assets.join("sample-spool.md5"))
        .expect("assets/sample-spool.md5")
        .lines()
        .map(|l| l.split_once('\t').expect("index TAB md5").1.to_string())
        .collect();
    md5s.sort();
    let spool = std::fs::read(assets.join("sample-spool.mbox")).expect("sample spool");
    (spool, md5s)
}

/// A client for `user` on `sshd` (checking the spool every second, mboxrd;
/// `extra` appended to the account) whose spool holds the sample; returns it
/// with the expected md5s.
fn client_with_sample(
    sshd: &TestSshd,
    user: &TestUser,
    known_hosts: &Path,
    extra: &str,
) -> (Client, Vec<String>) {
    let client = Client::with_known_hosts(sshd, &user.name, known_hosts, extra);
    client.set_format("mboxrd");
    let config = std::fs::read_to_string(&client.config).unwrap();
    std::fs::write(
        &client.config,
        config.replacen("[general]\n", "[general]\ncheck_interval = 1\n", 1),
    )
    .unwrap();
    let (spool, md5s) = sample_spool();
    fill_spool(&user.spool, &spool);
    (client, md5s)
}

/// The file a dashboard command of `client` writes its exit status to.
fn status_file(dir: &Path) -> std::path::PathBuf {
    dir.join("exit-status")
}

/// Waits until the dashboard started in `dir` exits and returns its status.
fn exit_status(tmux: &Tmux, dir: &Path) -> i32 {
    tmux::wait_exit_status(tmux, &status_file(dir), Duration::from_secs(30))
}

/// The shell command line that runs the real binary's dashboard in the
/// client's isolated environment.
fn dashboard_command(client: &Client) -> String {
    let dir = client.dir.path().display();
    let command = format!(
        "env -u SSH_AUTH_SOCK -u MAILHAUL_CONFIG -u MAILHAUL_TEST_CRASH_AT \
         HOME='{dir}' XDG_DATA_HOME='{dir}/data' XDG_CONFIG_HOME='{dir}/config' \
         '{exe}' --config '{config}'",
        exe = env!("CARGO_BIN_EXE_mailhaul"),
        config = client.config.display(),
    );
    tmux::with_exit_status(&command, &status_file(client.dir.path()))
}

/// Waits for the fetch to end well, checks the Maildir, quits with `q`, and
/// checks the exit status and the terminal left behind.
fn finish_fetch_and_quit(tmux: &Tmux, client: &Client, md5s: &[String]) {
    let done = tmux.wait_for_within(FETCH_LIMIT, "the fetch to finish", |s| {
        s.contains("ok 315 msgs") || s.contains("error")
    });
    assert!(done.contains("ok 315 msgs"), "the fetch failed:\n{done}");
    assert_same_messages(
        &client.filed_md5s(),
        md5s,
        "Maildir after the dashboard's fetch",
    );
    // The watcher runs again once the fetch is over and sees the spool empty.
    tmux.wait_for("the emptied spool", |s| s.contains("empty"));
    tmux.keys("q");
    assert_eq!(exit_status(tmux, client.dir.path()), 0, "exit status");
    assert_eq!(tmux.pane("alternate_on"), "0", "back on the main screen");
    assert_eq!(tmux.pane("mouse_any_flag"), "0", "mouse capture released");
    assert!(
        client.history().contains("\t315\t0\t"),
        "history: {}",
        client.history()
    );
}

#[test]
fn dashboard_fetches_the_sample_spool_once_and_quits_cleanly() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "dash");
    let (client, md5s) = client_with_sample(&sshd, &user, &sshd.known_hosts, "");
    let tmux = Tmux::start("live", &dashboard_command(&client));
    tmux.keep_when_dead();
    let idle = tmux.wait_for("the spool check", |s| s.contains("new: 315 msgs"));
    assert!(
        idle.contains("Accounts (1)") && idle.contains("acct"),
        "{idle}"
    );
    assert!(client.filed_md5s().is_empty(), "nothing fetched before `f`");
    tmux.keys("f");
    finish_fetch_and_quit(&tmux, &client, &md5s);
}

#[test]
fn dashboard_asks_about_an_unknown_host_key_and_records_it() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "dashhk");
    let empty = tempfile::NamedTempFile::new().unwrap();
    let known_hosts = empty.path().to_path_buf();
    let (client, md5s) = client_with_sample(&sshd, &user, &known_hosts, "");
    let fingerprint = fingerprint(&sshd.host_key);

    let tmux = Tmux::start("hostkey", &dashboard_command(&client));
    tmux.keep_when_dead();
    // The watcher never prompts: it says once that it cannot check.
    tmux.wait_for("the watcher's note", |s| s.contains("spool check"));
    tmux.keys("f");
    let prompt = tmux.wait_for("the host-key prompt", |s| s.contains("Unknown host key"));
    assert!(
        prompt.contains(&fingerprint),
        "the prompt shows {fingerprint}:\n{prompt}"
    );
    assert!(
        std::fs::read_to_string(&known_hosts).unwrap().is_empty(),
        "nothing recorded before the answer"
    );
    tmux.keys("y");
    finish_fetch_and_quit(&tmux, &client, &md5s);
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    let key = sshd
        .host_key_pub
        .split_whitespace()
        .nth(1)
        .expect("base64 key");
    assert!(
        recorded.contains(key) && recorded.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "known_hosts after `y`: {recorded}"
    );
}

#[test]
fn auto_fetch_fetches_new_mail_without_a_key() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "dashauto");
    let (client, md5s) = client_with_sample(&sshd, &user, &sshd.known_hosts, "auto_fetch = true");
    let tmux = Tmux::start("auto", &dashboard_command(&client));
    tmux.keep_when_dead();
    // No key is pressed: the log line that starts the fetch ("new mail
    // ...: fetching (auto_fetch)"), or, once the fetch's own lines have
    // pushed it out of the log panel, the fetch's result, is the automatic
    // fetch.
    let screen = tmux.wait_for_within(FETCH_LIMIT, "the automatic fetch", |s| {
        s.contains("auto_fetch") || s.contains("ok 315 msgs")
    });
    if screen.contains("auto_fetch") {
        assert!(screen.contains("new mail"), "{screen}");
    }
    finish_fetch_and_quit(&tmux, &client, &md5s);
}

/// With `[ui] bell_on_new_mail` and `title_on_new_mail`, a fetch that
/// files mail rings the bell (a BEL byte in what the dashboard wrote to the
/// terminal, as `tmux pipe-pane` records it) and sets the window title to
/// the count (tmux's `pane_title`).
#[test]
fn new_mail_rings_the_bell_and_sets_the_window_title() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "dashbell");
    let (client, md5s) = client_with_sample(&sshd, &user, &sshd.known_hosts, "");
    let mut config = std::fs::read_to_string(&client.config).unwrap();
    config.push_str("\n[ui]\nbell_on_new_mail = true\ntitle_on_new_mail = true\n");
    std::fs::write(&client.config, config).unwrap();
    let written = client.dir.path().join("terminal-output");
    let tmux = Tmux::start("bell", &dashboard_command(&client));
    tmux.keep_when_dead();
    tmux.run(&[
        "pipe-pane",
        "-o",
        "-t",
        "ui",
        &format!("cat >> '{}'", written.display()),
    ]);
    tmux.wait_for("the spool check", |s| s.contains("new: 315 msgs"));
    assert!(
        !tmux.pane("pane_title").contains("new"),
        "no title before mail is filed"
    );
    tmux.keys("f");
    let deadline = std::time::Instant::now() + FETCH_LIMIT;
    while tmux.pane("pane_title") != "mailhaul: 315 new" {
        assert!(
            std::time::Instant::now() < deadline,
            "the title is {:?}",
            tmux.pane("pane_title")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let bytes = std::fs::read(&written).unwrap();
    assert_eq!(
        bytes.iter().filter(|&&b| b == 0x07).count(),
        1,
        "one bell for one fetch that filed mail"
    );
    finish_fetch_and_quit(&tmux, &client, &md5s);
}

/// The dashboard's spool check follows the server-side watcher, not its
/// interval: with `check_interval` an hour, mail Postfix delivers after
/// the dashboard started is fetched (`auto_fetch`) within seconds.
#[test]
fn the_watcher_makes_auto_fetch_react_within_seconds() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "dashpush");
    let postfix = common::Postfix::ensure_running();
    let (client, _) = client_with_sample(&sshd, &user, &sshd.known_hosts, "auto_fetch = true");
    fill_spool(&user.spool, b"");
    let config = std::fs::read_to_string(&client.config).unwrap();
    std::fs::write(
        &client.config,
        config.replacen("check_interval = 1\n", "check_interval = 3600\n", 1),
    )
    .unwrap();
    let tmux = Tmux::start("push", &dashboard_command(&client));
    tmux.keep_when_dead();
    // The first check has run (an empty spool) before the mail comes.
    std::thread::sleep(std::time::Duration::from_secs(3));
    postfix.send(
        &user.name,
        b"From: a@example.org\nTo: b\nSubject: pushed to the dashboard\n\nhello\n",
    );
    // The log line may already have scrolled away behind the fetch's own
    // notes (the fetch reuses the watcher's session, so it starts at once):
    // the account's last fetch shows it as well.
    tmux.wait_for_within(
        std::time::Duration::from_secs(30),
        "the automatic fetch of the pushed mail",
        |s| s.contains("auto_fetch") || s.contains("ok 1 msg"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fetch_support::maildir_files(&client.maildir).is_empty() {
        assert!(std::time::Instant::now() < deadline, "not filed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tmux.keys("q");
}

/// The quit must interrupt the fetch, provably: the server trickles the
/// transfer (2 KiB every 100 ms, so the sample's ~270 kB at zstd -9 would
/// take over ten seconds), `q` and `y` come mid-transfer, and then the
/// server saw its stream cut short, nothing was filed, the fetch made its
/// partial download durable and journalled its length itself (a fetch the
/// process merely outlived leaves a `.part` the journal does not know),
/// nothing is staged, and the claim waits on the server byte for byte; the
/// next fetch continues from that length and files every message exactly
/// once.
#[test]
fn quitting_mid_fetch_interrupts_it_and_the_next_fetch_completes_it() {
    let hook = common::ServerHook::new();
    let sshd = hook.start_sshd();
    let user = TestUser::create_for(&sshd, "dashquit");
    let (client, md5s) = client_with_sample(&sshd, &user, &sshd.known_hosts, "");
    let (spool, _) = sample_spool();
    hook.set("slow", true);
    let tmux = Tmux::start("quit", &dashboard_command(&client));
    tmux.keep_when_dead();
    tmux.wait_for("the spool check", |s| s.contains("new: 315 msgs"));
    tmux.keys("f");
    hook.wait_for(&["send", "start"], FETCH_LIMIT);
    tmux.wait_for_within(FETCH_LIMIT, "the transfer", |s| s.contains("transfer "));
    tmux.keys("q");
    let asked = tmux.wait_for("the quit question", |s| s.contains("Quit?"));
    assert!(asked.contains("Fetching now: acct"), "{asked}");
    tmux.keys("y");
    assert_eq!(
        exit_status(&tmux, client.dir.path()),
        0,
        "exit status after quitting mid-fetch"
    );
    assert_eq!(tmux.pane("alternate_on"), "0", "back on the main screen");

    let cut = hook.wait_for(&["send", "cut"], Duration::from_secs(30));
    let (sent, total): (u64, u64) = (cut[2].parse().unwrap(), cut[3].parse().unwrap());
    assert!(sent < total, "the stream was cut: {cut:?}");
    assert!(
        !hook.log().iter().any(|e| e.is(&["send", "end"])),
        "the server finished sending:\n{}",
        hook.log_text()
    );
    assert!(client.filed_md5s().is_empty(), "filed before the quit");
    let account = client.data_dir().join("accounts/acct");
    let staging: Vec<_> = std::fs::read_dir(account.join("staging"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        staging.len() == 1 && staging[0].extension().is_some_and(|x| x == "part"),
        "the stopped fetch left {staging:?} in staging"
    );
    let journal = std::fs::read_to_string(account.join("journal")).unwrap_or_default();
    assert!(!journal.contains("staged"), "journal: {journal}");
    let kept = std::fs::metadata(&staging[0]).unwrap().len();
    // (Nothing decoded yet, nothing to keep: then no record either.)
    let partial = journal.lines().rfind(|l| l.starts_with("partial\t"));
    assert_eq!(
        partial.and_then(|l| l.rsplit('\t').next()),
        (kept > 0).then(|| kept.to_string()).as_deref(),
        "the journal has the kept part's length: {journal}"
    );
    let claims_dir = user.home.join(".mailhaul/claims");
    let claims: Vec<_> = std::fs::read_dir(&claims_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(claims.len(), 1, "claims on the server: {claims:?}");
    assert!(
        std::fs::read(&claims[0]).unwrap() == spool,
        "the claim on the server is the spool as it was"
    );

    hook.set("slow", false);
    let logged = hook.log().len();
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", fetch_support::describe(&out));
    if kept > 0 {
        assert!(
            hook.log()[logged..].iter().any(|e| e.is(&[
                "send",
                "start",
                "offset",
                &kept.to_string()
            ])),
            "the next fetch continues from byte {kept}:\n{}",
            hook.log_text()
        );
    }
    assert_same_messages(
        &client.filed_md5s(),
        &md5s,
        "the sample after a quit mid-transfer and a fetch",
    );
    assert_eq!(
        fetch_support::settled(|| fetch_support::names_in(&claims_dir)),
        Vec::<String>::new(),
        "the claim was released"
    );
}

/// A server that stays down is logged once, while the checks go on: the
/// dashboard runs under strace, which counts its connection attempts.
#[test]
fn an_unreachable_server_is_logged_once_not_every_check() {
    common::require_tool("/usr/bin/strace", "strace");
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\ncheck_interval = 1\nmaildir = {:?}\n\n[[account]]\nname = \"down\"\n\
             host = \"127.0.0.1\"\nport = {port}\nuse_agent = false\n",
            dir.path().join("Maildir")
        ),
    )
    .unwrap();
    let trace = dir.path().join("connects");
    let command = format!(
        "env -u SSH_AUTH_SOCK HOME='{d}' XDG_DATA_HOME='{d}/data' \
         /usr/bin/strace -f -qq -e trace=connect -o '{t}' '{exe}' --config '{c}'",
        d = dir.path().display(),
        t = trace.display(),
        exe = env!("CARGO_BIN_EXE_mailhaul"),
        c = config.display()
    );
    let tmux = Tmux::start(
        "down",
        &tmux::with_exit_status(&command, &status_file(dir.path())),
    );
    tmux.keep_when_dead();
    tmux.wait_for("the first failed check", |s| s.contains("spool check"));
    let attempts = || {
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("connect(") && l.contains(&format!("sin_port=htons({port})")))
            .count()
    };
    // Wait for four more checks (one a second), then look at the log.
    let first = attempts();
    assert!(first >= 1, "the failed check made no connection attempt");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while attempts() < first + 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the checks stopped after {} attempt(s)",
            attempts()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let screen = tmux.screen(false);
    assert_eq!(
        screen.matches("spool check").count(),
        1,
        "one log line for a server that stays down ({} checks):\n{screen}",
        attempts()
    );
    tmux.keys("q");
    assert_eq!(exit_status(&tmux, dir.path()), 0);
}

#[test]
fn t_toggles_the_smtp_forward_to_postfix() {
    common::Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "dashfwd");
    let port = common::sshd::free_port();
    let forward =
        format!("\n[account.forward]\nlisten = \"127.0.0.1:{port}\"\ntarget = \"127.0.0.1:25\"");
    let (client, _) = client_with_sample(&sshd, &user, &sshd.known_hosts, &forward);
    let tmux = Tmux::start("forward", &dashboard_command(&client));
    tmux.keep_when_dead();
    let listening = format!("on 127.0.0.1:{port}");
    tmux.wait_for("the dashboard", |s| {
        s.contains(&format!("off 127.0.0.1:{port}"))
    });
    tmux.keys("t");
    tmux.wait_for("the forward on", |s| s.contains(&listening));
    // Ask the kernel, not the screen: one listener on that port, on loopback.
    assert_eq!(
        common::proc::listening_addresses(port),
        vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))],
        "the forward's listening socket"
    );

    // An SMTP conversation with Postfix through the forward.
    let mut smtp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    smtp.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let greeting = read_reply(&mut smtp);
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    smtp.write_all(b"QUIT\r\n").unwrap();
    let bye = read_reply(&mut smtp);
    assert!(bye.starts_with("221"), "{bye:?}");
    drop(smtp);
    let counted = tmux.wait_for("the connection counted", |s| s.contains("live/1 total"));
    assert!(counted.contains(&listening), "{counted}");

    tmux.keys("t");
    tmux.wait_for("the forward off", |s| {
        s.contains(&format!("off 127.0.0.1:{port}"))
    });
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens once the forward is off"
    );
    tmux.keys("q");
    assert_eq!(exit_status(&tmux, client.dir.path()), 0);
}

/// One SMTP reply line (up to CRLF).
fn read_reply(stream: &mut std::net::TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("reading an SMTP reply: {other:?} after {line:?}"),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// The host key's fingerprint as OpenSSH prints it (`SHA256:...`).
fn fingerprint(host_key: &Path) -> String {
    let out = common::run(Command::new("ssh-keygen").arg("-lf").arg(host_key));
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .expect("ssh-keygen -l: BITS FINGERPRINT ...")
        .to_string()
}
