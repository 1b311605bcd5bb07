//! A worker's decisions, free of I/O so that they are unit-tested as they
//! are: what to do next (the fetch the user ordered, a reconnect, a
//! debounced automatic fetch, a spool check, an outbox send, or wait until
//! when), what the server watcher's reports mean, when the link counts as
//! dead, and when a failed connection or automatic fetch is tried again.
//! The worker ([`super::worker`]) does the I/O a decision asks for and tells
//! the schedule what came of it.

use std::time::{Duration, Instant};

use super::timing::{Backoff, Debounce, Timings};
use crate::engine::watch::{self, WatchMode, WatchReport};

/// Longest wait for the server watcher's `ready` before the session counts
/// as broken.
pub(super) const READY_LIMIT: Duration = Duration::from_secs(30);

/// Why the spool watcher's session is taken as lost (the worker then
/// reconnects with backoff).
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkLost {
    /// Reading the watcher's channel failed.
    #[error(transparent)]
    Watcher(#[from] watch::WatchError),
    /// The watcher never said it was ready (seconds waited).
    #[error("the spool watcher did not start within {0} s")]
    WatcherNotStarted(u64),
    /// Nothing, not even a heartbeat, came within the silence limit
    /// (seconds).
    #[error("no word from the server for {0} s: the link is dead")]
    Silent(u64),
}

/// What the worker holds of the account's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// No session.
    Down,
    /// A session with the server watcher's channel on it.
    Watched,
    /// A session without a watcher: the spool is checked every
    /// `check_every`.
    Checked,
}

/// What the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Fetch; `auto` when the worker decided it by itself.
    Fetch {
        /// Not ordered by the user.
        auto: bool,
    },
    /// Open the session.
    Connect,
    /// Probe the spool over the session.
    Check,
    /// Send the outbox.
    Flush,
    /// Wait for the watcher, an order or the outbox, at most until this
    /// (`None`: no timer runs).
    Wait(Option<Instant>),
}

/// What the watcher's latest lines said, for the worker to report.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Heard {
    /// The watcher became ready, watching this way.
    pub ready: Option<WatchMode>,
    /// The spool's size at the latest change (reports from before the end
    /// of our own fetch left out).
    pub spool_bytes: Option<u64>,
    /// The watcher's notes, for the log.
    pub notes: Vec<String>,
}

/// A worker's timers and what they wait for.
#[derive(Debug)]
pub(super) struct Schedule {
    timings: Timings,
    /// Fetch by itself on new mail.
    auto_fetch: bool,
    /// The user ordered a fetch.
    fetch_ordered: bool,
    /// No connection attempt before this.
    next_connect: Instant,
    backoff: Backoff,
    /// How the watcher watches, once it said `ready`.
    ready: Option<WatchMode>,
    watcher_started: Instant,
    last_heard: Instant,
    /// Finished claims on the server as last reported.
    claims_seen: u64,
    /// The next spool check: periodic where there is no watcher, or once
    /// to count the messages after a change the user sees.
    next_check: Option<Instant>,
    debounce: Debounce,
    /// No automatic fetch before this (one failed).
    retry_at: Instant,
    retry: Backoff,
}

impl Schedule {
    /// A worker starting at `now`: the first connection is due at once.
    pub fn new(timings: Timings, auto_fetch: bool, now: Instant) -> Schedule {
        Schedule {
            backoff: Backoff::new(timings.backoff_min, timings.backoff_max),
            debounce: Debounce::new(timings.quiet, timings.max_delay),
            retry: Backoff::new(timings.backoff_min, timings.retry_max),
            timings,
            auto_fetch,
            fetch_ordered: false,
            next_connect: now,
            ready: None,
            watcher_started: now,
            last_heard: now,
            claims_seen: 0,
            next_check: None,
            retry_at: now,
        }
    }

    /// The user asked for a fetch.
    pub fn order_fetch(&mut self) {
        self.fetch_ordered = true;
    }

    /// Whether the user's fetch waits (it goes before reading the watcher,
    /// whose reports it would make stale).
    pub fn fetch_ordered(&self) -> bool {
        self.fetch_ordered
    }

    /// How the watcher watches, once it said `ready`.
    pub fn ready(&self) -> Option<WatchMode> {
        self.ready
    }

