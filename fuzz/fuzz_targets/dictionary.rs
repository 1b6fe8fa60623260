//! Fuzzes the dictionary parser: arbitrary bytes, read as UTF-8 (lossily), go
//! to `Dictionary::parse_str`. It may return an error; it must not panic, and
//! an error must leave the dictionary untouched (parse_str is all-or-nothing).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

use entra_radius::proto::dictionary::Dictionary;

/// Relative `$INCLUDE`s resolve under /nonexistent and so fail harmlessly, but
/// an absolute one would read this machine's files, and `/dev/zero` or
/// `/dev/stdin` would exhaust memory or block. Such inputs are skipped. The
/// test mirrors the parser's own tokenising (lines, `#` comments, whitespace,
/// case-insensitive keyword).
fn has_absolute_include(text: &str) -> bool {
    text.lines().any(|raw| {
        let content = raw.split('#').next().unwrap_or_default();
        let mut fields = content.split_whitespace();
        let is_include = fields
            .next()
            .is_some_and(|k| k.to_ascii_uppercase().starts_with("$INCLUDE"));
        is_include && fields.any(|f| f.starts_with('/'))
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if has_absolute_include(&text) {
        return;
    }
    let origin = Path::new("/nonexistent/fuzz");
    let mut dict = Dictionary::new();
    match dict.parse_str(origin, &text) {
        Ok(()) => {
            // Lookups over whatever was defined must not panic either.
            const SAMPLES: [&[u8]; 6] = [
                &[],
                &[1],
                &[0, 0, 0, 1],
                &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                &[1, 2, 3, 4, 5, 6, 7, 8],
                b"\x01\x03ab\xff",
            ];
            for def in dict.attrs().take(64) {
                assert!(
                    dict.attr_by_name(&def.name).is_some(),
                    "defined name {:?} not found",
                    def.name
                );
                assert_eq!(dict.attr(def.key), Some(def));
                for value in SAMPLES {
                    let _ = dict.format(def.key, value);
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.line();
            assert!(dict.is_empty(), "failed parse left definitions behind");
        }
    }
});
