//! Figures the dashboard derives from the fetch history: compression ratios,
//! the small ratio trend of the accounts table, and the bytes saved today,
//! in the last week and in all. Pure functions over [`PastFetch`] lists, and
//! [`Digest`], which keeps one account's figures between frames so that a
//! frame never scans the whole history.

use crate::engine::event::FetchSummary;
use crate::engine::event::PastFetch;

/// Raw bytes over compressed payload bytes (0 when nothing was compressed).
pub fn ratio(summary: &FetchSummary) -> f64 {
    if summary.payload_bytes == 0 {
        0.0
    } else {
        summary.raw_bytes as f64 / summary.payload_bytes as f64
    }
}

/// Bytes a fetch kept off the wire: raw mail minus what the SSH socket
/// carried.
pub fn saved(summary: &FetchSummary) -> u64 {
    summary.raw_bytes.saturating_sub(summary.socket_bytes)
}

/// The ratios of an account's last `n` fetches that moved something,
/// oldest first.
pub fn recent_ratios(history: &[PastFetch], account: &str, n: usize) -> Vec<f64> {
    let mut ratios: Vec<f64> = history
        .iter()
        .rev()
        .filter(|p| p.account == account && p.summary.payload_bytes > 0)
        .take(n)
        .map(|p| ratio(&p.summary))
        .collect();
    ratios.reverse();
    ratios
}

/// The glyphs of a trend, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Whether a cell's symbol is one of a trend's glyphs.
pub fn is_trend_glyph(symbol: &str) -> bool {
    let mut chars = symbol.chars();
    chars.next().is_some_and(|c| BARS.contains(&c)) && chars.next().is_none()
}

/// Block glyphs for values from zero to the largest of them (`▃▅█▆`), one
/// column per value.
pub fn trend_glyphs(values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|&v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((v / max * 7.0).round() as usize).min(7)]
            }
        })
        .collect()
}

/// Ratios a [`Digest`] keeps: the most the accounts table's trend shows.
pub const TREND_KEPT: usize = 8;

/// One account's figures from the history, derived when the history changes
/// (a fetch ended) and, for the totals that depend on the time of day, at
/// most once a minute, instead of on every frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Digest {
    /// Where the account's fetches are in the history, oldest first.
    pub entries: Vec<usize>,
    /// The ratios of its last [`TREND_KEPT`] fetches that moved something,
    /// oldest first.
    pub ratios: Vec<f64>,
    /// Its totals, as of the last [`Digest::refresh_totals`].
    pub totals: Totals,
    /// The minute (Unix seconds / 60) and UTC offset the totals are for;
    /// `None` once the history changed.
    totals_for: Option<(u64, i64)>,
}

impl Digest {
    /// The digest of `account`'s fetches in `history` (totals not yet
    /// computed: see [`Digest::refresh_totals`]).
    pub fn of(history: &[PastFetch], account: &str) -> Digest {
        Digest {
            entries: history
                .iter()
                .enumerate()
                .filter(|(_, p)| p.account == account)
                .map(|(i, _)| i)
                .collect(),
            ratios: recent_ratios(history, account, TREND_KEPT),
            totals: Totals::default(),
            totals_for: None,
        }
    }

    /// The last `n` ratios (at most [`TREND_KEPT`]), oldest first.
    pub fn last_ratios(&self, n: usize) -> &[f64] {
        &self.ratios[self.ratios.len().saturating_sub(n)..]
    }

    /// The ratio of the last fetch that moved something.
    pub fn last_ratio(&self) -> Option<f64> {
        self.ratios.last().copied()
    }

    /// Computes the totals again when the minute or the offset changed
    /// since they were computed, or the history did.
    pub fn refresh_totals(&mut self, history: &[PastFetch], now_unix: u64, utc_offset: i64) {
        let key = (now_unix / 60, utc_offset);
        if self.totals_for != Some(key) {
            self.totals = totals_of(
                self.entries.iter().filter_map(|&i| history.get(i)),
                now_unix,
                utc_offset,
            );
            self.totals_for = Some(key);
        }
    }
}

/// When the local day of `now_unix` began, in seconds since the Unix epoch.
pub fn local_midnight(now_unix: u64, utc_offset: i64) -> u64 {
    let into_day = (now_unix as i64 + utc_offset).rem_euclid(86_400);
    now_unix.saturating_sub(into_day as u64)
}

/// What fetches added up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes saved by fetches that ended today (local time).
    pub saved_today: u64,
    /// Bytes saved in the last 7 days.
    pub saved_week: u64,
    /// Bytes saved in all fetches recorded.
    pub saved_all: u64,
    /// Raw bytes of all fetches.
    pub raw_all: u64,
    /// Messages of all fetches.
    pub messages: u64,
    /// Fetches recorded.
    pub fetches: u64,
}

