//! The mbox splitter on any bytes (the first byte picks the dialect): it
//! must not panic, must give every message, and its work must stay linear
//! in the input whatever the lengths and From_ lines say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailhaul::engine::filing::MboxFormat;
use mailhaul::engine::mbox::{MboxSplitter, MAX_FROM_LINE};

fuzz_target!(|data: &[u8]| {
    let Some((&select, input)) = data.split_first() else {
        return;
    };
    let format = if select & 1 == 0 {
        MboxFormat::Mboxo
    } else {
        MboxFormat::Mboxrd
    };
    let mut splitter = MboxSplitter::new(input, format);
    let mut messages = 0u64;
    let mut bytes = 0u64;
    for message in splitter.by_ref() {
        let message = message.expect("reading a slice cannot fail");
        bytes += message.content.len();
        messages += 1;
    }
    assert!(bytes <= input.len() as u64);
    let bound = 3 * input.len() as u64 + (messages + 1) * (MAX_FROM_LINE as u64 + 3);
    assert!(
        splitter.bytes_moved() <= bound,
        "{} bytes moved for {} of input",
        splitter.bytes_moved(),
        input.len()
    );
});
