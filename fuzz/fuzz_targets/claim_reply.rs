//! The parsers of the server script's replies (probe/survey, claim,
//! recover) on any output: records or a clear error, never a panic; what
//! parses is used as a fetch uses it (claim ids and owners, the claim
//! strategy and compression chosen from a probe).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailhaul::engine::account::{ClaimStrategy, Compression};
use mailhaul::engine::claim::{
    choose_method, choose_strategy, parse_claims, parse_probe, parse_reply,
};

fuzz_target!(|data: &[u8]| {
    let (status, stdout) = match data.split_first() {
        Some((&s, rest)) if s < 4 => (i32::from(s), rest),
        _ => (0, data),
    };
    let records = match parse_reply(stdout, b"stderr text", status) {
        Ok(records) => records,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    if let Ok(probe) = parse_probe(&records) {
        for strategy in [
            ClaimStrategy::Auto,
            ClaimStrategy::Rename,
            ClaimStrategy::CopyTruncate,
        ] {
            let _ = choose_strategy(&probe, strategy).map_err(|e| e.to_string());
        }
        for compression in [Compression::Auto, Compression::Zstd, Compression::Gzip] {
            let _ = choose_method(&probe, compression, None).map_err(|e| e.to_string());
        }
    }
    match parse_claims(&records) {
        Ok(reply) => {
            for claim in &reply.claims {
                let _ = (claim.id(), claim.owner(), claim.belongs_to("me"));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
