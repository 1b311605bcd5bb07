//! Filter rules: the config's `[[filter.rule]]` entries compiled into
//! matchers, and the choice of where one message goes (first match wins).
//!
//! Rules look only at [`Message::header`] (never the body: bounded-memory, docs/design.md) and at the
//! content length. A header test passes when *any* occurrence of the header
//! (name compared case-insensitively) matches, either on its unfolded raw
//! value or on its RFC 2047-decoded value. A message whose header section
//! cannot be parsed matches no header rule (size rules still apply) and so
//! normally lands in the default target.

use regex::Regex;

use crate::engine::filing::{FilterConfig, RuleConfig};
use crate::engine::message::Message;

/// Where a message is filed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A folder name, mapped onto the Maildir root by the folder layout (or an
    /// mbox file, see `engine::deliver`).
    Folder(String),
    /// A delivery agent: argv of a command that gets the message on stdin.
    Mda(Vec<String>),
}

impl Target {
    /// The label used in reports and `FetchEvent::Filed`: the folder name, or
    /// `mda:` and the command line.
    pub fn label(&self) -> String {
        match self {
            Target::Folder(f) => f.clone(),
            Target::Mda(argv) => format!("mda:{}", argv.join(" ")),
        }
    }
}

/// How a header value is tested.
#[derive(Debug, Clone)]
enum ValueTest {
    /// Case-insensitive substring; stored lowercased.
    Contains(String),
    /// Regular expression, as written.
    Regex(Regex),
}

impl ValueTest {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueTest::Contains(needle) => value.to_lowercase().contains(needle.as_str()),
            ValueTest::Regex(re) => re.is_match(value),
        }
    }
}

/// One compiled rule: all of its tests must pass.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name, or `rule N` (1-based) when the config gives none.
    pub name: String,
    header: Option<(String, ValueTest)>,
    size_over: Option<u64>,
    size_under: Option<u64>,
    /// Where a matching message goes.
    pub target: Target,
}

/// A rule the config loader let through but that cannot be compiled (only
/// possible when a `FilterConfig` is built in code, not read from a file).
#[derive(Debug, thiserror::Error)]
#[error("filter rule `{rule}`: {message}")]
pub struct RuleError {
    /// The rule's name.
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

impl Rule {
    /// Compiles one config rule; `position` is 0-based, used for the default name.
    pub fn compile(config: &RuleConfig, position: usize) -> Result<Rule, RuleError> {
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("rule {}", position + 1));
        let fail = |message: String| RuleError {
            rule: name.clone(),
            message,
        };
        let header = match &config.header {
            None => None,
            Some(h) => {
                let test = match (&config.contains, &config.regex) {
                    (Some(c), None) => ValueTest::Contains(c.to_lowercase()),
                    (None, Some(r)) => {
                        ValueTest::Regex(Regex::new(r.get_ref()).map_err(|e| fail(e.to_string()))?)
                    }
                    _ => return Err(fail("give exactly one of `contains` or `regex`".into())),
                };
                Some((h.trim().to_ascii_lowercase(), test))
            }
        };
        if header.is_none() && config.size_over.is_none() && config.size_under.is_none() {
            return Err(fail(
                "a rule needs `header`, `size_over` or `size_under`".into(),
            ));
        }
        let target = match (&config.folder, &config.mda) {
            (Some(f), None) => Target::Folder(f.clone()),
            (None, Some(argv)) if !argv.is_empty() => Target::Mda(argv.clone()),
            _ => {
                return Err(fail(
                    "a rule needs exactly one target: `folder` or `mda`".into(),
                ))
            }
        };
        Ok(Rule {
            name,
            header,
            size_over: config.size_over,
            size_under: config.size_under,
            target,
        })
    }

    fn matches(&self, headers: Option<&[HeaderField]>, size: u64) -> bool {
        if self.size_over.is_some_and(|limit| size <= limit) {
            return false;
        }
        if self.size_under.is_some_and(|limit| size >= limit) {
            return false;
        }
        match &self.header {
            None => true,
            Some((name, test)) => headers.is_some_and(|fields| {
                fields.iter().filter(|f| f.name == *name).any(|f| {
                    test.matches(&f.unfolded)
                        || f.decoded.as_deref().is_some_and(|d| test.matches(d))
                })
            }),
        }
    }
}

/// One header field as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The name, ASCII-lowercased and trimmed.
    pub name: String,
    /// The raw value with folding line breaks removed (lossy UTF-8).
    pub unfolded: String,
    /// The RFC 2047-decoded value, when it differs from `unfolded`.
    pub decoded: Option<String>,
}

