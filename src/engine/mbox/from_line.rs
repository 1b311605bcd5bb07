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
/// the [`super`] module documentation: a one-word sender followed by an
/// asctime date and anything, or any sender followed by a date that ends
/// the line.
pub fn is_from_line(line: &[u8]) -> bool {
    if line.len() + 1 > MAX_FROM_LINE {
        return false;
    }
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    starts_with_sender_and_date(rest) || ends_with_date(rest)
}

/// `[ sender SP+ ] asctime-date [ SP+ anything ]` with a one-word sender.
fn starts_with_sender_and_date(rest: &[u8]) -> bool {
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

/// Most words a date with what may follow it (zones, `remote from HOST`,
/// a comment) takes at the end of a From_ line.
const MAX_DATE_WORDS: usize = 16;

/// `[ sender SP+ ] date [ trailer ]` where the sender is any text without
/// control bytes (it may hold spaces) and the date with its trailer ends
/// the line: found by trying each of the last words as the date's start.
fn ends_with_date(rest: &[u8]) -> bool {
    if rest.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return false;
    }
    let words: Vec<&[u8]> = rest
        .split(|&b| is_space(b))
        .filter(|w| !w.is_empty())
        .collect();
    let first = words.len().saturating_sub(MAX_DATE_WORDS);
    (first..words.len()).any(|k| is_asctime_at_end(&words[k..]) || is_rfc2822_at_end(&words[k..]))
}

/// `weekday month day time [zone [zone]] year [zone [zone]]
/// [remote from HOST]`, as words.
fn is_asctime_at_end(words: &[&[u8]]) -> bool {
    let [weekday, month, day, time, rest @ ..] = words else {
        return false;
    };
    if !(is_name(weekday, &WEEKDAYS) && is_name(month, &MONTHS) && is_day(day) && is_time(time)) {
        return false;
    }
    let zones = rest.iter().take(2).take_while(|w| is_zone(w)).count();
    let Some((year, mut rest)) = rest[zones..].split_first() else {
        return false;
    };
    if !is_year(year) {
        return false;
    }
    let zones = rest.iter().take(2).take_while(|w| is_zone(w)).count();
    rest = &rest[zones..];
    match rest {
        [] => true,
        [remote, from, _host] => {
            remote.eq_ignore_ascii_case(b"remote") && from.eq_ignore_ascii_case(b"from")
        }
        _ => false,
    }
}

/// `weekday, day month year time [zone] [(comment)]`, or the same without
/// the weekday and with the zone, as words (RFC 2822's date, as some
/// exporters write it).
fn is_rfc2822_at_end(words: &[&[u8]]) -> bool {
    let (words, with_weekday) = match words.split_first() {
        Some((weekday, rest))
            if weekday.len() == 4 && weekday[3] == b',' && is_name(&weekday[..3], &WEEKDAYS) =>
        {
            (rest, true)
        }
        _ => (words, false),
    };
    let [day, month, year, time, rest @ ..] = words else {
        return false;
    };
    if !(is_day(day) && is_name(month, &MONTHS) && is_year(year) && is_time(time)) {
        return false;
    }
    let (zone, comment) = match rest.split_first() {
        Some((zone, comment)) if is_zone(zone) => (true, comment),
        _ => (false, rest),
    };
    let comment_ok = match comment {
        [] => true,
        [first, .., last] => first.starts_with(b"(") && last.ends_with(b")"),
        [only] => only.len() >= 2 && only.starts_with(b"(") && only.ends_with(b")"),
    };
    (with_weekday || zone) && comment_ok
}

