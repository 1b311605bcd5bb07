//! Tests of the splitter, and round trips through the writer and back.

use std::io::{self, Read};

use proptest::prelude::*;

use super::input::AHEAD_MEMORY;
use super::*;
use crate::engine::filing::MboxFormat;
use crate::engine::message::Message;

const DATE: &str = "Mon Jan  1 00:00:00 2001";

/// A reader that hands out at most `chunk` bytes per call, to push the
/// splitter across its buffer refills at awkward places.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.len().min(self.chunk).min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// (envelope, content) of every message, also checking that a
/// byte-at-a-time read and a 7-byte-chunk read agree with it.
fn split_all(input: &[u8], format: MboxFormat) -> Vec<(Option<String>, Vec<u8>)> {
    let whole = split_with(input, format, usize::MAX);
    assert_eq!(split_with(input, format, 1), whole, "1-byte reads");
    assert_eq!(split_with(input, format, 7), whole, "7-byte reads");
    whole
}

fn split_with(input: &[u8], format: MboxFormat, chunk: usize) -> Vec<(Option<String>, Vec<u8>)> {
    split_messages(Trickle { data: input, chunk }, format)
        .into_iter()
        .map(|(envelope, content, _)| (envelope, content))
        .collect()
}

/// (envelope, content, message) of every message.
fn split_messages(input: impl Read, format: MboxFormat) -> Vec<(Option<String>, Vec<u8>, Message)> {
    MboxSplitter::new(input, format)
        .map(|message| {
            let mut message = message.unwrap();
            let mut content = Vec::new();
            message.content.copy_to(&mut content).unwrap();
            let envelope = message
                .envelope
                .as_ref()
                .map(|e| String::from_utf8_lossy(e).into_owned());
            (envelope, content, message)
        })
        .collect()
}

fn env(sender: &str) -> Option<String> {
    Some(format!("{sender} {DATE}"))
}

#[test]
fn empty_input_has_no_messages() {
    assert!(split_all(b"", MboxFormat::Mboxrd).is_empty());
    assert!(split_all(b"\n\n\r\n", MboxFormat::Mboxrd).is_empty());
}

#[test]
fn splits_at_from_lines_after_blank_lines() {
    let input =
        format!("From a@b {DATE}\nSubject: one\n\nbody\n\nFrom c@d {DATE}\nSubject: two\n\nx\n\n");
    let got = split_messages(input.as_bytes(), MboxFormat::Mboxo);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, env("a@b"));
    assert_eq!(got[0].1, b"Subject: one\n\nbody\n");
    assert_eq!(got[0].2.header, b"Subject: one\n\n");
    assert_eq!((got[0].2.index, got[0].2.offset), (1, 0));
    assert_eq!(got[1].0, env("c@d"));
    assert_eq!(got[1].1, b"Subject: two\n\nx\n");
    let second = input.find("From c@d").unwrap() as u64;
    assert_eq!((got[1].2.index, got[1].2.offset), (2, second));
}

#[test]
fn separator_and_final_newline() {
    // No trailing separator, no final newline: kept as they are.
    let got = split_all(
        format!("From a {DATE}\nS: x\n\nbody").as_bytes(),
        MboxFormat::Mboxo,
    );
    assert_eq!(got, vec![(env("a"), b"S: x\n\nbody".to_vec())]);
    // A message that ends in a blank line keeps it; the last blank
    // line is the separator.
    let got = split_all(
        format!("From a {DATE}\nS: x\n\nbody\n\n\nFrom b {DATE}\nS: y\n\n").as_bytes(),
        MboxFormat::Mboxo,
    );
    assert_eq!(got[0].1, b"S: x\n\nbody\n\n");
    assert_eq!(got[1].1, b"S: y\n");
}

#[test]
fn text_before_the_first_from_line_is_a_message_without_envelope() {
    let got = split_all(
        format!("Subject: stray\n\ntext\n\nFrom a {DATE}\nS: x\n").as_bytes(),
        MboxFormat::Mboxo,
    );
    assert_eq!(
        got,
        vec![
            (None, b"Subject: stray\n\ntext\n".to_vec()),
            (env("a"), b"S: x\n".to_vec())
        ]
    );
    // Blank lines alone before it are not a message.
    let got = split_all(
        format!("\n\r\n\nFrom a {DATE}\nS: x\n").as_bytes(),
        MboxFormat::Mboxo,
    );
    assert_eq!(got, vec![(env("a"), b"S: x\n".to_vec())]);
}