/// Parses a header section into the fields named in `wanted` (lowercase
/// names); `None` when the section cannot be parsed.
///
/// Gives what `mailparse::parse_headers` would, filtered, but without
/// parsing the fields no rule looks at: field boundaries are found with
/// `memchr`, and only wanted fields go through `mailparse::parse_header`
/// (which decodes RFC 2047). The section is refused where `parse_headers`
/// refuses it: a field that starts with a space, or a lone CR where a field
/// should start.
pub fn parse_header_fields(header: &[u8], wanted: &[String]) -> Option<Vec<HeaderField>> {
    let mut fields = Vec::new();
    let mut start = 0;
    while start < header.len() {
        let rest = &header[start..];
        match rest[0] {
            b'\n' => break,
            b'\r' if rest.get(1) == Some(&b'\n') => break,
            b'\r' | b' ' => return None,
            _ => {}
        }
        let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let (key, end) = match memchr::memchr(b':', &rest[..line_end]) {
            // A line without a colon is a field with an empty value that
            // ends at the line's end.
            None => (&rest[..line_end], line_end + 1),
            Some(colon) => {
                let mut end = line_end;
                while end < rest.len() && matches!(rest.get(end + 1), Some(b' ' | b'\t')) {
                    end +=
                        1 + memchr::memchr(b'\n', &rest[end + 1..]).unwrap_or(rest.len() - end - 1);
                }
                (&rest[..colon], end + 1)
            }
        };
        if wanted.iter().any(|w| field_name_is(key, w)) {
            let (parsed, _) = mailparse::parse_header(rest).ok()?;
            let unfolded = unfold(parsed.get_value_raw());
            let decoded = parsed.get_value();
            fields.push(HeaderField {
                name: parsed.get_key_ref().trim().to_ascii_lowercase(),
                decoded: (decoded != unfolded).then_some(decoded),
                unfolded,
            });
        }
        start += end;
    }
    Some(fields)
}

/// Whether the field name `key` (bytes up to the colon) is `name`, compared
/// as mailparse names fields: Latin-1 decoded, trimmed, ASCII case ignored.
fn field_name_is(key: &[u8], name: &str) -> bool {
    let decoded = key.iter().map(|&b| char::from(b));
    let leading = decoded.clone().take_while(|c| c.is_whitespace()).count();
    let trailing = decoded
        .clone()
        .rev()
        .take_while(|c| c.is_whitespace())
        .count();
    let trimmed = decoded
        .skip(leading)
        .take(key.len().saturating_sub(leading + trailing));
    trimmed
        .map(Some)
        .chain([None])
        .zip(name.chars().map(Some).chain([None]))
        .all(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(&b),
            (a, b) => a == b,
        })
}

/// RFC 5322 unfolding: line breaks followed by white space are removed (the
/// white space stays).
fn unfold(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => i += 2,
            b'\n' => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The compiled rule set with the default target: decides where each message goes.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
    default: Target,
    /// Lowercase names of the headers some rule tests.
    header_names: Vec<String>,
}

/// The outcome of matching one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Where the message goes.
    pub target: &'a Target,
    /// The rule that matched, `None` for the default.
    pub rule: Option<&'a str>,
    /// False when the header section could not be parsed (so no header rule
    /// could match).
    pub headers_parsed: bool,
}

