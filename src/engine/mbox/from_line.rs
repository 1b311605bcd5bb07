//! Recognising a From_ line (the grammar is in the [`super`] module
//! documentation).

use memchr::memchr;

use super::MAX_FROM_LINE;

/// The length of the From_ line at the start of `bytes` (which holds at
/// least [`MAX_FROM_LINE`] bytes unless the input ends within them).
pub(super) fn from_line_len_in(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(b"From ") {
        return None;
    }
    let window = &bytes[..bytes.len().min(MAX_FROM_LINE)];
    let len = match memchr(b'\n', window) {
        Some(i) => i + 1,
        None if bytes.len() < MAX_FROM_LINE => bytes.len(),
        None => return None,
    };
    is_from_line(strip_line_ending(&bytes[..len])).then_some(len)
}

pub(super) fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether `line` (without its line ending) is a From_ line as defined in
/// the [`super`] module documentation.
pub fn is_from_line(line: &[u8]) -> bool {
    if line.len() + 1 > MAX_FROM_LINE {
        return false;
    }
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let rest = skip_space(rest);
    if is_date(rest) {
        return true;
    }
    let Some(after_sender) = skip_sender(rest) else {
        return false;
    };
    let date = skip_space(after_sender);
    date.len() < after_sender.len() && is_date(date)
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_space(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    &s[n..]
}

/// A run of bytes that are not whitespace or control bytes.
fn word_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| b > b' ' && b != 0x7f).count()
}

fn skip_sender(s: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    if s.first() == Some(&b'"') {
        let close = memchr(b'"', &s[1..])? + 2;
        if s[..close].iter().any(|&b| b < b' ' && b != b'\t') {
            return None;
        }
        at = close;
    }
    let word = word_len(&s[at..]);
    if at + word == 0 {
        return None;
    }
    Some(&s[at + word..])
}

/// `weekday month day time [zone [zone]] year [anything]`.
fn is_date(s: &[u8]) -> bool {
    const DAYS: [&[u8]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let name = |s: &[u8], names: &[&[u8]]| -> bool {
        s.len() >= 3 && names.iter().any(|n| s[..3].eq_ignore_ascii_case(n))
    };
    // Each field must be followed by whitespace (or, for the year, the end).
    let field = |s: &[u8], len: usize| -> Option<usize> {
        (s.len() > len && is_space(s[len])).then_some(len)
    };
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();

    if !name(s, &DAYS) {
        return false;
    }
    let Some(n) = field(s, 3) else { return false };
    let s = skip_space(&s[n..]);
    if !name(s, &MONTHS) {
        return false;
    }
    let Some(n) = field(s, 3) else { return false };
    let s = skip_space(&s[n..]);
    let day = digits(s);
    if !(1..=2).contains(&day) || field(s, day).is_none() {
        return false;
    }
    let s = skip_space(&s[day..]);
    let Some(time) = time_len(s) else {
        return false;
    };
    if field(s, time).is_none() {
        return false;
    }
    let mut s = skip_space(&s[time..]);
    for _ in 0..2 {
        if s.first()
            .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'+' || b == b'-')
        {
            let zone = word_len(s);
            if field(s, zone).is_none() {
                return false;
            }
            s = skip_space(&s[zone..]);
        }
    }
    let year = digits(s);
    (year == 2 || year == 4) && (s.len() == year || is_space(s[year]))
}

/// Length of `H:MM` or `H:MM:SS` (1–2 digit hours) at the start of `s`.
fn time_len(s: &[u8]) -> Option<usize> {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let hours = digits(s);
    if !(1..=2).contains(&hours) || s.get(hours) != Some(&b':') {
        return None;
    }
    let mut at = hours + 1;
    if digits(&s[at..]) != 2 {
        return None;
    }
    at += 2;
    if s.get(at) == Some(&b':') {
        if digits(&s[at + 1..]) != 2 {
            return None;
        }
        at += 3;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Mon Jan  1 00:00:00 2001";

    #[test]
    fn from_line_forms() {
        for line in [
            "From MAILER-DAEMON Thu Jan  1 00:00:00 1970",
            // Postfix and procmail write two spaces before the date.
            "From MAILER-DAEMON  Sat Nov 28 09:53:43 2026",
            "From root@vm  Sat Nov 28 09:40:32 2026",
            "From \"a b\"@x  Sat Nov  8 09:40:32 2026",
            "From user@example.com Sat Nov 28 09:27:34 2026",
            "From  Mon Jan  1 00:00:00 2001",
            "From Mon Jan 1 00:00 2001",
            "From \"john doe\"@example.com Tue Feb 29 12:00:00 2000",
            "From x@y Wed Aug  2 00:39:12 MET DST 1995",
            "From x@y Wed Aug  2 00:39:12 +0200 1995",
            "From x@y Thu Nov  9 22:33:52 2001 +0300",
            "From uucp Thu Nov  9 22:33:52 2001 remote from host",
            "From x@y\tfri\tdec 31 23:59:59 99",
            "From 66.133.153.18 Thu Oct 21 04:52:30 2004",
            "From Mon Mon Jan  1 00:00:00 2001",
        ] {
            assert!(is_from_line(line.as_bytes()), "{line}");
        }
        for line in [
            "From here on, all is quiet.",
            "From x@y",
            "From x@y Mon Jan  1 2001",
            "From x@y Mon Foo  1 00:00:00 2001",
            "From x@y Mon Jan  1 00:00:00",
            "From x@y Mon Jan  1 00:00:00 20011",
            "From x@y Mon Jan 123 00:00:00 2001",
            "From x@y Mon Jan  1 0:0:00 2001",
            "From a b Mon Jan  1 00:00:00 2001",
            "From x\0y Mon Jan  1 00:00:00 2001",
            "from x@y Mon Jan  1 00:00:00 2001",
            ">From x@y Mon Jan  1 00:00:00 2001",
        ] {
            assert!(!is_from_line(line.as_bytes()), "{line}");
        }
        let long = format!("From {}@y {DATE}", "x".repeat(MAX_FROM_LINE));
        assert!(!is_from_line(long.as_bytes()));
    }
}
