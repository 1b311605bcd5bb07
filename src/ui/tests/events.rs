//! Engine events into the model: a fetch's stages and end, host-key
//! questions withdrawn, the log, the history file's last fetch, and which
//! screens need timed redraws.

use super::*;
use crate::engine::event::LinkState;
use crate::engine::watch::WatchMode;

#[test]
fn a_failed_fetch_withdraws_its_unanswered_question() {
    let mut h = asking_host_key();
    h.fetch(
        460.0,
        "home",
        FetchEvent::Ended {
            summary: None,
            failure: Some(FetchFailure {
                class: Failure::HostKey,
                message: "no answer".into(),
            }),
        },
    );
    assert!(h.app.model.host_keys.is_empty());
}

fn home(h: &Harness) -> &crate::ui::model::AccountView {
    &h.app.model.accounts[0]
}

#[test]
fn fetch_events_drive_the_account_through_a_fetch() {
    let mut h = idle();
    let history_before = h.app.model.history.len();
    assert!(!home(&h).fetch.is_active());
    assert!(h.fetch(400.0, "home", FetchEvent::Stage(Stage::Connecting)));
    assert!(home(&h).fetch.is_active());
    assert!(home(&h).fetch.filed.is_empty(), "a new fetch starts clean");
    assert!(
        !h.fetch(400.1, "home", FetchEvent::Stage(Stage::Connecting)),
        "no change"
    );
    let progress = TransferProgress {
        raw_done: 1_000,
        raw_total: 2_000,
        payload_bytes: 250,
        socket_bytes: 400,
    };
    assert!(h.fetch(401.0, "home", FetchEvent::Progress(progress)));
    assert!(
        !h.fetch(401.5, "home", FetchEvent::Progress(progress)),
        "same counters"
    );
    h.fetch(
        402.0,
        "home",
        FetchEvent::Progress(TransferProgress {
            raw_done: 2_000,
            ..progress
        }),
    );
    let rate = home(&h).fetch.rate.bytes_per_sec().expect("two samples");
    assert!((rate - 1_000.0).abs() < 1e-6, "{rate}");
    h.fetch(
        402.5,
        "home",
        FetchEvent::Filed {
            folder: "INBOX".into(),
            count: 1,
        },
    );
    h.fetch(
        402.6,
        "home",
        FetchEvent::Filed {
            folder: "INBOX".into(),
            count: 2,
        },
    );
    assert_eq!(home(&h).fetch.filed, [("INBOX".to_string(), 2)]);
    h.app.model.refresh_totals(BASE_UNIX + 402, 0);
    let totals = home(&h).digest.totals;
    h.fetch(
        402.7,
        "home",
        FetchEvent::Ended {
            summary: Some(summary(2, 2_000, 500, 2_700)),
            failure: None,
        },
    );
    assert!(!home(&h).fetch.is_active());
    assert_eq!(h.app.model.history.len(), history_before + 1);
    let last = h.app.model.history.last().expect("appended");
    assert_eq!(last.account, "home");
    assert_eq!(last.summary.raw_bytes, 2_000);
    // The account's figures follow at once (the frames draw from them).
    let digest = &home(&h).digest;
    assert_eq!(digest.entries.last(), Some(&history_before));
    assert_eq!(digest.last_ratio(), Some(4.0));
    h.app.model.refresh_totals(BASE_UNIX + 403, 0);
    let digest = &home(&h).digest;
    assert_eq!(digest.totals.fetches, totals.fetches + 1);
    assert_eq!(digest.totals.raw_all, totals.raw_all + 2_000);
    assert!(home(&h).spool.is_none());
    assert!(!h.fetch(403.0, "nobody", FetchEvent::Stage(Stage::Connecting)));
}

#[test]
fn the_screen_only_needs_timed_redraws_for_time_labels() {
    let mut h = Harness::new(true);
    let config = Config::parse(CONFIG, Path::new("test.toml")).expect("test config parses");
    h.app = App::new(&config, Vec::new(), Theme::new(true), 0, start(h.t0));
    assert_eq!(h.app.next_timed_redraw(), None, "nothing time-dependent");
    h.fetch(10.0, "home", FetchEvent::Stage(Stage::Connecting));
    let now = h.t0 + Duration::from_secs(10);
    assert_eq!(
        h.app.next_timed_redraw(),
        Some(now + Duration::from_secs(1))
    );
    h.fetch(
        12.0,
        "home",
        FetchEvent::Ended {
            summary: Some(summary(1, 10, 5, 2_000)),
            failure: None,
        },
    );
    h.at(50.0);
    // "just now" turns into "1m ago" a minute after the fetch ended.
    assert_eq!(
        h.app.next_timed_redraw(),
        Some(h.t0 + Duration::from_secs(72))
    );
}

#[test]
fn log_keeps_newest_lines_and_scrolls_back() {
    let mut h = Harness::new(true);
    for i in 0..40 {
        h.log(i as f64, Level::Info, None, &format!("line {i:02}"));
    }
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("line 39") && !screen.contains("line 20"),
        "{screen}"
    );
    assert!(h.key(KeyCode::PageUp));
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(!screen.contains("line 39"), "{screen}");
    assert!(screen.contains("newer below"), "{screen}");
    assert!(h.key(KeyCode::PageDown));
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(screen.contains("line 39"), "{screen}");
}