#[test]
fn body_from_text_does_not_split() {
    let input = format!(
        "From a {DATE}\nS: x\n\nFrom here on, all is quiet.\n\nFrom the desk of Mon Jan\n\
         From b {DATE}\nno blank line before the From line above\n"
    );
    let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
    assert_eq!(got.len(), 1);
    assert!(got[0].1.ends_with(b"above\n"));
}

#[test]
fn from_lines_with_spaced_senders_and_rfc2822_dates_split() {
    // The three forms that were filed inside the message before them.
    let envelopes = [
        "a@b Mon Jan  1 00:00:00 2001",
        "user@[192.0.2.1] [relay]  Sun Aug  5 09:51:15 2001",
        "a@b  Fri, 8 Jul 2011 12:08:34 +0200",
        "\"x y\"@z w Sat Nov 28 09:53:43 2026",
    ];
    let mut input = String::new();
    for (i, envelope) in envelopes.iter().enumerate() {
        input.push_str(&format!(
            "From {envelope}\nSubject: {i}\n\nFrom here on, {i}.\n\n"
        ));
    }
    for format in [MboxFormat::Mboxo, MboxFormat::Mboxrd] {
        let got = split_all(input.as_bytes(), format);
        let want: Vec<_> = envelopes
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let content = format!("Subject: {i}\n\nFrom here on, {i}.\n");
                (Some(e.to_string()), content.into_bytes())
            })
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn crlf_input_keeps_its_bytes() {
    let input =
        format!("From a {DATE}\r\nS: x\r\n\r\nbody\r\n\r\nFrom b {DATE}\r\nS: y\r\n\r\n\r\n");
    let got = split_all(input.as_bytes(), MboxFormat::Mboxrd);
    assert_eq!(
        got,
        vec![
            (env("a"), b"S: x\r\n\r\nbody\r\n".to_vec()),
            (env("b"), b"S: y\r\n\r\n".to_vec())
        ]
    );
}

#[test]
fn mboxrd_unquotes_one_level_and_mboxo_none() {
    let input = format!(
        "From a {DATE}\nS: x\n\n>From me\n>>From you\n> From no\n>Fromage\n>>>>\nFrom inside\n"
    );
    let rd = split_all(input.as_bytes(), MboxFormat::Mboxrd);
    assert_eq!(
        rd[0].1,
        b"S: x\n\nFrom me\n>From you\n> From no\n>Fromage\n>>>>\nFrom inside\n"
    );
    let o = split_all(input.as_bytes(), MboxFormat::Mboxo);
    assert_eq!(o[0].1, input.split_once('\n').unwrap().1.as_bytes());
}

#[test]
fn nul_and_8bit_bytes_pass_through() {
    let mut input = format!("From a {DATE}\n").into_bytes();
    let content = b"S: \xe9t\xe9\n\nnul \0 here\n\xff\xfe\0\n".to_vec();
    input.extend_from_slice(&content);
    let got = split_all(&input, MboxFormat::Mboxrd);
    assert_eq!(got, vec![(env("a"), content)]);
}

#[test]
fn megabyte_header_line() {
    let long = format!("X-Long: {}\n", "a".repeat(1 << 20));
    let content = format!("{long}Subject: after\n\nbody\n");
    let input = format!("From a {DATE}\n{content}\nFrom b {DATE}\nS: y\n");
    let got = split_messages(input.as_bytes(), MboxFormat::Mboxrd);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, content.as_bytes());
    assert_eq!(
        got[0].2.header,
        format!("{long}Subject: after\n\n").as_bytes()
    );
}

#[test]
fn empty_messages() {
    let input = format!("From a {DATE}\nFrom b {DATE}\n\nFrom c {DATE}\n\nFrom d {DATE}");
    let got = split_all(input.as_bytes(), MboxFormat::Mboxrd);
    assert_eq!(
        got,
        vec![
            (env("a"), vec![]),
            (env("b"), vec![]),
            (env("c"), vec![]),
            (env("d"), vec![])
        ]
    );
}

