//! Streaming mbox splitter and writer.
//!
//! The splitter turns one mbox byte stream (a fetched spool, or stdin for
//! `mailhaul filter`) into [`Message`]s with bounded memory (bounded-memory, docs/design.md): it reads
//! through a fixed buffer, and each message's bytes go into a [`Content`]
//! that spills to a temporary file when large. The writer is its inverse and
//! is what delivery uses for mbox targets.
//!
//! # Where a message ends
//!
//! A **From_ line** is a line (at most [`MAX_FROM_LINE`] bytes with its line
//! ending, which is `\n` or `\r\n`) of one of two forms. SP is a space or
//! tab; `weekday` and `month` are English three-letter abbreviations in any
//! case; `time` is `H:MM` or `H:MM:SS` with 1–2 digit hours.
//!
//! 1. A one-word sender, an asctime date, and anything after it:
//!
//!    ```text
//!    "From " SP* [ sender SP+ ] weekday SP+ month SP+ day SP+ time
//!            [ SP+ zone [ SP+ zone ] ] SP+ year [ SP+ anything ]
//!    ```
//!
//!    where `sender` is a run of bytes other than whitespace and control
//!    bytes (`MAILER-DAEMON`, an address, an IP address), or a double-quoted
//!    string (which may hold spaces) followed by such a run; `day` is 1–2
//!    digits; a `zone` starts with a letter, `+` or `-` (`MET DST`, `+0200`);
//!    `year` is 2 or 4 digits. The sender may be missing.
//!
//! 2. Any sender, then a date that **ends the line**. As in mutt's
//!    `is_from`, the date decides; but it is found from the end of the line,
//!    so the sender may hold spaces (`user@[192.0.2.1] [relay]`,
//!    `john at example.com`) and the date may be RFC 2822's:
//!
//!    ```text
//!    "From " [ sender SP+ ] date SP*
//!    date = weekday SP+ month SP+ day SP+ time [ SP+ zone [ SP+ zone ] ]
//!             SP+ year [ SP+ zone [ SP+ zone ] ] [ SP+ "remote from" SP+ host ]
//!         | [ weekday "," SP+ ] day SP+ month SP+ year SP+ time [ SP+ zone ]
//!             [ SP+ "(" comment ")" ]
//!    ```
//!
//!    where `sender` is any text without control bytes; `day` is 1 to 31;
//!    the time is within a day; a `zone` is `+hhmm`, `-hhmm` or 1–5 letters;
//!    the second (RFC 2822) form needs the weekday or the zone.
//!
//! This accepts what sendmail, Postfix, Exim, qmail, procmail, Dovecot,
//! mutt, UUCP, Thunderbird, Eudora, KMail and Google Takeout write (the
//! tests list each form with its source), and what mutt and Dovecot
//! accept; body text such as `From here on…` is not a From_ line.
//!
//! A From_ line starts a new message only at the start of the input, after a
//! blank line (`\n` or `\r\n`), or directly after the message's own From_
//! line (the first message was then empty). The blank line before it is the
//! separator: it belongs to the mbox, not to the message. At the end of the
//! input a final blank line is likewise the trailing separator.
//!
//! `Content-Length: N` in a header is trusted, as Dovecot does, only if the
//! input `N` bytes after the blank line that ends the header is a blank line
//! followed by the end of input or by a From_ line, and it does not fall
//! between the CR and LF of a line ending. (The end of input right there is
//! not enough: one real spam's length is one too many, and would swallow the
//! trailing separator; in a CRLF mbox such a length would end inside the
//! CRLF separator.)
//! When it is trusted the message is exactly those bytes even if its body has
//! an unquoted `From ` line after a blank line, so a length that lands
//! exactly on a later message's From_ line takes the messages in between
//! into its body (as mutt and Dovecot do; Solaris-style mboxes need it, and
//! nothing is lost: their bytes are in that message). When it is not (spam
//! has bogus lengths; formail trusts them blindly and merges messages), the
//! From_ line rule above decides.
//!
//! The length is checked when the header ends, by looking at the input `N`
//! bytes ahead; the bytes passed on the way are kept in a spool (at most 8
//! MiB in memory, the rest in a temporary file) until the splitter reaches
//! them, so every input byte is read once whatever the lengths say, and the
//! splitter's work is linear in its input. A length over
//! [`MAX_LENGTH_CHECKED`] (64 MiB) is not checked and not believed, which
//! bounds the spool. The length counts bytes as stored: mboxrd unquoting
//! still applies within it. The first `Content-Length:` header line (of at
//! most 128 bytes) whose value is a number counts.
//!
//! Under [`MboxFormat::Mboxrd`] one `>` is removed from every line that is
//! `>` (at most [`MAX_QUOTE_RUN`] of them) followed by `From `; under
//! [`MboxFormat::Mboxo`] bytes are left as they are. Content is otherwise
//! byte-exact: CRLF, lone CR, NUL, 8-bit bytes and a missing final newline
//! are kept. Blank lines before the first From_ line are skipped; any other
//! text there becomes message 1 with no envelope.
//!
//! [`Message`]: crate::engine::message::Message
//! [`Content`]: crate::engine::message::Content
//! [`MboxFormat::Mboxrd`]: crate::engine::filing::MboxFormat::Mboxrd
//! [`MboxFormat::Mboxo`]: crate::engine::filing::MboxFormat::Mboxo

mod from_line;
mod input;
mod splitter;
mod write;

pub use from_line::is_from_line;
pub use splitter::{MboxSplitter, SplitError};
pub use write::{asctime, write_message};

/// Longest line, with its line ending, that can be a From_ line. Longer
/// lines are always message text.
pub const MAX_FROM_LINE: usize = 4096;

/// Longest `Content-Length` that is checked (64 MiB). A longer one is not
/// believed: checking it would read that far ahead, keeping what it passes
/// in a temporary file.
pub const MAX_LENGTH_CHECKED: u64 = 64 << 20;

/// Longest run of `>` before `From ` that the reader unquotes under mboxrd.
/// Longer runs (never seen in real mail) are left as they are; the writer
/// quotes every such line, so content with a run of this length or more
/// before `From ` does not round-trip.
pub const MAX_QUOTE_RUN: usize = 64 * 1024;

#[cfg(test)]
mod tests;