#[test]
fn debug_lines_stay_out_of_the_log_panel() {
    let mut h = Harness::new(true);
    h.log(1.0, Level::Debug, None, "channel window 2097152");
    h.log(2.0, Level::Warn, Some("home"), "lock busy, waiting");
    assert_eq!(h.app.model.log.len(), 1);
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("WARN  home: lock busy, waiting"),
        "{screen}"
    );
}

#[test]
fn each_account_shows_its_last_fetch_from_the_history_file_with_its_age() {
    let config = Config::parse(CONFIG, Path::new("test.toml")).expect("test config parses");
    let now = Moment::now();
    let history = vec![
        PastFetch {
            account: "home".into(),
            finished_unix: Some(now.unix_secs - 3 * 86_400),
            summary: summary(7, 1_000, 250, 900),
        },
        PastFetch {
            account: "home".into(),
            finished_unix: Some(now.unix_secs - 3 * 3_600 - 30),
            summary: summary(42, 40_000, 9_000, 1_200),
        },
        PastFetch {
            account: "work".into(),
            finished_unix: None,
            summary: summary(5, 1_000, 250, 900),
        },
    ];
    let model = crate::ui::model::Model::new(&config, history, now);
    let home = model.accounts.iter().find(|a| a.name == "home").unwrap();
    let last = home
        .last
        .as_ref()
        .expect("home's last fetch comes from the history");
    assert_eq!(crate::ui::format::ago(last.age(Instant::now())), "3h ago");
    assert!(
        matches!(&last.outcome, crate::ui::model::Outcome::Done(s) if s.messages == 42),
        "the latest entry wins"
    );
    let work = model.accounts.iter().find(|a| a.name == "work").unwrap();
    assert!(work.last.is_none(), "an entry without a time seeds nothing");
}

/// A watched account's `watching 12m` turns the minute by itself: the
/// redraw timer is set for it, and only for it (a backoff shows a clock
/// time, which needs no timer).
#[test]
fn a_links_age_sets_the_minute_timer() {
    let mut h = Harness::new(true);
    let config = Config::parse(CONFIG, Path::new("test.toml")).expect("test config parses");
    h.app = App::new(&config, Vec::new(), Theme::new(true), 0, start(h.t0));
    h.link(
        10.0,
        "work",
        LinkState::BackingOff {
            until: BASE_UNIX + 100,
            reason: "refused".into(),
        },
        0,
    );
    assert_eq!(
        h.app.next_timed_redraw(),
        None,
        "a backoff shows a clock time"
    );
    assert!(h.link(20.0, "home", LinkState::Watching(WatchMode::Inotify), 5));
    assert!(
        !h.link(20.0, "home", LinkState::Watching(WatchMode::Inotify), 5),
        "the same state again changes nothing"
    );
    // Begun at 15 s: its age turns the minute at 75 s.
    assert_eq!(
        h.app.next_timed_redraw(),
        Some(h.t0 + Duration::from_secs(75))
    );
    assert!(!h.link(20.0, "nobody", LinkState::Connecting, 0));
}

/// The history file read again (another mailhaul appended a fetch):
/// the charts' history and digests follow, a newer fetch becomes the
/// account's last, the same file again changes nothing, and a fetch of this
/// session that the file brought first is not counted twice.
#[test]
fn a_history_file_read_again_replaces_the_history_without_doubles() {
    let mut h = idle();
    let before = h.app.model.history.clone();
    let mut file = before.clone();
    file.push(PastFetch {
        account: "work".into(),
        finished_unix: Some(BASE_UNIX + 350),
        summary: summary(9, 90_000, 20_000, 1_000),
    });
    let at = h.at(352.0);
    assert!(h.app.apply(Event::History(file.clone()), at));
    assert_eq!(h.app.model.history, file);
    let work = &h.app.model.accounts[1];
    assert_eq!(work.digest.entries.last(), Some(&(file.len() - 1)));
    assert_eq!(work.digest.last_ratio(), Some(4.5));
    assert_eq!(
        work.last.as_ref().map(|l| l.unix_secs),
        Some(BASE_UNIX + 350)
    );
    // home's last fetch (this session's) is newer than any in the file.
    assert_eq!(
        h.app.model.accounts[0].last.as_ref().map(|l| l.unix_secs),
        Some(BASE_UNIX + 3)
    );
    let at = h.at(354.0);
    assert!(!h.app.apply(Event::History(file.clone()), at), "unchanged");
    // The file brings home's next fetch before its Ended event does.
    let fetched = summary(4, 40_000, 10_000, 800);
    file.push(PastFetch {
        account: "home".into(),
        finished_unix: Some(BASE_UNIX + 400),
        summary: fetched.clone(),
    });
    h.fetch(399.0, "home", FetchEvent::Stage(Stage::Connecting));
    let at = h.at(400.5);
    assert!(h.app.apply(Event::History(file.clone()), at));
    h.fetch(
        401.0,
        "home",
        FetchEvent::Ended {
            summary: Some(fetched),
            failure: None,
        },
    );
    assert_eq!(h.app.model.history.len(), file.len(), "not twice");
    assert_eq!(
        h.app.model.accounts[0].last.as_ref().map(|l| l.unix_secs),
        Some(BASE_UNIX + 401)
    );
}