#[test]
fn content_length_is_trusted_when_a_from_line_follows_it() {
    // Solaris-style mboxo: an unquoted From line after a blank line in
    // the body, covered by a right Content-Length.
    let body = format!("hi\n\nFrom b {DATE}\nstill the same message\n");
    let input = format!(
        "From a {DATE}\nContent-Length: {}\n\n{body}\nFrom c {DATE}\nS: z\n",
        body.len()
    );
    let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
    assert_eq!(got.len(), 2);
    assert!(got[0].1.ends_with(body.as_bytes()));
    assert_eq!(got[1], (env("c"), b"S: z\n".to_vec()));
    // The same length followed by end of input right away is not
    // enough (the separator line is missing): From_ lines decide.
    let input = format!("From a {DATE}\nContent-Length: {}\n\n{body}", body.len());
    assert_eq!(split_all(input.as_bytes(), MboxFormat::Mboxo).len(), 2);
}

/// `Content-Length` counts wherever it is in the header, not only as its
/// first line (the header's lines are looked at one by one, never skipped
/// over as body lines are).
#[test]
fn content_length_after_other_header_lines_is_trusted() {
    let body = format!("hi\n\nFrom b {DATE}\nstill the same message\n");
    for header in [
        format!("Subject: s\nContent-Length: {}\n", body.len()),
        format!("Subject: s\nX: y\ncontent-length: {}\nTo: t\n", body.len()),
    ] {
        let input = format!("From a {DATE}\n{header}\n{body}\nFrom c {DATE}\nS: z\n");
        let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
        assert_eq!(got.len(), 2, "{header}");
        assert_eq!(got[0].1, format!("{header}\n{body}").as_bytes());
        assert_eq!(got[1], (env("c"), b"S: z\n".to_vec()));
    }
}

/// Under mboxrd a run of up to `MAX_QUOTE_RUN` `>` before `From ` loses
/// one `>`; a longer run is left as it is.
#[test]
fn quote_runs_up_to_max_quote_run_are_unquoted() {
    // The limit as `MAX_QUOTE_RUN`'s documentation gives it.
    let max = 64 * 1024;
    let line = |run: usize, word: &str| format!("{}From {word}\n", ">".repeat(run));
    let content = [line(70, "a"), line(max, "b"), line(max + 1, "c")].concat();
    let input = format!("From x {DATE}\nS: q\n\n{content}");
    let want = [line(69, "a"), line(max - 1, "b"), line(max + 1, "c")].concat();
    // Whole reads only: byte-at-a-time reads of a 64 KiB run take seconds.
    let got = split_with(input.as_bytes(), MboxFormat::Mboxrd, usize::MAX);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].1 == format!("S: q\n\n{want}").as_bytes(),
        "the runs were not unquoted as they should"
    );
}

#[test]
fn content_length_covers_a_body_that_starts_with_a_from_line() {
    let body = format!("From b {DATE}\nbody\n");
    for (length, count) in [(body.len(), 2), (0, 3), (body.len() - 1, 3), (99, 3)] {
        let input =
            format!("From a {DATE}\nContent-Length: {length}\n\n{body}\nFrom c {DATE}\nS: z\n");
        let got = split_messages(input.as_bytes(), MboxFormat::Mboxo);
        assert_eq!(got.len(), count, "length {length}");
        assert_eq!(split_all(input.as_bytes(), MboxFormat::Mboxo).len(), count);
        let header = format!("Content-Length: {length}\n");
        if count == 2 {
            assert_eq!(got[0].1, format!("{header}\n{body}").as_bytes());
            assert_eq!(got[0].2.header, format!("{header}\n").as_bytes());
        } else {
            assert_eq!(got[0].1, header.as_bytes());
            assert_eq!(got[0].2.header, header.as_bytes());
            assert_eq!(got[1].1, b"body\n");
        }
    }
}