impl Rules {
    /// Compiles the rules and the default target (`default_mda` wins over
    /// `default_folder` when set).
    pub fn compile(config: &FilterConfig) -> Result<Rules, RuleError> {
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::compile(r.get_ref(), i))
            .collect::<Result<Vec<_>, _>>()?;
        let default = match &config.default_mda {
            Some(argv) if !argv.is_empty() => Target::Mda(argv.clone()),
            Some(_) => {
                return Err(RuleError {
                    rule: "default_mda".into(),
                    message: "empty command".into(),
                })
            }
            None => Target::Folder(config.default_folder.clone()),
        };
        let mut header_names: Vec<String> = rules
            .iter()
            .filter_map(|r| r.header.as_ref().map(|(name, _)| name.clone()))
            .collect();
        header_names.sort();
        header_names.dedup();
        Ok(Rules {
            rules,
            default,
            header_names,
        })
    }

    /// The compiled rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The target of messages no rule matches.
    pub fn default_target(&self) -> &Target {
        &self.default
    }

    /// Where `message` goes: the first matching rule's target, else the default.
    pub fn decide(&self, message: &Message) -> Decision<'_> {
        self.decide_parts(&message.header, message.content.len())
    }

    /// [`Rules::decide`] on a header section and a content length.
    pub fn decide_parts(&self, header: &[u8], size: u64) -> Decision<'_> {
        let needs_headers = !self.header_names.is_empty();
        let fields = if needs_headers {
            parse_header_fields(header, &self.header_names)
        } else {
            None
        };
        let headers_parsed = !needs_headers || fields.is_some();
        for rule in &self.rules {
            if rule.matches(fields.as_deref(), size) {
                return Decision {
                    target: &rule.target,
                    rule: Some(&rule.name),
                    headers_parsed,
                };
            }
        }
        Decision {
            target: &self.default,
            rule: None,
            headers_parsed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::filing::filter_section;
    use proptest::prelude::*;

    /// What `parse_header_fields` must give: every field parsed by
    /// mailparse, then filtered.
    fn all_fields_then_filter(header: &[u8], wanted: &[String]) -> Option<Vec<HeaderField>> {
        let (parsed, _) = mailparse::parse_headers(header).ok()?;
        Some(
            parsed
                .iter()
                .filter(|h| {
                    let name = h.get_key_ref();
                    wanted.iter().any(|w| name.trim().eq_ignore_ascii_case(w))
                })
                .map(|h| {
                    let unfolded = unfold(h.get_value_raw());
                    let decoded = h.get_value();
                    HeaderField {
                        name: h.get_key_ref().trim().to_ascii_lowercase(),
                        decoded: (decoded != unfolded).then_some(decoded),
                        unfolded,
                    }
                })
                .collect(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Header sections made of the bytes that matter to field
        /// boundaries (CR, LF, space, tab, colon), name pieces and 8-bit
        /// bytes: the fast scan agrees with parsing every field.
        #[test]
        fn scanning_for_wanted_fields_agrees_with_parsing_all(
            pieces in prop::collection::vec(
                prop::sample::select(vec![
                    "\n", "\r\n", "\r", " ", "\t", ":", "Subject", "subject ", " To",
                    "List-Id", "x", "=?utf-8?q?caf=C3=A9?=", "\u{a0}", "\u{85}",
                ]),
                0..40,
            ),
            latin1 in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            let mut header: Vec<u8> = pieces.concat().into_bytes();
            header.extend(latin1);
            let wanted = vec!["subject".to_string(), "to".to_string(), "list-id".to_string()];
            prop_assert_eq!(
                parse_header_fields(&header, &wanted),
                all_fields_then_filter(&header, &wanted)
            );
        }
    }

    #[test]
    fn scanning_agrees_with_parsing_all_on_the_sample_spool() {
        let spool = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/sample-spool.mbox"
        ))
        .unwrap();
        let wanted: Vec<String> = ["subject", "to", "cc", "list-id", "from", "received"]
            .map(String::from)
            .into();
        let mut checked = 0;
        for message in crate::engine::mbox::MboxSplitter::new(
            &spool[..],
            crate::engine::filing::MboxFormat::Mboxrd,
        ) {
            let message = message.unwrap();
            let fields = parse_header_fields(&message.header, &wanted);
            assert_eq!(
                fields,
                all_fields_then_filter(&message.header, &wanted),
                "message {}",
                message.index
            );
            assert!(fields.is_some_and(|f| !f.is_empty()));
            checked += 1;
        }
        assert_eq!(checked, 315);
    }

    fn rules(toml: &str) -> Rules {
        Rules::compile(&filter_section(toml)).unwrap()
    }

    fn folder<'a>(r: &'a Rules, header: &str, size: u64) -> &'a str {
        match r.decide_parts(header.as_bytes(), size).target {
            Target::Folder(f) => f,
            Target::Mda(_) => panic!("expected a folder"),
        }
    }

    const LISTS: &str = r#"
[[filter.rule]]
name = "mips"
header = "list-id"
contains = "LINUX-MIPS"
folder = "lists/mips"

[[filter.rule]]
header = "Subject"
regex = "^\\[SPAM\\]"
folder = "Junk"