    /// What to do at `now`, the link being `link`; `flush_wanted`: the
    /// outbox has messages to send; `next_send`: a deferred message's next
    /// try. The user's fetch goes first, then (linked) an automatic fetch
    /// that is due, a spool check, the outbox; else a wait until the
    /// earliest timer.
    pub fn next(
        &mut self,
        now: Instant,
        link: Link,
        flush_wanted: bool,
        next_send: Option<Instant>,
    ) -> Step {
        if std::mem::take(&mut self.fetch_ordered) {
            return Step::Fetch { auto: false };
        }
        match link {
            Link::Down if now >= self.next_connect => return Step::Connect,
            Link::Down => {}
            Link::Watched | Link::Checked => {
                if self.auto_fetch && now >= self.retry_at && self.debounce.take_due(now) {
                    return Step::Fetch { auto: true };
                }
                if self.next_check.is_some_and(|at| at <= now) {
                    return Step::Check;
                }
                if flush_wanted {
                    return Step::Flush;
                }
            }
        }
        Step::Wait(self.wake_at(link, next_send))
    }

    /// The earliest timer: the reconnect (link down); the spool check, the
    /// debounced fetch (not before its retry), the watcher's silence and
    /// ready limits, a deferred message's next try (linked: while the link
    /// is down, the reconnect sends the whole outbox first).
    fn wake_at(&self, link: Link, next_send: Option<Instant>) -> Option<Instant> {
        let mut until: Vec<Instant> = Vec::new();
        if link == Link::Down {
            until.push(self.next_connect);
        } else {
            until.extend(self.next_check);
            until.extend(next_send);
            if self.auto_fetch {
                until.extend(self.debounce.due_at().map(|due| due.max(self.retry_at)));
            }
        }
        if link == Link::Watched {
            until.push(self.last_heard + watch::silence_limit(self.timings.heartbeat));
            if self.ready.is_none() {
                until.push(self.watcher_started + READY_LIMIT);
            }
        }
        until.into_iter().min()
    }

    /// A session is up: the next failure backs off from the start again.
    pub fn connected(&mut self) {
        self.backoff.reset();
    }

    /// The server watcher was started at `now`; it is not ready yet.
    pub fn watching(&mut self, now: Instant) {
        self.ready = None;
        self.watcher_started = now;
        self.last_heard = now;
        self.next_check = None;
    }

    /// The watcher cannot run: the spool is checked every `check_every`,
    /// and what it holds now (`spool_bytes`) is fetched at once.
    pub fn checking(&mut self, now: Instant, spool_bytes: u64) {
        self.next_check = Some(now + self.timings.check_every);
        if self.auto_fetch && spool_bytes > 0 {
            self.debounce.now(now);
        }
    }

    /// The session is gone or could not be made: returns the (jittered)
    /// wait before the next attempt.
    pub fn lost(&mut self, now: Instant) -> Duration {
        self.ready = None;
        self.next_check = None;
        let wait = self.backoff.fail();
        self.next_connect = now + wait;
        wait
    }

    /// Takes in the watcher's lines read at `now`. `stale`: they were read
    /// after a fetch of ours, so that its spool reports are its own claim
    /// coming and going, and are dropped. Becoming ready (mail or claims may
    /// be waiting) or a report of mail or of more claims makes an automatic
    /// fetch due, debounced; without automatic fetches, a change makes a
    /// spool check due at once (to count the messages for the user).
    pub fn heard(&mut self, reports: Vec<WatchReport>, stale: bool, now: Instant) -> Heard {
        let mut heard = Heard::default();
        let mut latest = None;
        for report in reports {
            self.last_heard = now;
            match report {
                WatchReport::Ready(mode) => heard.ready = Some(mode),
                WatchReport::Spool { .. } if stale => {}
                WatchReport::Spool { bytes, claims } => latest = Some((bytes, claims)),
                WatchReport::Alive => {}
                WatchReport::Note(note) => heard.notes.push(note),
            }
        }
        if let Some(mode) = heard.ready {
            self.ready = Some(mode);
            if self.auto_fetch {
                self.debounce.now(now);
            }
        }
        if let Some((bytes, claims)) = latest {
            heard.spool_bytes = Some(bytes);
            if !self.auto_fetch {
                self.next_check = Some(now);
            } else if bytes > 0 || claims > self.claims_seen {
                self.debounce.report(now);
            }
            self.claims_seen = claims;
        }
        heard
    }