#[test]
fn content_length_may_end_mid_line() {
    let input = format!("From a {DATE}\ncontent-length:\t3 \n\nabc\nFrom b {DATE}\nS: y\n");
    let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
    assert_eq!(
        got,
        vec![
            (env("a"), b"content-length:\t3 \n\nabc".to_vec()),
            (env("b"), b"S: y\n".to_vec())
        ]
    );
}

#[test]
fn wrong_content_length_falls_back_to_from_lines() {
    let third = format!("From c {DATE}\nS: z\n\nend\n\n");
    for length in [0, 1, 5, 9, 10, 40, 1000, 10_000_000, u64::MAX] {
        let input = format!(
            "From a {DATE}\nContent-Length: {length}\n\nbody one\n\nFrom b {DATE}\n\
             Content-Length: {length}\n\nbody two\n\n{third}"
        );
        let got = split_messages(input.as_bytes(), MboxFormat::Mboxrd);
        let summary: Vec<_> = got.iter().map(|(e, c, _)| (e.clone(), c.clone())).collect();
        assert_eq!(
            summary,
            vec![
                (
                    env("a"),
                    format!("Content-Length: {length}\n\nbody one\n").into_bytes()
                ),
                (
                    env("b"),
                    format!("Content-Length: {length}\n\nbody two\n").into_bytes()
                ),
                (env("c"), b"S: z\n\nend\n".to_vec()),
            ],
            "length {length}"
        );
        assert_eq!(split_all(input.as_bytes(), MboxFormat::Mboxrd), summary);
        let offsets: Vec<u64> = got.iter().map(|m| m.2.offset).collect();
        let want: Vec<u64> = ["From a", "From b", "From c"]
            .iter()
            .map(|s| input.find(s).unwrap() as u64)
            .collect();
        assert_eq!(offsets, want, "length {length}");
    }
}

#[test]
fn content_length_off_by_one_in_crlf_mbox() {
    for extra in [0, 1, 2, 3] {
        let body = "line\r\n";
        let input = format!(
            "From a {DATE}\r\nContent-Length: {}\r\n\r\n{body}\r\nFrom b {DATE}\r\n\
             S: y\r\n\r\nline\r\nFrom c {DATE}\r\n",
            body.len() + extra
        );
        let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
        let envelopes: Vec<_> = got.iter().map(|m| m.0.clone()).collect();
        assert_eq!(envelopes, vec![env("a"), env("b")], "extra {extra}");
        let want = format!("Content-Length: {}\r\n\r\n{body}", body.len() + extra);
        assert_eq!(got[0].1, want.as_bytes(), "extra {extra}");
    }
    // A length that ends between CR and LF of a text line followed by
    // a From_ line (not a boundary: no blank line before it).
    let input =
        format!("From a {DATE}\r\nContent-Length: 5\r\n\r\nline\r\nFrom b {DATE}\r\nmore\r\n");
    let got = split_all(input.as_bytes(), MboxFormat::Mboxo);
    assert_eq!(got.len(), 1);
    assert!(got[0].1.ends_with(b"more\r\n"));
}

#[test]
fn content_length_reaching_a_later_boundary_is_trusted() {
    // A length that reaches exactly to a later boundary is trusted
    // (Dovecot's rule): the two messages are one.
    let body = format!("one\n\nFrom b {DATE}\nS: y\n\ntwo\n");
    let input = format!(
        "From a {DATE}\nContent-Length: {}\n\n{body}\nFrom c {DATE}\nS: z\n",
        body.len()
    );
    let got = split_all(input.as_bytes(), MboxFormat::Mboxrd);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].0, env("c"));
}

#[test]
fn big_message_spills_and_stays_exact() {
    let mut body: Vec<u8> = (0..9 << 20).map(|i| b"abcdefghij\n"[i % 11]).collect();
    body.push(b'\n');
    let mut input = format!("From a {DATE}\nS: big\n\n").into_bytes();
    input.extend_from_slice(&body);
    input.extend_from_slice(format!("\nFrom b {DATE}\nS: small\n").as_bytes());
    let got = split_messages(&input[..], MboxFormat::Mboxrd);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].2.content.len(), body.len() as u64 + 8);
    assert!(got[0].1[8..] == body[..]);
}