/// Totals over the given fetches. Fetches without a time count only in the
/// all-time figures.
pub fn totals_of<'a>(
    fetches: impl Iterator<Item = &'a PastFetch>,
    now_unix: u64,
    utc_offset: i64,
) -> Totals {
    let midnight = local_midnight(now_unix, utc_offset);
    let week_ago = now_unix.saturating_sub(7 * 86_400);
    let mut t = Totals::default();
    for p in fetches {
        let saved = saved(&p.summary);
        t.saved_all += saved;
        t.raw_all += p.summary.raw_bytes;
        t.messages += p.summary.messages;
        t.fetches += 1;
        if let Some(at) = p.finished_unix {
            if at >= midnight {
                t.saved_today += saved;
            }
            if at >= week_ago {
                t.saved_week += saved;
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Totals over an account's fetches (`None`: every account's). Fetches
    /// without a time count only in the all-time figures.
    fn totals(
        history: &[PastFetch],
        account: Option<&str>,
        now_unix: u64,
        utc_offset: i64,
    ) -> Totals {
        totals_of(
            history
                .iter()
                .filter(|p| account.is_none_or(|a| p.account == a)),
            now_unix,
            utc_offset,
        )
    }

    fn fetch(account: &str, at: Option<u64>, raw: u64, socket: u64) -> PastFetch {
        PastFetch {
            account: account.into(),
            finished_unix: at,
            summary: FetchSummary {
                messages: 10,
                undelivered: 0,
                raw_bytes: raw,
                payload_bytes: socket,
                socket_bytes: socket,
                method: "zstd -3".into(),
                elapsed: Duration::from_secs(1),
                ..Default::default()
            },
        }
    }

    #[test]
    fn totals_split_today_week_and_all_at_local_midnight() {
        // 2025-11-28 09:00 UTC; at UTC+2 the local day began at 22:00 UTC.
        let now = 1_764_320_400;
        let history = [
            fetch("home", Some(now - 60), 1_000, 200),
            fetch("home", Some(now - 10 * 3600), 500, 100),
            fetch("home", Some(now - 3 * 86_400), 300, 100),
            fetch("home", Some(now - 30 * 86_400), 100, 50),
            fetch("home", None, 10, 5),
            fetch("work", Some(now - 60), 9_000, 1_000),
        ];
        let t = totals(&history, Some("home"), now, 2 * 3600);
        assert_eq!(t.saved_today, 800 + 400, "10 h ago was 01:00 today here");
        assert_eq!(t.saved_week, 800 + 400 + 200);
        assert_eq!(t.saved_all, 800 + 400 + 200 + 50 + 5);
        assert_eq!((t.messages, t.fetches), (50, 5));
        let utc = totals(&history, Some("home"), now, 0);
        assert_eq!(utc.saved_today, 800, "10 h ago was yesterday in UTC");
        let all = totals(&history, None, now, 0);
        assert_eq!(all.saved_all, t.saved_all + 8_000);
    }

    #[test]
    fn trend_scales_to_the_largest_ratio() {
        let history = [
            fetch("home", Some(1), 200, 100),
            fetch("work", Some(2), 900, 100),
            fetch("home", Some(3), 400, 100),
            fetch("home", Some(4), 0, 0),
        ];
        let ratios = recent_ratios(&history, "home", 8);
        assert_eq!(ratios, [2.0, 4.0], "empty fetches have no ratio");
        assert_eq!(trend_glyphs(&ratios), "▅█");
        assert_eq!(trend_glyphs(&[0.0, 0.0]), "▁▁");
        assert_eq!(recent_ratios(&history, "home", 1), [4.0]);
    }

    #[test]
    fn a_digest_keeps_its_accounts_figures_and_totals_for_a_minute() {
        let now = 1_764_320_400;
        let mut history: Vec<PastFetch> = (0..12)
            .map(|i| {
                fetch(
                    if i % 3 == 0 { "work" } else { "home" },
                    Some(now - 600 + i),
                    100 + i * 100,
                    100,
                )
            })
            .collect();
        let mut d = Digest::of(&history, "home");
        assert_eq!(d.entries, [1, 2, 4, 5, 7, 8, 10, 11]);
        assert_eq!(d.ratios, recent_ratios(&history, "home", TREND_KEPT));
        assert_eq!(d.last_ratios(2), &[11.0, 12.0]);
        assert_eq!(d.last_ratio(), Some(12.0));
        d.refresh_totals(&history, now, 0);
        assert_eq!(d.totals, totals(&history, Some("home"), now, 0));
        // Within the same minute the totals are not computed again...
        history[1].summary.raw_bytes = 10_000;
        d.refresh_totals(&history, now + 1, 0);
        assert_ne!(d.totals, totals(&history, Some("home"), now, 0));
        // ...the next minute they are.
        d.refresh_totals(&history, now + 60, 0);
        assert_eq!(d.totals, totals(&history, Some("home"), now + 60, 0));
        assert_eq!(Digest::of(&history, "nobody"), Digest::default());
    }

    #[test]
    fn midnight_follows_the_offset_across_the_date_line() {
        assert_eq!(local_midnight(86_400 + 3600, 0), 86_400);
        assert_eq!(local_midnight(86_400 + 3600, -7200), 7200);
    }
}