[[filter.rule]]
size_over = 1000
folder = "big"
"#;

    #[test]
    fn header_name_and_contains_ignore_case() {
        let r = rules(LISTS);
        let h = "From: a@b\nLIST-ID: Linux MIPS <linux-mips.linux-mips.org>\n\n";
        assert_eq!(folder(&r, h, 10), "lists/mips");
    }

    #[test]
    fn first_match_wins_and_default_catches_the_rest() {
        let r = rules(LISTS);
        let both = "List-Id: <linux-mips.x>\nSubject: [SPAM] buy\n\n";
        assert_eq!(folder(&r, both, 5000), "lists/mips");
        assert_eq!(folder(&r, "Subject: [SPAM] buy\n\n", 5000), "Junk");
        assert_eq!(folder(&r, "Subject: hello\n\n", 5000), "big");
        assert_eq!(folder(&r, "Subject: hello\n\n", 1000), "INBOX");
        let d = r.decide_parts(b"Subject: hello\n\n", 10);
        assert_eq!(d.rule, None);
        assert!(d.headers_parsed);
    }

    #[test]
    fn regex_is_case_sensitive_unless_it_says_otherwise() {
        let r = rules(LISTS);
        assert_eq!(folder(&r, "Subject: [spam] buy\n\n", 1), "INBOX");
    }

    #[test]
    fn any_occurrence_of_a_repeated_header_matches() {
        let r = rules(
            "[[filter.rule]]\nheader = \"Received\"\ncontains = \"relay.example\"\nfolder = \"relayed\"\n",
        );
        let h = "Received: from a by b\nReceived: from c by relay.example\nSubject: x\n\n";
        assert_eq!(folder(&r, h, 1), "relayed");
    }

    #[test]
    fn folded_values_match_unfolded() {
        let r = rules(
            "[[filter.rule]]\nheader = \"To\"\nregex = \"alice@a\\\\.example, +bob@b\"\nfolder = \"both\"\n",
        );
        let h = "To: alice@a.example,\r\n  bob@b.example\r\nSubject: x\r\n\r\n";
        assert_eq!(folder(&r, h, 1), "both");
    }

    #[test]
    fn encoded_words_match_decoded_and_raw() {
        let r = rules(
            "[[filter.rule]]\nheader = \"Subject\"\ncontains = \"señor\"\nfolder = \"es\"\n\
             [[filter.rule]]\nheader = \"Subject\"\ncontains = \"=?utf-8?q?zz\"\nfolder = \"raw\"\n",
        );
        let decoded = "Subject: =?iso-8859-1?Q?=A1Hola,_se=F1or!?=\n\n";
        assert_eq!(folder(&r, decoded, 1), "es");
        let raw = "Subject: =?utf-8?Q?zz?=\n\n";
        assert_eq!(folder(&r, raw, 1), "raw");
    }

    #[test]
    fn size_bounds_are_strict() {
        let r = rules("[[filter.rule]]\nsize_over = 100\nsize_under = 200\nfolder = \"mid\"\n");
        assert_eq!(folder(&r, "\n", 100), "INBOX");
        assert_eq!(folder(&r, "\n", 101), "mid");
        assert_eq!(folder(&r, "\n", 199), "mid");
        assert_eq!(folder(&r, "\n", 200), "INBOX");
    }

    #[test]
    fn header_and_size_must_both_pass() {
        let r = rules(
            "[[filter.rule]]\nheader = \"From\"\ncontains = \"boss\"\nsize_under = 50\nfolder = \"short-boss\"\n",
        );
        assert_eq!(folder(&r, "From: boss@x\n\n", 10), "short-boss");
        assert_eq!(folder(&r, "From: boss@x\n\n", 60), "INBOX");
        assert_eq!(folder(&r, "From: peon@x\n\n", 10), "INBOX");
    }

    #[test]
    fn unparsable_headers_match_no_header_rule_but_size_rules_apply() {
        let r = rules(LISTS);
        // A lone CR after the header section cannot be parsed.
        let broken = "List-Id: <linux-mips.x>\n\rjunk";
        let d = r.decide_parts(broken.as_bytes(), 10);
        assert_eq!(d.target, &Target::Folder("INBOX".into()));
        assert!(!d.headers_parsed);
        assert_eq!(folder(&r, broken, 5000), "big");
    }

    #[test]
    fn mda_targets_and_default_mda() {
        let r = rules(
            "[filter]\ndefault_mda = [\"procmail\", \"-m\"]\n\
             [[filter.rule]]\nname = \"to-sa\"\nheader = \"X-Spam\"\ncontains = \"yes\"\nmda = [\"spamc\"]\n",
        );
        let d = r.decide_parts(b"X-Spam: YES\n\n", 1);
        assert_eq!(d.target, &Target::Mda(vec!["spamc".into()]));
        assert_eq!(d.rule, Some("to-sa"));
        assert_eq!(d.target.label(), "mda:spamc");
        let d = r.decide_parts(b"X-Spam: no\n\n", 1);
        assert_eq!(d.target, &Target::Mda(vec!["procmail".into(), "-m".into()]));
    }

    #[test]
    fn rule_names_default_to_their_position() {
        let r = rules(LISTS);
        let d = r.decide_parts(b"Subject: [SPAM] x\n\n", 1);
        assert_eq!(d.rule, Some("rule 2"));
    }
}
