//! The fetch engine as the dashboard drives it, through the library: a fetch
//! stopped on request resumes with nothing lost or doubled, and an unknown
//! host key is put to the user as an event and recorded when accepted.

mod common;
mod fetch_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mailhaul::config::Config;
use mailhaul::engine::event::{Event, FetchEvent, Stage};
use mailhaul::engine::failure::Failure;
use mailhaul::engine::fetch::{self, EventPrompter, FetchOptions};
use mailhaul::engine::ssh::NoPrompts;

use common::TestSshd;
use fetch_support::{
    assert_same_messages, fill_spool, names_in, real_mail, settled, Client, Fixture,
};

fn options(client: &Client) -> FetchOptions {
    FetchOptions {
        dry_run: false,
        data_dir: client.data_dir(),
        prompter: Arc::new(NoPrompts),
        cancel: Arc::new(AtomicBool::new(false)),
        adopt_claims: false,
    }
}

#[test]
fn a_fetch_stopped_after_its_claim_resumes_without_loss_or_duplicates() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    let (client, spool) = (&fixture.client, &fixture.spool);
    let config = Arc::new(Config::load(&client.config).unwrap());
    let account = config.accounts[0].clone();

    let opts = options(client);
    let cancel = Arc::clone(&opts.cancel);
    let (tx, rx) = crossbeam_channel::unbounded();
    let worker = fetch::spawn(account.clone(), config.destination(&account), opts, tx);
    for event in rx {
        if let Event::Fetch {
            event: FetchEvent::Stage(Stage::Claiming),
            ..
        } = event
        {
            cancel.store(true, Ordering::Relaxed);
        }
    }
    let err = worker.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("stopped on request"), "{err}");
    assert!(
        client.filed_md5s().len() < mail.md5s.len(),
        "the stop came too late to test anything"
    );
    assert!(!spool.exists(), "the spool was claimed before the stop");

    let (tx, rx) = crossbeam_channel::unbounded();
    let worker = fetch::spawn(
        account.clone(),
        config.destination(&account),
        options(client),
        tx,
    );
    let events: Vec<Event> = rx.iter().collect();
    let summary = worker.join().unwrap().unwrap();
    assert_same_messages(&client.filed_md5s(), &mail.md5s, "stopped, then resumed");
    assert_eq!(summary.messages as usize, mail.md5s.len());
    assert!(matches!(
        events.last(),
        Some(Event::Fetch {
            event: FetchEvent::Ended { failure: None, .. },
            ..
        })
    ));
    assert_eq!(
        settled(|| names_in(fixture.server_dir())),
        Vec::<String>::new()
    );
}

#[test]
fn an_unknown_host_key_is_asked_as_an_event_and_recorded_when_accepted() {
    let sshd = TestSshd::start();
    let server = tempfile::tempdir().unwrap();
    let spool = server.path().join("spool");
    fill_spool(
        &spool,
        b"From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\nbody\n\n",
    );
    let known_hosts = server.path().join("known_hosts");
    for accept in [false, true] {
        std::fs::write(&known_hosts, "").unwrap();
        let client =
            Client::with_known_hosts(&sshd, "root", &known_hosts, &format!("spool = {spool:?}"));
        let config = Arc::new(Config::load(&client.config).unwrap());
        let account = config.accounts[0].clone();
        let (tx, rx) = crossbeam_channel::unbounded();
        let (answer, answers) = crossbeam_channel::bounded(1);
        let mut opts = options(&client);
        opts.prompter = Arc::new(EventPrompter::new(&account.name, tx.clone(), answers));
        let worker = fetch::spawn(account.clone(), config.destination(&account), opts, tx);
        let mut asked = None;
        for event in rx {
            if let Event::Fetch {
                event: FetchEvent::HostKeyUnknown(key),
                ..
            } = event
            {
                asked = Some(key);
                answer.send(accept).unwrap();
            }
        }
        let key = asked.expect("no HostKeyUnknown event");
        assert_eq!(key.port, sshd.port);
        assert!(key.fingerprint.starts_with("SHA256:"), "{key:?}");
        let result = worker.join().unwrap();
        let recorded = std::fs::read_to_string(&known_hosts).unwrap();
        if accept {
            assert!(result.is_ok(), "{result:?}");
            assert!(
                recorded.contains(&format!("[127.0.0.1]:{}", sshd.port)),
                "{recorded}"
            );
            assert_eq!(client.filed_md5s().len(), 1);
        } else {
            assert_eq!(result.unwrap_err().failure(), Failure::HostKey);
            assert!(recorded.is_empty(), "{recorded}");
            assert!(spool.exists(), "refused, yet the spool was claimed");
        }
    }
}

#[test]
fn one_account_is_never_fetched_twice_at_once() {
    let sshd = TestSshd::start();
    let client = Client::new(&sshd, "root", "spool = \"/nonexistent/spool\"");
    // The dashboard (say) is fetching this account right now.
    let held = mailhaul::engine::journal::Workspace::open(&client.data_dir(), "acct").unwrap();
    let out = client.run(&["fetch"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        fetch_support::describe(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("another mailhaul is fetching"));
    drop(held);
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", fetch_support::describe(&out));
}
