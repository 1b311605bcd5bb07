//! Short human-readable numbers for narrow panels and log lines: sizes,
//! rates, durations. Every output of mailhaul writes sizes with [`bytes`]
//! (decimal units: kB, MB, GB), the dashboard and the headless commands alike.

use std::time::Duration;

/// Bytes in decimal (SI) units, three significant digits (`4.97 MB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else if value >= 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// A rate in bytes per second (`1.70 MB/s`).
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec.max(0.0).round() as u64))
}

/// A duration at a granularity that fits its size (`850ms`, `42s`, `3m05s`, `2h10m`).
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        if secs < 10 {
            format!("{:.1}s", d.as_secs_f64())
        } else {
            format!("{secs}s")
        }
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// How long ago, to the minute (`just now`, `5m ago`, `3h ago`, `2d ago`), so
/// that a label changes at most once a minute and an idle screen stays still.
pub fn ago(d: Duration) -> String {
    let mins = d.as_secs() / 60;
    if mins == 0 {
        "just now".to_string()
    } else if mins < 60 {
        format!("{mins}m ago")
    } else if mins < 48 * 60 {
        format!("{}h ago", mins / 60)
    } else {
        format!("{}d ago", mins / (24 * 60))
    }
}

/// An age in a few letters, to the minute (`12m`, `3h`, `2d`); `None`
/// under a minute. Like [`ago`], it changes at most once a minute.
pub fn age(secs: u64) -> Option<String> {
    let mins = secs / 60;
    if mins == 0 {
        None
    } else if mins < 60 {
        Some(format!("{mins}m"))
    } else if mins < 48 * 60 {
        Some(format!("{}h", mins / 60))
    } else {
        Some(format!("{}d", mins / (24 * 60)))
    }
}

/// A compression ratio (`4.70x`), or `-` when nothing was compressed yet.
pub fn ratio(raw: u64, compressed: u64) -> String {
    if compressed == 0 || raw == 0 {
        "-".to_string()
    } else {
        format!("{:.2}x", raw as f64 / compressed as f64)
    }
}

/// A message made shorter for a panel: the home directory in paths shown
/// as `~`, and paths longer than `max_path` characters elided in the middle
/// (`/var/mail/…/new/1764320400.M1.host`), so that what tells one path from
/// another, its start and its file name, stays.
pub fn tidy_paths(text: &str, home: Option<&str>, max_path: usize) -> String {
    let text = match home {
        Some(home) => home_as_tilde(text, home),
        None => text.to_string(),
    };
    text.split(' ')
        .map(|word| {
            if word.contains('/') && word.chars().count() > max_path {
                elide_middle(word, max_path)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `home` at the start of a path (after a space, quote or `=`) as `~`, only
/// where the path goes on with `/` or ends (so `/home/ann` leaves
/// `/home/anna` alone).
fn home_as_tilde(text: &str, home: &str) -> String {
    let home = home.trim_end_matches('/');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(home) {
        let before_ok = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "'\"`=(:".contains(c));
        let after = &rest[at + home.len()..];
        let after_ok = after
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || "_-.".contains(c)));
        out.push_str(&rest[..at]);
        if before_ok && after_ok {
            out.push('~');
        } else {
            out.push_str(home);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A word shortened to `max` characters with `…` in the middle, keeping
/// more of the end (a file name, a domain) than of the start.
pub fn elide_middle(word: &str, max: usize) -> String {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() <= max || max < 3 {
        return word.to_string();
    }
    let keep = max - 1;
    let head = keep * 2 / 5;
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_show_home_as_tilde_and_lose_their_middle() {
        let home = Some("/home/ann");
        assert_eq!(
            tidy_paths(
                "kept in /home/ann/.local/share/x, not /home/anna/y",
                home,
                80
            ),
            "kept in ~/.local/share/x, not /home/anna/y"
        );
        assert_eq!(tidy_paths("at '/home/ann'", home, 80), "at '~'");
        let long = "/var/lib/mailhaul/journal/home/staged-1764320400.mbox";
        let short = tidy_paths(&format!("file {long} kept"), None, 30);
        assert_eq!(short, "file /var/lib/ma…ed-1764320400.mbox kept");
        assert_eq!(short.split(' ').nth(1).unwrap().chars().count(), 30);
        assert_eq!(
            tidy_paths("a-very-long-word-without-slashes", None, 5),
            "a-very-long-word-without-slashes",
            "only paths are elided"
        );
    }

    #[test]
    fn bytes_keep_three_significant_digits() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(4_970_000), "4.97 MB");
        assert_eq!(bytes(12_345_678), "12.3 MB");
        assert_eq!(bytes(123_456_789), "123 MB");
    }

    #[test]
    fn durations_pick_a_granularity() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(7800)), "2h10m");
    }

    #[test]
    fn ago_changes_once_a_minute() {
        assert_eq!(ago(Duration::from_secs(59)), "just now");
        assert_eq!(ago(Duration::from_secs(61)), "1m ago");
        assert_eq!(ago(Duration::from_secs(119)), "1m ago");
        assert_eq!(ago(Duration::from_secs(3 * 3600)), "3h ago");
    }

    #[test]
    fn ratio_of_nothing_is_a_dash() {
        assert_eq!(ratio(470, 100), "4.70x");
        assert_eq!(ratio(470, 0), "-");
    }
}
