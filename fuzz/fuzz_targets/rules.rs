//! The header scan and the rule matcher on any header section: no panic,
//! and the fast scan for the fields rules test gives what parsing every
//! field with mailparse and then keeping those fields gives.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mailhaul::config::Config;
use mailhaul::engine::rules::{parse_header_fields, HeaderField, Rules};

/// The rules of bench/corpus-rules.toml, plus a size rule and a
/// case-insensitive regex on a header that is often folded or encoded.
const RULES: &str = r#"
[[filter.rule]]
header = "List-Id"
contains = "linux-mips"
folder = "lists/linux-mips"

[[filter.rule]]
header = "List-Id"
regex = "(?i)fork|freshrpms|ilug|spamassassin|razor|exmh"
folder = "lists/other"

[[filter.rule]]
header = "To"
contains = "sally.beck@enron.com"
folder = "enron"

[[filter.rule]]
header = "Subject"
regex = "(?i)viagra|mortgage|\\bfree\\b|\\$\\$\\$|casino|weight loss|café"
folder = "Junk"

[[filter.rule]]
size_over = 100000
folder = "big"
"#;

fn rules() -> &'static Rules {
    static RULES_COMPILED: OnceLock<Rules> = OnceLock::new();
    RULES_COMPILED.get_or_init(|| {
        let config = Config::parse(RULES, Path::new("fuzz.toml")).expect("valid rules");
        Rules::compile(&config.filter).expect("rules compile")
    })
}

/// RFC 5322 unfolding, written again here: line breaks are removed.
fn unfold(raw: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 2;
        } else if raw[i] == b'\n' {
            i += 1;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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

fuzz_target!(|header: &[u8]| {
    let decision = rules().decide_parts(header, header.len() as u64 * 100);
    let _ = (decision.target, decision.rule, decision.headers_parsed);
    let wanted = ["list-id", "to", "subject"].map(String::from);
    assert_eq!(
        parse_header_fields(header, &wanted),
        all_fields_then_filter(header, &wanted)
    );
});
