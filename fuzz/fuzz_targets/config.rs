//! Config parsing: `Config::parse`, as `domicile` reads a config file and
//! as `POST /v1/policy` reads one.
//!
//! Input: the file's text (bytes that are not UTF-8 are replaced, as a
//! file read as text would not be; the parser only ever sees a `str`).
//! A refusal must point inside the text; a config that parses must have a
//! stable plan digest and adopt itself.

#![no_main]

use std::path::Path;

use domicile_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.split('\n').count();
    match Config::parse("fuzz.toml", &text, Path::new("/nonexistent/fuzz")) {
        Err(e) => {
            let _ = e.to_string();
            for d in &e.diagnostics {
                assert!(
                    (1..=lines).contains(&d.line) && d.col >= 1,
                    "diagnostic outside the text ({lines} lines): {d}"
                );
            }
        }
        Ok(config) => {
            let digest = config.plan_digest();
            assert!(config.plans_job(&digest));
            let _ = config.categories();
            let _ = config.digest();
            let adopted = config
                .adopt(&config)
                .unwrap_or_else(|e| panic!("a config does not adopt itself: {e}"));
            assert_eq!(adopted.plan_digest(), digest);
            let again = Config::parse("fuzz.toml", &text, Path::new("/nonexistent/fuzz"))
                .unwrap_or_else(|e| panic!("parsed once, refused the second time: {e}"));
            assert_eq!(again.plan_digest(), digest);
        }
    }
});