/// A `Content-Length` of exactly `MAX_LENGTH_CHECKED` is still checked and
/// believed: the unquoted From_ line after a blank line in that body stays
/// in the message.
#[test]
fn the_longest_checked_length_is_believed() {
    let length = MAX_LENGTH_CHECKED as usize;
    let mut body = format!("intro\n\nFrom b {DATE}\nsaid b\n").into_bytes();
    let line = b"0123456789abcdef\n";
    body.extend(line.iter().cycle().take(length - body.len() - 1));
    body.push(b'\n');
    assert_eq!(body.len(), length);
    let mut input = format!("From a {DATE}\nContent-Length: {length}\n\n").into_bytes();
    let header_len = input.len() - format!("From a {DATE}\n").len();
    input.extend_from_slice(&body);
    input.extend_from_slice(format!("\nFrom c {DATE}\n\nlast\n").as_bytes());
    let got: Vec<Message> = MboxSplitter::new(&input[..], MboxFormat::Mboxo)
        .map(Result::unwrap)
        .collect();
    let sizes: Vec<u64> = got.iter().map(|m| m.content.len()).collect();
    assert_eq!(sizes, [(header_len + length) as u64, 6]);
}

#[test]
fn bytes_read_ahead_for_a_wrong_length_spill_to_disk_and_are_read_once() {
    // Message a's length points past the end of the input, so checking it
    // reads everything after it ahead (more than the look-ahead memory,
    // so the spool spills to disk); the messages then split by From_ lines.
    let mut big: Vec<u8> = (0..AHEAD_MEMORY + 4096)
        .map(|i| b"0123456789abcdef>From \n"[i % 23])
        .collect();
    big.push(b'\n');
    let head = |length: usize| format!("From a {DATE}\nContent-Length: {length:09}\n\nsmall\n\n");
    let mut rest = format!("From b {DATE}\nS: big\n\n").into_bytes();
    rest.extend_from_slice(&big);
    rest.extend_from_slice(format!("\nFrom c {DATE}\nS: z\n\n").as_bytes());
    let length = head(0).len() + rest.len();
    let mut input = head(length).into_bytes();
    input.extend_from_slice(&rest);
    let mut splitter = MboxSplitter::new(&input[..], MboxFormat::Mboxo);
    let got: Vec<_> = splitter.by_ref().map(Result::unwrap).collect();
    assert_eq!(got.len(), 3);
    let mut contents = got.into_iter().map(|mut m| {
        let mut content = Vec::new();
        m.content.copy_to(&mut content).unwrap();
        (m.envelope, m.offset, content)
    });
    let a = contents.next().unwrap();
    assert_eq!(
        a.2,
        format!("Content-Length: {length:09}\n\nsmall\n").as_bytes()
    );
    let b = contents.next().unwrap();
    assert_eq!(b.0.as_deref(), env("b").as_deref().map(str::as_bytes));
    assert!(b.2[8..] == big[..]);
    let c = contents.next().unwrap();
    assert_eq!(c.2, b"S: z\n");
    let c_offset = input.len() - format!("From c {DATE}\nS: z\n\n").len();
    assert_eq!(c.1, c_offset as u64);
    // Read once, moved into the spool and out of it once, and a few
    // look-ups of a From_ line.
    let moved = splitter.bytes_moved();
    assert!(
        moved <= 3 * input.len() as u64,
        "{moved} bytes moved for {}",
        input.len()
    );
}

