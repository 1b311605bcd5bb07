//! Mail delivered by the real Postfix (through procmail, which holds the
//! dot-lock and an fcntl lock while it appends) during repeated fetches as
//! an ordinary user (copy-truncate under dotlockfile): every message must be
//! filed exactly once and whole, none lost, none cut.

mod common;
mod fetch_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Postfix, TestSshd, TestUser};
use fetch_support::{describe, Client};

const MESSAGES: usize = 60;

fn message(i: usize) -> Vec<u8> {
    let mut m = format!("To: someone\nSubject: mailhaul-race {i}\n\n").into_bytes();
    for j in 0..400 {
        m.extend_from_slice(
            format!("message {i} line {j} of the body, padding padding\n").as_bytes(),
        );
    }
    m.extend_from_slice(format!("END {i}\n").as_bytes());
    m
}

#[test]
fn postfix_deliveries_during_fetches_are_neither_lost_nor_cut() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhfp");
    let client = Client::new(&sshd, &user.name, "");

    let name = user.name.clone();
    let sender = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            postfix.send(&name, &message(i));
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    let mut fetches = 0;
    let started = Instant::now();
    while !sender.is_finished() {
        let out = client.run(&["fetch"]);
        assert!(
            out.status.success(),
            "fetch during deliveries: {}",
            describe(&out)
        );
        fetches += 1;
        assert!(started.elapsed() < Duration::from_secs(240), "too slow");
    }
    sender.join().unwrap();
    postfix.wait_delivered(&user, 0);
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "final fetch: {}", describe(&out));
    assert!(
        fetches >= 2,
        "only {fetches} fetch(es) overlapped the deliveries"
    );

    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for m in client.filed_messages() {
        let text = String::from_utf8_lossy(&m);
        let i: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: mailhaul-race "))
            .unwrap_or_else(|| panic!("a filed message without its subject:\n{text}"))
            .trim()
            .parse()
            .unwrap();
        let body = &m[m.windows(2).position(|w| w == b"\n\n").unwrap() + 2..];
        assert_eq!(
            body,
            &message(i)[message(i).windows(2).position(|w| w == b"\n\n").unwrap() + 2..],
            "message {i} was cut or altered"
        );
        *seen.entry(i).or_default() += 1;
    }
    let missing: Vec<usize> = (0..MESSAGES).filter(|i| !seen.contains_key(i)).collect();
    let dups: Vec<(&usize, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(dups.is_empty(), "duplicated: {dups:?}");
    eprintln!("{MESSAGES} messages arrived exactly once over {fetches} concurrent fetches");
}