    /// Whether the watched link still counts as alive at `now`: the
    /// watcher said `ready` within [`READY_LIMIT`] and has said something
    /// within [`watch::silence_limit`]; else why not.
    pub fn alive(&self, now: Instant) -> Result<(), LinkLost> {
        if self.ready.is_none() && now.duration_since(self.watcher_started) > READY_LIMIT {
            return Err(LinkLost::WatcherNotStarted(READY_LIMIT.as_secs()));
        }
        let silence = watch::silence_limit(self.timings.heartbeat);
        if now.duration_since(self.last_heard) > silence {
            return Err(LinkLost::Silent(silence.as_secs()));
        }
        Ok(())
    }

    /// A spool check at `now` found `spool_bytes`: fetched (debounced) if
    /// not empty; the next periodic check is due where there is no watcher.
    pub fn checked(&mut self, now: Instant, spool_bytes: u64, link: Link) {
        if self.auto_fetch && spool_bytes > 0 {
            self.debounce.report(now);
        }
        self.next_check = (link == Link::Checked).then(|| now + self.timings.check_every);
    }

    /// A fetch ended at `now`. After a success the next failure retries
    /// soon again; an automatic fetch that failed (the spool still holds
    /// the mail: a busy lock, a full disk) is tried again after a backoff,
    /// not at every report.
    pub fn fetched(&mut self, now: Instant, ok: bool, auto: bool) {
        if ok {
            self.retry.reset();
            self.retry_at = now;
        } else if auto {
            let at = now + self.retry.fail();
            self.retry_at = at;
            self.debounce.now(at);
        }
    }