const WEEKDAYS: [&[u8]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
const MONTHS: [&[u8]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// A three-letter English name from `names`, in any case.
fn is_name(word: &[u8], names: &[&[u8]]) -> bool {
    word.len() == 3 && names.iter().any(|n| word.eq_ignore_ascii_case(n))
}

/// One or two digits, 1 to 31.
fn is_day(word: &[u8]) -> bool {
    number(word, 1, 2).is_some_and(|d| (1..=31).contains(&d))
}

/// Two or four digits.
fn is_year(word: &[u8]) -> bool {
    (word.len() == 2 || word.len() == 4) && word.iter().all(u8::is_ascii_digit)
}

/// `H:MM` or `H:MM:SS` (1–2 digit hours) within a day (a leap second allowed).
fn is_time(word: &[u8]) -> bool {
    let mut parts = word.split(|&b| b == b':');
    let (Some(hours), Some(minutes)) = (parts.next(), parts.next()) else {
        return false;
    };
    let seconds = parts.next();
    parts.next().is_none()
        && number(hours, 1, 2).is_some_and(|h| h <= 23)
        && number(minutes, 2, 2).is_some_and(|m| m <= 59)
        && seconds.is_none_or(|s| number(s, 2, 2).is_some_and(|s| s <= 60))
}

/// A zone: `+hhmm`/`-hhmm`, or a name of 1 to 5 letters (`UTC`, `MET`,
/// `DST`, `EST`).
fn is_zone(word: &[u8]) -> bool {
    match word {
        [b'+' | b'-', digits @ ..] => digits.len() == 4 && digits.iter().all(u8::is_ascii_digit),
        _ => (1..=5).contains(&word.len()) && word.iter().all(u8::is_ascii_alphabetic),
    }
}

/// The value of `word` if it is `min` to `max` ASCII digits.
fn number(word: &[u8], min: usize, max: usize) -> Option<u32> {
    if !(min..=max).contains(&word.len()) || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(word.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
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
    let name = |s: &[u8], names: &[&[u8]]| -> bool {
        s.len() >= 3 && names.iter().any(|n| s[..3].eq_ignore_ascii_case(n))
    };
    // Each field must be followed by whitespace (or, for the year, the end).
    let field = |s: &[u8], len: usize| -> Option<usize> {
        (s.len() > len && is_space(s[len])).then_some(len)
    };
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();

    if !name(s, &WEEKDAYS) {
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

    /// From_ lines as real writers make them, with where each form comes
    /// from. "(run here)" means the line was made by running that program
    /// on the test machine; the others follow the writer's source or
    /// documentation.
    const WRITTEN_FORMS: &[(&str, &str)] = &[
        // Postfix local(8) (mail_copy: "From %s  %.24s", two spaces, the
        // null sender as MAILER-DAEMON, a local part with spaces quoted).
        (
            "From MAILER-DAEMON  Sat Nov 28 09:53:43 2026",
            "Postfix local(8)",
        ),
        ("From root@vm  Sat Nov 28 09:40:32 2026", "Postfix local(8)"),
        (
            "From \"john doe\"@example.com  Sat Nov  8 09:40:32 2026",
            "Postfix local(8), quoted local part",
        ),
        (
            "From foo@bar  Fri Dec  4 03:33:16 2026",
            "procmail and formail -b (run here)",
        ),
        (
            "From user@example.com Sat Nov 28 09:27:34 2026",
            "sendmail mail.local, qmail-local, mutt: one space",
        ),
        (
            "From user@example.com Sat Nov 28 09:27:34 2026",
            "Exim appendfile: From $return_path ${tod_bsdinbox}",
        ),
        (
            "From MAILER-DAEMON Fri Dec  4 03:33:16 2026",
            "Python mailbox.mboxMessage (run here)",
        ),
        (
            "From ec13207afad0de13233128d73164dfa85304a700 Mon Sep 17 00:00:00 2001",
            "git format-patch (run here)",
        ),
        (
            "From user@example.com  Sat Nov 09 09:53:43 2026",
            "Dovecot mbox_from_create: two spaces, day zero-padded",
        ),
        (
            "From user@example.com  Thu, 9 Nov 2002 22:33:52",
            "Dovecot mbox_from_parse's alternate stamp",
        ),
        (
            "From x@y Thu Nov  9 22:33:52 2001 +0300",
            "Dovecot mbox_from_parse: zone after the year",
        ),
        ("From - Fri Dec 04 03:33:16 2026", "Thunderbird: sender '-'"),
        (
            "From 1710123456789012345@xxx Wed Mar 11 10:15:30 +0000 2024",
            "Google Takeout: zone before the year",
        ),
        ("From ???@??? Sun Aug 05 09:51:15 2001", "Eudora"),
        (
            "From aaa@aaa Mon Jan 01 00:00:00 1997",
            "KMail export without an envelope",
        ),
        (
            "From john at example.com  Tue Feb  1 00:00:00 2005",
            "Mailman pipermail archive, obscured sender",
        ),
        (
            "From smith Mon Apr  2 13:12 EST 1990 remote from uunet",
            "UUCP: no seconds, zone, remote from",
        ),
        (
            "From uucp Thu Nov  9 22:33:52 2001 remote from host",
            "UUCP",
        ),
        (
            "From uucp relay Thu Nov  9 22:33:52 2001 remote from host",
            "UUCP, a sender with a space: the date ends the line",
        ),
        (
            "From xxxx@yyyyyyy.fr Wed Aug  2 00:39:12 MET DST 1995",
            "two zones (mutt's from.c comment)",
        ),
        (
            "From x@y Wed Aug  2 00:39:12 +0200 1995",
            "numeric zone before the year",
        ),
        (
            "From Mon Mon Jan  1 00:00:00 2001",
            "a local user named like a weekday (mutt)",
        ),
        (
            "From user@[192.0.2.1] [relay]  Sun Aug  5 09:51:15 2001",
            "held-back corpus: sender with a space",
        ),
        (
            "From a@b  Fri, 8 Jul 2011 12:08:34 +0200",
            "held-back corpus: RFC 2822 date",
        ),
        (
            "From a@b Fri, 8 Jul 2011 12:08:34 +0200 (CEST)",
            "RFC 2822 date with a comment",
        ),
        (
            "From a@b 8 Jul 2011 12:08:34 GMT",
            "RFC 2822 date without weekday",
        ),
        (
            "From \"x y\" z@w  Fri, 8 Jul 2011 12:08:34 +0200",
            "quoted words and a space",
        ),
        (
            "From 66.133.153.18 Thu Oct 21 04:52:30 2004",
            "an IP address as sender",
        ),
        ("From  Mon Jan  1 00:00:00 2001", "no sender"),
        ("From Mon Jan 1 00:00 2001", "no sender, no seconds"),
        (
            "From x@y\tfri\tdec 31 23:59:59 99",
            "tabs, lower case, two-digit year",
        ),
        (
            "From x@y Mon Jan  1 00:00:00 2001 anything",
            "one-word sender: anything after the year",
        ),
    ];

    #[test]
    fn from_lines_real_writers_make_are_recognised() {
        for (line, source) in WRITTEN_FORMS {
            assert!(is_from_line(line.as_bytes()), "{source}: {line}");
        }
    }

    #[test]
    fn body_text_is_not_a_from_line() {
        for line in [
            // Body lines of the corpus that begin with "From ".
            "From here on, all is quiet.",
            "From the desk of Mon Jan",
            "From Mrs Nina David",
            "From : Mr. Bello Umanah",
            "From Hwy 59 going South or North:",
            "From the above=2C you will understand that the life and future of my ",
            "From Ted...",
            "From my review of Eugenio's consolidated VAR spreadsheet, the following ",
            // Dates that do not end the line, or are not dates.
            "From 8 Jul 2011 on, we meet at 12:08",
            "From Monday Jan 1 00:00:00 2001 on",
            "From a b Mon Jan  1 00:00:00 2001 until the end",
            "From a b Fri, 8 Jul 2011 12:08:34 +0200 until the end",
            "From a b 8 Jul 2011 12:08:34",
            "From x@y",
            "From x@y Mon Jan  1 2001",
            "From x@y Mon Foo  1 00:00:00 2001",
            "From x@y Mon Jan  1 00:00:00",
            "From x@y Mon Jan  1 00:00:00 20011",
            "From x@y Mon Jan 123 00:00:00 2001",
            "From x@y Mon Jan  1 0:0:00 2001",
            "From a b Mon Jan 32 00:00:00 2001",
            "From a b Mon Jan  1 24:00:00 2001",
            "From a b Mon Jan  1 00:60:00 2001",
            "From a b Mon Jan  1 00:00:61 2001",
            "From a b Mon Jan  1 00:00:00 2001 remote from",
            "From a b Mon Jan  1 00:00:00 2001 +0000 +0000 +0000",
            "From a b Fri, 8 Jul 2011 12:08:34 +0200 (CEST",
            // A date at the end with one part wrong.
            "From a b Fri, 8 Foo 2011 12:08:34 +0200",
            "From a b Fri, 8 Jul 20111 12:08:34 +0200",
            "From a b 8 Jul 2011 12:08:34 1234",
            "From a b Fri, 8 Jul 2011 12:08:34 +0200 (CEST x",
            "From a b Mon Jan  1 00:00:00 2001 +12ab",
            "From a b Mon Jan  1 00:00:00 2001 +020000",
            "From a b Mon Jan  1 00:00:00 2001 remote frm host",
            "From a b Mon Jan  1 00:00:00 2001 remoto from host",
            "From x\0y Mon Jan  1 00:00:00 2001",
            "From a b\x01 Mon Jan  1 00:00:00 2001",
            "from x@y Mon Jan  1 00:00:00 2001",
            ">From x@y Mon Jan  1 00:00:00 2001",
            "From",
            "From ",
        ] {
            assert!(!is_from_line(line.as_bytes()), "{line}");
        }
        let long = format!("From {}@y {DATE}", "x".repeat(MAX_FROM_LINE));
        assert!(!is_from_line(long.as_bytes()));
        let long = format!("From {} {DATE}", "x ".repeat(MAX_FROM_LINE / 2));
        assert!(!is_from_line(long.as_bytes()));
        let longest = format!("From {} {DATE}", "x ".repeat((MAX_FROM_LINE - 32) / 2));
        assert!(is_from_line(longest.as_bytes()));
    }

    /// Lines only the first form accepts (something follows the year): a
    /// quoted sender with a space or a tab, and zones before the year.
    /// A control byte in the quoted sender makes it body text.
    #[test]
    fn the_first_form_takes_quoted_senders_and_zones_before_the_year() {
        for line in [
            "From \"a b\" Mon Jan  1 00:00:00 2001 anything",
            "From \"a\tb\"@c Mon Jan  1 00:00:00 2001 anything",
            "From \"a very long quoted local part\"@c Mon Jan  1 00:00:00 2001 x",
            "From x@y Wed Aug  2 00:39:12 MET DST 1995 anything",
            "From x@y Wed Aug  2 00:39:12 +0200 1995 anything",
            "From x@y Wed Aug  2 00:39:12 -0500 1995 anything",
        ] {
            assert!(is_from_line(line.as_bytes()), "{line}");
        }
        for line in [
            "From \"a\x01b\" Mon Jan  1 00:00:00 2001 anything",
            "From \"a\x01b\" Mon Jan  1 00:00:00 2001",
            "From x@y Mon Jan  1 123:00:00 2001 anything",
            "From x@y Mon Jan  1 1x00 2001 anything",
        ] {
            assert!(!is_from_line(line.as_bytes()), "{line:?}");
        }
    }

    /// `MAX_FROM_LINE` counts the line ending: a From_ line of exactly that
    /// many bytes with its `\n` is one, a byte more is body text, also at
    /// the end of the input and when a CR is all that ends the window.
    #[test]
    fn the_longest_from_line_is_max_from_line_bytes_with_its_ending() {
        let line = |len: usize| {
            let head = format!("From a@b {DATE} ");
            format!("{head}{}", "x".repeat(len - head.len()))
        };
        assert!(is_from_line(line(MAX_FROM_LINE - 1).as_bytes()));
        assert!(!is_from_line(line(MAX_FROM_LINE).as_bytes()));
        assert!(!is_from_line(line(MAX_FROM_LINE + 1).as_bytes()));
        let fits = format!("{}\n", line(MAX_FROM_LINE - 1));
        assert_eq!(from_line_len_in(fits.as_bytes()), Some(MAX_FROM_LINE));
        let at_end = line(MAX_FROM_LINE - 1);
        assert_eq!(from_line_len_in(at_end.as_bytes()), Some(MAX_FROM_LINE - 1));
        // The window ends in a CR: the line goes on past the limit.
        for rest in ["", "\nnext\n", "xx\n"] {
            let over = format!("{}\r{rest}", line(MAX_FROM_LINE - 1));
            assert_eq!(from_line_len_in(over.as_bytes()), None, "{rest:?}");
        }
        let over = format!("{}\n", line(MAX_FROM_LINE));
        assert_eq!(from_line_len_in(over.as_bytes()), None);
    }
}
