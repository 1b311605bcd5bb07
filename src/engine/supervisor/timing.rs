//! The supervisor's clockwork, free of I/O so that it is unit-tested as it
//! is: reconnect backoff (exponential, with jitter) and the debounce of the
//! watcher's reports before an automatic fetch.

use std::time::{Duration, Instant};

use crate::engine::watch;

/// Timings of the per-account workers.
#[derive(Debug, Clone)]
pub struct Timings {
    /// The server watcher's stat-loop interval where it has no inotify.
    pub poll: Duration,
    /// The server watcher's heartbeat; the link counts as dead after
    /// [`watch::silence_limit`] of silence.
    pub heartbeat: Duration,
    /// Quiet period after the latest report before an automatic fetch,
    /// when reports come in a burst (see [`Debounce`]).
    pub quiet: Duration,
    /// Longest wait from the first report to the fetch, however busy the
    /// spool; also how long without a report makes the next one a lone
    /// delivery, fetched at once.
    pub max_delay: Duration,
    /// First reconnect (and fetch retry) delay; doubled after every failure.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Longest delay before an automatic fetch that failed is tried again.
    pub retry_max: Duration,
    /// Spool checks where the server watcher cannot run (the fallback).
    pub check_every: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            poll: watch::DEFAULT_POLL,
            heartbeat: watch::DEFAULT_HEARTBEAT,
            quiet: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            retry_max: Duration::from_secs(300),
            check_every: Duration::from_secs(60),
        }
    }
}

/// Exponential backoff: `min`, doubled after every failure up to `max`,
/// each wait scaled by a jitter factor in [0.5, 1.0) so that clients cut
/// off together do not all come back at the same moment.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `min` (at least 1 ms), capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait after one more failure (jittered), doubling the next one.
    pub fn fail(&mut self) -> Duration {
        let wait = jitter(self.next);
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// `d` scaled by a pseudo-random factor in [0.5, 1.0).
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let fraction = (h.finish() % 1000) as f64 / 2000.0;
    d.mul_f64(0.5 + fraction)
}

/// Debounce of spool reports. A report that comes after `max_delay` or
/// more without one is a lone delivery and makes a fetch due at once: the
/// watcher reports a delivery only once its agent has released the lock,
/// so there is nothing to wait for (waiting `quiet` there only added its
/// length to every message's latency, docs/push.md). Reports closer
/// together are a burst: the fetch is due once they have been quiet for
/// `quiet`, and at the latest `max_delay` after the first one, so that a
/// burst of deliveries is fetched in a few fetches rather than one per
/// message.
#[derive(Debug, Clone)]
pub struct Debounce {
    quiet: Duration,
    max_delay: Duration,
    /// (first report, fetch due) of the pending fetch.
    pending: Option<(Instant, Instant)>,
    /// The latest report, pending or already fetched.
    last: Option<Instant>,
}

impl Debounce {
    /// Nothing pending yet.
    pub fn new(quiet: Duration, max_delay: Duration) -> Debounce {
        Debounce {
            quiet,
            max_delay,
            pending: None,
            last: None,
        }
    }

    /// A report at `now`. After `max_delay` without one, the fetch is due
    /// at once; otherwise it moves to a quiet period later, never beyond
    /// the bound from the first report.
    pub fn report(&mut self, now: Instant) {
        let lone = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.max_delay);
        self.last = Some(now);
        if lone && self.pending.is_none() {
            self.pending = Some((now, now));
            return;
        }
        let first = self.pending.map_or(now, |(first, _)| first);
        let due = (now + self.quiet).min(first + self.max_delay);
        self.pending = Some((first, due));
    }

    /// A fetch due at once (the watcher just started: mail or claims may be
    /// waiting).
    pub fn now(&mut self, now: Instant) {
        self.pending = Some((now, now));
    }

    /// When the pending fetch is due, if one is.
    pub fn due_at(&self) -> Option<Instant> {
        self.pending.map(|(_, due)| due)
    }

    /// Whether a fetch is due at `now`; taking it clears it.
    pub fn take_due(&mut self, now: Instant) -> bool {
        if self.pending.is_some_and(|(_, due)| due <= now) {
            self.pending = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(5) && j < Duration::from_secs(10),
                "{j:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<Duration> = (0..5).map(|_| b.fail()).collect();
        let bounds = [1, 2, 4, 5, 5];
        for (wait, bound) in waits.iter().zip(bounds) {
            let bound = Duration::from_secs(bound);
            assert!(*wait >= bound / 2 && *wait < bound, "{waits:?}");
        }
        b.reset();
        assert!(b.fail() < Duration::from_secs(1));
    }

    #[test]
    fn a_cap_below_the_start_is_the_start() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        for _ in 0..3 {
            let w = b.fail();
            assert!(w >= Duration::from_secs(1) && w < Duration::from_secs(2));
        }
    }

    #[test]
    fn a_lone_report_is_due_at_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(50), ms(1000));
        assert_eq!(d.due_at(), None);
        assert!(!d.take_due(t0));
        d.report(t0);
        assert_eq!(d.due_at(), Some(t0), "the first report");
        assert!(d.take_due(t0));
        // The next report a second or more later is a lone one too.
        d.report(t0 + ms(1000));
        assert_eq!(d.due_at(), Some(t0 + ms(1000)));
        assert!(d.take_due(t0 + ms(1000)));
        d.report(t0 + ms(5000));
        assert!(d.take_due(t0 + ms(5000)));
    }

    #[test]
    fn debounce_waits_for_quiet_but_not_beyond_the_bound() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(50), ms(1000));
        // A lone report, fetched; the next comes soon after: a burst.
        d.report(t0 - ms(300));
        assert!(d.take_due(t0 - ms(300)));
        d.report(t0);
        assert_eq!(d.due_at(), Some(t0 + ms(50)));
        // Reports every 30 ms keep pushing it back...
        for i in 1..=40 {
            d.report(t0 + ms(30 * i));
            assert!(!d.take_due(t0 + ms(30 * i)), "due at report {i}");
            if 30 * i + 50 >= 1000 {
                break;
            }
        }
        // ...but never beyond a second after the first.
        d.report(t0 + ms(990));
        assert_eq!(d.due_at(), Some(t0 + ms(1000)));
        assert!(!d.take_due(t0 + ms(999)));
        assert!(d.take_due(t0 + ms(1000)));
        assert_eq!(d.due_at(), None, "taken");
        // The next report soon after (mail that came during the fetch)
        // starts a new bound.
        d.report(t0 + ms(1300));
        assert_eq!(d.due_at(), Some(t0 + ms(1350)));
    }

    #[test]
    fn a_fetch_due_now_is_due_at_once() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Duration::from_millis(50), Duration::from_secs(1));
        d.now(t0);
        assert!(d.take_due(t0));
    }
}