/// The splitter's work is linear in its input however many messages carry
/// a wrong `Content-Length` (each one once cost a read of the rest of the
/// input, and a copy of it kept to be read again).
#[test]
fn wrong_lengths_cost_linear_work() {
    for (count, length) in [
        (300, 999_999_999u64),
        (300, 1 << 20),
        (300, 50_000),
        (4000, 2 << 20),
    ] {
        let mut input = Vec::new();
        for i in 0..count {
            input.extend_from_slice(
                format!("From a {DATE}\nSubject: {i}\nContent-Length: {length}\n\n").as_bytes(),
            );
            input.extend_from_slice(&b"body line\n".repeat(200));
            input.push(b'\n');
        }
        let mut splitter = MboxSplitter::new(&input[..], MboxFormat::Mboxo);
        let mut messages = 0;
        let mut most_held = 0;
        while let Some(message) = splitter.next() {
            message.unwrap();
            messages += 1;
            most_held = most_held.max(splitter.ahead_held());
        }
        assert_eq!(messages, count);
        // The spool holds what is ahead (up to the length and a From_
        // line), and at most as much again already read.
        assert!(
            most_held <= 2 * (length.min(MAX_LENGTH_CHECKED) + 64 * 1024 + 4096),
            "length {length}: spool held {most_held}"
        );
        let moved = splitter.bytes_moved();
        // Every byte is read once at least: a count that missed reads
        // would make the bound below say nothing.
        assert!(moved >= input.len() as u64, "{moved} bytes moved");
        let bound = 3 * input.len() as u64 + count as u64 * (MAX_FROM_LINE as u64 + 3);
        assert!(
            moved <= bound,
            "length {length}: {moved} bytes moved for {} bytes of input",
            input.len()
        );
    }
}

/// An interrupted read (EINTR) is retried, not a read error.
#[test]
fn an_interrupted_read_of_the_input_is_retried() {
    struct Interrupted<'a>(bool, &'a [u8]);
    impl Read for Interrupted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0 = !self.0;
            if self.0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.1.len().min(buf.len()).min(5);
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1 = &self.1[n..];
            Ok(n)
        }
    }
    let input = format!("From a {DATE}\nS: 1\n\nFrom b {DATE}\nS: 2\n");
    let got = split_messages(Interrupted(false, input.as_bytes()), MboxFormat::Mboxrd);
    let contents: Vec<&[u8]> = got.iter().map(|m| &m.1[..]).collect();
    assert_eq!(contents, [&b"S: 1\n"[..], &b"S: 2\n"[..]]);
}

#[test]
fn read_errors_name_message_and_offset() {
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let input = format!("From a {DATE}\nS: x\n\nFrom b {DATE}\nS: y\n");
    let mut splitter = MboxSplitter::new(Failing(input.as_bytes()), MboxFormat::Mboxrd);
    let err = splitter.find_map(Result::err).unwrap();
    match &err {
        SplitError::Read { index, offset, .. } => {
            assert_eq!(*index, 1);
            assert!(*offset <= input.len() as u64);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("message 1"), "{err}");
    assert!(splitter.next().is_none());
}

fn join(messages: &[(Option<String>, Vec<u8>)], format: MboxFormat) -> Vec<u8> {
    let mut out = Vec::new();
    for (envelope, content) in messages {
        write_message(
            &mut out,
            envelope.as_deref().map(str::as_bytes),
            &content[..],
            format,
        )
        .unwrap();
    }
    out
}

fn envelope_strategy() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "MAILER-DAEMON",
            "a@b.example",
            "\"x y\"@z",
            "66.1.2.3",
            "user@[192.0.2.1] [relay] ",
            "john at example.com ",
        ]),
        prop::sample::select(vec![
            "Mon Jan  1 00:00:00 2001",
            "Thu Oct 21 04:52:30 2004 +0000",
            "Wed Aug  2 00:39 MET DST 95",
            "Fri, 8 Jul 2011 12:08:34 +0200",
            "Sun Feb 09 08:33:27 +0000 2014",
        ]),
    )
        .prop_map(|(sender, date)| format!("{sender} {date}"))
}

/// Body lines that stress the splitter; `with_from` adds lines that
/// mboxo cannot carry unchanged.
fn line_strategy(with_from: bool) -> impl Strategy<Value = Vec<u8>> {
    let mut lines: Vec<&'static [u8]> = vec![
        b"\n",
        b"\r\n",
        b"text\n",
        b"text\r\n",
        b">From quoted\n",
        b">>From twice\n",
        b">\n",
        b"F\n",
        b"Fro\n",
        b"nul \0 and \xff\xfe 8-bit\n",
        b"lone \r cr\n",
        b"Content-Length: 3\n",
    ];
    if with_from {
        lines.extend_from_slice(&[
            b"From here on\n",
            b"From x@y Mon Jan  1 00:00:00 2001\n",
            b"From x@y Mon Jan  1 00:00:00 2001\r\n",
        ]);
    }
    prop_oneof![
        prop::sample::select(lines).prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut line| {
            line.retain(|&b| b != b'\n');
            line.push(b'\n');
            line
        }),
    ]
}

