//! Continuation tokens and the paging they resume (ListObjectsV2).
//!
//! Input: lines; the token, the prefix, the delimiter (empty: none),
//! max-keys, then the keys of a subject (sorted and made unique here, as
//! the catalog offers them; the first 64). Following the tokens from the
//! first one through every page must give each entry after the resume
//! point exactly once, in order: the same entries a brute-force reading of
//! the request gives.

#![no_main]

use std::collections::BTreeSet;

use domicile_server::s3::fuzzing::{decode_token, encode_token, page};
use libfuzzer_sys::fuzz_target;

/// Keys per input: enough for pages of every shape, few enough that the
/// brute-force check stays fast.
const MAX_KEYS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let (Some(token), Some(prefix), Some(delimiter), Some(max)) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return;
    };
    let keys: Vec<String> = lines
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_KEYS)
        .collect();
    let Ok(after) = decode_token(token) else {
        return;
    };
    assert_eq!(decode_token(&encode_token(&after)).as_ref(), Ok(&after));
    let max: Option<i32> = max.trim().parse().ok();
    let delimiter = Some(delimiter.to_string()).filter(|d| !d.is_empty());

    // Brute force: every entry (key, or common prefix) after the token.
    let expected: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.starts_with(prefix))
        .map(|k| match &delimiter {
            Some(d) => match k[prefix.len()..].find(d.as_str()) {
                Some(at) => k[..prefix.len() + at + d.len()].to_string(),
                None => k.clone(),
            },
            None => k.clone(),
        })
        .filter(|e| e.as_str() > after.as_str())
        .collect();

    let mut seen: Vec<String> = Vec::new();
    let mut resume = Some(after);
    for _ in 0..=keys.len() + 1 {
        let Ok(p) = page(
            &keys,
            Some(prefix.to_string()),
            delimiter.clone(),
            resume.clone(),
            max,
        ) else {
            assert!(
                max.is_some_and(|m| m < 0),
                "only a negative max-keys is refused"
            );
            return;
        };
        let mut entries: Vec<String> = p.objects.iter().chain(&p.prefixes).cloned().collect();
        entries.sort();
        let limit = max.map_or(1000, |m| m.min(1000)) as usize;
        assert!(
            entries.len() <= limit,
            "a page holds at most max-keys entries"
        );
        if limit == 0 {
            assert!(entries.is_empty() && !p.truncated);
            return;
        }
        seen.extend(entries);
        if !p.truncated {
            break;
        }
        let last = p.last.expect("a truncated page names its last entry");
        let token = encode_token(&last);
        resume = Some(decode_token(&token).expect("a token the server made decodes"));
    }
    let sorted: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(sorted.len(), seen.len(), "an entry listed twice");
    assert_eq!(sorted, expected, "pages miss or add entries");
});
