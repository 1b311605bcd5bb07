//! The zstd level that fits the link: on a slow link the server's
//! compressor at level 19 (with `--long`) still outruns the link and every
//! byte saved is time saved; on a fast one level 19 would be the bottleneck
//! (docs/bench-fetch.md). The rate comes from the account's last large
//! transfer, kept in the account's work area as `link-rate` (`UNIX_SECONDS
//! BYTES_PER_SECOND`).
//!
//! A transfer at level 19 measures the compressor as much as the link, so
//! it only ever raises the recorded rate (a link found fast again), never
//! lowers it; a record older than [`MAX_AGE`] is not used, so the level is
//! measured afresh at the default level now and then.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engine::account::ZstdLevel;

/// The file in the account's work area.
pub const FILE_NAME: &str = "link-rate";

/// Below this rate (bytes per second of compressed payload; 2 Mbit/s) the
/// slow-link level is used: zstd -19 makes about 0.3 MB/s of output from
/// real mail on one core here, well above it.
pub const SLOW_LINK: f64 = 250_000.0;

/// The level for a slow link.
pub const SLOW_LINK_LEVEL: i32 = 19;

/// Transfers smaller than this say more about the round trip than the rate.
pub const MIN_SAMPLE_BYTES: u64 = 64 * 1024;

/// How long a measured rate is trusted.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The rate recorded in `dir` and whether it is recent, if any.
pub fn recorded_rate(dir: &Path, now: SystemTime) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(FILE_NAME)).ok()?;
    let mut words = text.split_whitespace();
    let when: u64 = words.next()?.parse().ok()?;
    let rate: f64 = words.next()?.parse().ok()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    (now.saturating_sub(when) <= MAX_AGE.as_secs() && rate.is_finite() && rate > 0.0)
        .then_some(rate)
}

/// The zstd level to use when none is configured: [`SLOW_LINK_LEVEL`] when
/// the recorded rate is below [`SLOW_LINK`], else `None` (the default).
pub fn level_for(rate: Option<f64>) -> Option<ZstdLevel> {
    rate.filter(|r| *r < SLOW_LINK)
        .map(|_| ZstdLevel::Fixed(SLOW_LINK_LEVEL))
}

/// Records a transfer of `payload` bytes in `elapsed` at zstd `level`
/// (`None`: another method), if it is large enough to say something; a
/// transfer at the slow-link level only raises the rate above [`SLOW_LINK`].
pub fn record(
    dir: &Path,
    level: Option<i32>,
    payload: u64,
    elapsed: Duration,
    now: SystemTime,
) -> std::io::Result<()> {
    if payload < MIN_SAMPLE_BYTES || elapsed.is_zero() {
        return Ok(());
    }
    let rate = payload as f64 / elapsed.as_secs_f64();
    if level.is_some_and(|l| l >= SLOW_LINK_LEVEL) && rate < SLOW_LINK {
        return Ok(());
    }
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let path = dir.join(FILE_NAME);
    super::write_private(&path, format!("{secs} {rate:.0}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_links_get_level_19_and_fast_ones_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        assert_eq!(level_for(recorded_rate(dir.path(), now)), None);
        // modem: 1 Mbit/s, a 1 MB transfer in 8 s
        record(dir.path(), Some(9), 1_000_000, Duration::from_secs(8), now).unwrap();
        assert_eq!(
            level_for(recorded_rate(dir.path(), now)),
            Some(ZstdLevel::Fixed(19))
        );
        // at level 19 a slow measure (compressor or link) changes nothing
        record(dir.path(), Some(19), 100_000, Duration::from_secs(2), now).unwrap();
        assert_eq!(recorded_rate(dir.path(), now), Some(125_000.0));
        // ... but a fast one does (dsl: 10 Mbit/s)
        record(
            dir.path(),
            Some(19),
            1_000_000,
            Duration::from_millis(800),
            now,
        )
        .unwrap();
        assert_eq!(level_for(recorded_rate(dir.path(), now)), None);
        // small transfers are no sample
        record(dir.path(), Some(9), 1_000, Duration::from_secs(10), now).unwrap();
        assert_eq!(level_for(recorded_rate(dir.path(), now)), None);
        // an old record is not used
        record(dir.path(), Some(9), 1_000_000, Duration::from_secs(8), now).unwrap();
        assert_eq!(recorded_rate(dir.path(), now + MAX_AGE * 2), None);
    }
}