/// Message contents end with a newline (or are empty), since the
/// writer adds a missing one.
fn content_strategy(with_from: bool) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![None, Some(0u64), Some(7), Some(1 << 40)]),
        prop::collection::vec(line_strategy(with_from), 0..12),
        prop::collection::vec(line_strategy(with_from), 0..12),
    )
        .prop_map(|(length, header, body)| {
            let mut content = Vec::new();
            if let Some(length) = length {
                content.extend_from_slice(format!("Content-Length: {length}\n").as_bytes());
            }
            for line in header
                .iter()
                .filter(|l| !l.starts_with(b"\n") && !l.starts_with(b"\r\n"))
            {
                content.extend_from_slice(line);
            }
            if !body.is_empty() {
                content.push(b'\n');
                body.iter().for_each(|line| content.extend_from_slice(line));
            }
            content
        })
}

fn messages_strategy(with_from: bool) -> impl Strategy<Value = Vec<(Option<String>, Vec<u8>)>> {
    prop::collection::vec(
        (
            envelope_strategy().prop_map(Some),
            content_strategy(with_from),
        ),
        0..8,
    )
}

proptest! {
    #[test]
    fn mboxrd_round_trips(messages in messages_strategy(true)) {
        let joined = join(&messages, MboxFormat::Mboxrd);
        prop_assert_eq!(split_all(&joined, MboxFormat::Mboxrd), messages);
    }

    #[test]
    fn mboxo_round_trips_without_body_from_lines(messages in messages_strategy(false)) {
        let joined = join(&messages, MboxFormat::Mboxo);
        prop_assert_eq!(split_all(&joined, MboxFormat::Mboxo), messages);
    }

    /// Solaris-style mboxo: nothing quoted, a right `Content-Length`
    /// on every message, bodies full of unquoted From_ lines after
    /// blank lines and without final newlines: the lengths hold it
    /// together.
    #[test]
    fn mboxo_with_right_content_lengths_round_trips(
        messages in prop::collection::vec(
            (
                envelope_strategy(),
                prop::collection::vec(line_strategy(true), 0..6),
                prop::collection::vec(line_strategy(true), 0..12),
                prop::collection::vec(any::<u8>(), 0..5),
            ),
            0..6,
        )
    ) {
        let mut joined = Vec::new();
        let mut want = Vec::new();
        for (envelope, header, body, unterminated) in messages {
            let mut body: Vec<u8> = body.concat();
            body.extend_from_slice(&unterminated);
            if body.ends_with(b"\r") {
                body.push(b'x');
            }
            let mut content = format!("Content-Length: {}\n", body.len()).into_bytes();
            for line in header.iter().filter(|l| l[0] != b'\n' && !l.starts_with(b"\r\n")) {
                content.extend_from_slice(line);
            }
            content.push(b'\n');
            content.extend_from_slice(&body);
            joined.extend_from_slice(format!("From {envelope}\n").as_bytes());
            joined.extend_from_slice(&content);
            joined.push(b'\n');
            want.push((Some(envelope), content));
        }
        prop_assert_eq!(split_all(&joined, MboxFormat::Mboxo), want);
    }

    /// With `From ` lines in bodies, mboxo still keeps every message
    /// apart; those lines come back as `>From `.
    #[test]
    fn mboxo_keeps_messages_apart(messages in messages_strategy(true)) {
        let joined = join(&messages, MboxFormat::Mboxo);
        let got = split_all(&joined, MboxFormat::Mboxo);
        let want: Vec<_> = messages
            .iter()
            .map(|(envelope, content)| {
                let mut quoted = Vec::new();
                for line in content.split_inclusive(|&b| b == b'\n') {
                    if line.starts_with(b"From ") {
                        quoted.push(b'>');
                    }
                    quoted.extend_from_slice(line);
                }
                (envelope.clone(), quoted)
            })
            .collect();
        prop_assert_eq!(got, want);
    }
}