    /// The probe after a fetch found `spool_bytes` left: mail that came
    /// during the fetch, fetched next (debounced).
    pub fn left_after_fetch(&mut self, now: Instant, spool_bytes: u64) {
        if self.auto_fetch && spool_bytes > 0 {
            self.debounce.report(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timings() -> Timings {
        Timings {
            poll: ms(1_000),
            heartbeat: Duration::from_secs(60),
            quiet: ms(50),
            max_delay: ms(1_000),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            retry_max: Duration::from_secs(8),
            check_every: Duration::from_secs(60),
        }
    }

    fn spool(bytes: u64, claims: u64) -> WatchReport {
        WatchReport::Spool { bytes, claims }
    }

    /// A schedule linked at `t0` with a ready inotify watcher.
    fn watched(auto_fetch: bool, t0: Instant) -> Schedule {
        let mut s = Schedule::new(timings(), auto_fetch, t0);
        assert_eq!(s.next(t0, Link::Down, false, None), Step::Connect);
        s.connected();
        s.watching(t0);
        s.heard(vec![WatchReport::Ready(WatchMode::Inotify)], false, t0);
        s
    }

    #[test]
    fn the_users_fetch_goes_first_once_even_with_the_link_down() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timings(), false, t0);
        s.lost(t0);
        s.order_fetch();
        assert!(s.fetch_ordered());
        assert_eq!(
            s.next(t0, Link::Down, true, None),
            Step::Fetch { auto: false }
        );
        assert!(!s.fetch_ordered());
        assert!(matches!(
            s.next(t0, Link::Down, true, None),
            Step::Wait(Some(_))
        ));
    }

    #[test]
    fn a_lost_link_reconnects_after_a_growing_jittered_backoff() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timings(), true, t0);
        assert_eq!(s.next(t0, Link::Down, false, None), Step::Connect);
        let mut bound = Duration::from_secs(1);
        for _ in 0..5 {
            let wait = s.lost(t0);
            assert!(wait >= bound / 2 && wait < bound, "{wait:?} for {bound:?}");
            // Nothing else runs while the link is down, mail to send or not.
            assert_eq!(
                s.next(t0, Link::Down, true, None),
                Step::Wait(Some(t0 + wait))
            );
            assert_eq!(s.next(t0 + wait, Link::Down, true, None), Step::Connect);
            bound = (bound * 2).min(Duration::from_secs(8));
        }
        s.connected();
        assert!(s.lost(t0) < Duration::from_secs(1), "reset by a connection");
    }

    #[test]
    fn a_ready_watcher_fetches_at_once_only_with_auto_fetch() {
        let t0 = Instant::now();
        let mut s = watched(true, t0);
        assert_eq!(s.ready(), Some(WatchMode::Inotify));
        assert_eq!(
            s.next(t0, Link::Watched, false, None),
            Step::Fetch { auto: true }
        );
        let mut s = watched(false, t0);
        assert_eq!(
            s.next(t0, Link::Watched, false, None),
            Step::Wait(Some(t0 + watch::silence_limit(Duration::from_secs(60))))
        );
    }

    #[test]
    fn a_lone_delivery_is_fetched_at_once_a_burst_after_a_quiet_moment() {
        let t0 = Instant::now();
        let mut s = watched(true, t0);
        s.next(t0, Link::Watched, false, None);
        s.fetched(t0, true, true);
        let heard = s.heard(vec![spool(2_000, 0)], false, t0 + ms(100));
        assert_eq!(heard.spool_bytes, Some(2_000));
        assert_eq!(
            s.next(t0 + ms(100), Link::Watched, false, None),
            Step::Fetch { auto: true }
        );
        s.fetched(t0 + ms(200), true, true);
        // The next delivery soon after: a burst, fetched once it is quiet.
        s.heard(vec![spool(3_000, 0)], false, t0 + ms(300));
        assert_eq!(
            s.next(t0 + ms(320), Link::Watched, false, None),
            Step::Wait(Some(t0 + ms(350)))
        );
        assert_eq!(
            s.next(t0 + ms(350), Link::Watched, false, None),
            Step::Fetch { auto: true }
        );
    }

    #[test]
    fn an_empty_spool_fetches_only_for_claims_left_behind() {
        let t0 = Instant::now();
        let mut s = watched(true, t0);
        s.next(t0, Link::Watched, false, None);
        // Our own claim's record comes and goes; the spool stays empty.
        s.heard(vec![spool(0, 0)], false, t0);
        assert!(matches!(
            s.next(t0 + ms(200), Link::Watched, false, None),
            Step::Wait(_)
        ));
        // Another client's claim is finished on the server.
        s.heard(vec![spool(0, 1)], false, t0 + ms(200));
        assert_eq!(
            s.next(t0 + ms(250), Link::Watched, false, None),
            Step::Fetch { auto: true }
        );
        // The same claim reported again is nothing new.
        s.heard(vec![spool(0, 1)], false, t0 + ms(300));
        assert!(matches!(
            s.next(t0 + ms(400), Link::Watched, false, None),
            Step::Wait(_)
        ));
    }

    #[test]
    fn reports_from_our_own_fetch_are_stale_but_still_heard() {
        let t0 = Instant::now();
        let mut s = watched(true, t0);
        s.next(t0, Link::Watched, false, None);
        let later = t0 + Duration::from_secs(100);
        let heard = s.heard(
            vec![spool(5_000, 1), WatchReport::Note("slow".into())],
            true,
            later,
        );
        assert_eq!(heard.spool_bytes, None);
        assert_eq!(heard.notes, ["slow"]);
        assert!(matches!(
            s.next(later + ms(100), Link::Watched, false, None),
            Step::Wait(_)
        ));
        // Heard: the silence limit runs from the stale lines.
        assert!(s.alive(later + Duration::from_secs(149)).is_ok());
        assert!(s.alive(later + Duration::from_secs(151)).is_err());
    }

    #[test]
    fn without_auto_fetch_a_change_is_counted_by_a_check() {
        let t0 = Instant::now();
        let mut s = watched(false, t0);
        s.heard(vec![spool(900, 0)], false, t0 + ms(10));
        assert_eq!(s.next(t0 + ms(10), Link::Watched, false, None), Step::Check);
        s.checked(t0 + ms(20), 900, Link::Watched);
        assert!(matches!(
            s.next(t0 + ms(30), Link::Watched, false, None),
            Step::Wait(_)
        ));
    }

    #[test]
    fn a_failed_automatic_fetch_waits_its_retry_whatever_is_reported() {
        let t0 = Instant::now();
        let mut s = watched(true, t0);
        assert_eq!(
            s.next(t0, Link::Watched, false, None),
            Step::Fetch { auto: true }
        );
        s.fetched(t0, false, true);
        let Step::Wait(Some(retry)) = s.next(t0, Link::Watched, false, None) else {
            panic!("no retry");
        };
        assert!(retry >= t0 + ms(500) && retry < t0 + Duration::from_secs(1));
        // A report moves the debounce but not before the retry.
        s.heard(vec![spool(100, 0)], false, t0 + ms(10));
        assert!(
            matches!(s.next(t0 + ms(100), Link::Watched, false, None), Step::Wait(Some(at)) if at == retry)
        );
        assert_eq!(
            s.next(retry, Link::Watched, false, None),
            Step::Fetch { auto: true }
        );
        // A second failure waits longer; a success clears it.
        s.fetched(retry, false, true);
        let Step::Wait(Some(second)) = s.next(retry, Link::Watched, false, None) else {
            panic!("no retry");
        };
        assert!(
            second >= retry + Duration::from_secs(1),
            "{:?}",
            second - retry
        );
        s.fetched(second, true, true);
        s.heard(vec![spool(100, 0)], false, second);
        assert_eq!(
            s.next(second + ms(50), Link::Watched, false, None),
            Step::Fetch { auto: true }
        );
    }

    #[test]
    fn a_failed_fetch_the_user_ordered_is_not_retried_by_itself() {
        let t0 = Instant::now();
        let mut s = watched(false, t0);
        s.order_fetch();
        assert_eq!(
            s.next(t0, Link::Watched, false, None),
            Step::Fetch { auto: false }
        );
        s.fetched(t0, false, false);
        s.left_after_fetch(t0, 1_000);
        assert!(matches!(
            s.next(t0 + Duration::from_secs(10), Link::Watched, false, None),
            Step::Wait(_)
        ));
    }

    #[test]
    fn mail_left_after_a_fetch_is_fetched_next() {
        let t0 = Instant::now();
        let mut s = watched(true, t0);
        s.next(t0, Link::Watched, false, None);
        s.fetched(t0 + ms(500), true, true);
        s.left_after_fetch(t0 + ms(500), 1_000);
        assert_eq!(
            s.next(t0 + ms(550), Link::Watched, false, None),
            Step::Fetch { auto: true }
        );
    }

    #[test]
    fn a_silent_or_never_ready_watcher_means_a_dead_link() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timings(), true, t0);
        s.watching(t0);
        assert_eq!(
            s.next(t0, Link::Watched, false, None),
            Step::Wait(Some(t0 + READY_LIMIT))
        );
        assert!(s.alive(t0 + READY_LIMIT).is_ok());
        s.heard(vec![WatchReport::Alive], false, t0 + READY_LIMIT);
        let err = s.alive(t0 + READY_LIMIT + ms(1)).unwrap_err().to_string();
        assert!(err.contains("did not start within 30 s"), "{err}");
        let mut s = watched(false, t0);
        s.heard(
            vec![WatchReport::Alive],
            false,
            t0 + Duration::from_secs(100),
        );
        assert!(s.alive(t0 + Duration::from_secs(250)).is_ok());
        let err = s
            .alive(t0 + Duration::from_secs(251))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no word from the server for 150 s"), "{err}");
    }

    #[test]
    fn without_a_watcher_the_spool_is_checked_periodically() {
        let t0 = Instant::now();
        let every = Duration::from_secs(60);
        let mut s = Schedule::new(timings(), true, t0);
        s.connected();
        s.checking(t0, 0);
        assert_eq!(
            s.next(t0, Link::Checked, false, None),
            Step::Wait(Some(t0 + every))
        );
        assert_eq!(s.next(t0 + every, Link::Checked, false, None), Step::Check);
        s.checked(t0 + every, 3_000, Link::Checked);
        assert_eq!(
            s.next(t0 + every + ms(50), Link::Checked, false, None),
            Step::Fetch { auto: true }
        );
        assert_eq!(
            s.next(t0 + every + ms(50), Link::Checked, false, None),
            Step::Wait(Some(t0 + every * 2))
        );
        // Mail waiting when the checks start is fetched at once.
        let mut s = Schedule::new(timings(), true, t0);
        s.checking(t0, 10);
        assert_eq!(
            s.next(t0, Link::Checked, false, None),
            Step::Fetch { auto: true }
        );
    }

    #[test]
    fn the_outbox_goes_when_linked_after_fetches_and_checks() {
        let t0 = Instant::now();
        let mut s = watched(true, t0);
        assert_eq!(
            s.next(t0, Link::Watched, true, None),
            Step::Fetch { auto: true }
        );
        s.fetched(t0, true, true);
        s.heard(vec![spool(0, 0)], false, t0);
        assert_eq!(s.next(t0, Link::Watched, true, None), Step::Flush);
        // A deferred message's next try is a timer while linked...
        let soon = t0 + Duration::from_secs(5);
        assert_eq!(
            s.next(t0, Link::Watched, false, Some(soon)),
            Step::Wait(Some(soon))
        );
        // ...but not while the link is down: the reconnect comes first.
        let wait = s.lost(t0);
        assert_eq!(
            s.next(t0, Link::Down, true, Some(t0)),
            Step::Wait(Some(t0 + wait))
        );
    }
}
