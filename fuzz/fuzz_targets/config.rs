//! The config parser on any text: an error (which names file, line and
//! key) or a config, never a panic; the error's message is formatted too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mailhaul::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("fuzz.toml"), "{message}");
        }
    }
});
