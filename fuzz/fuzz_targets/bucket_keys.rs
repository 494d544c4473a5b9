//! Bucket key mapping: a bucket's patterns and an S3 key → (subject,
//! category, name), as every S3 operation maps its key.
//!
//! Input: lines; the first is the subject pattern, the last the key, and
//! those between are category patterns. A key that maps must be rebuilt
//! from its parts exactly, be stored in the bucket's namespace, start with
//! its subject's prefix, and carry the category of the longest pattern it
//! matches.

#![no_main]

use domicile_core::bucket::Bucket;
use domicile_core::ids::Category;
use domicile_server::s3::fuzzing::map_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let (Some(subject), Some(key)) = (lines.first(), lines.last()) else {
        return;
    };
    if lines.len() < 2 {
        return;
    }
    let cat = |i: usize| -> Category { format!("cat{i}").parse().unwrap() };
    let categories: Vec<(String, Category)> = lines[1..lines.len() - 1]
        .iter()
        .enumerate()
        .map(|(i, p)| (p.to_string(), cat(i)))
        .collect();
    let Ok(bucket) = Bucket::new("user-data", subject, cat(99), categories.clone()) else {
        return;
    };
    let Ok(m) = map_key(&bucket, key) else {
        return;
    };
    // The stored name sits in the bucket's namespace, and the key is
    // rebuilt from it exactly.
    assert!(
        m.name.as_str().starts_with(bucket.namespace()),
        "name outside the bucket"
    );
    assert_eq!(
        bucket.key_of(&m.subject, m.name.as_str()).as_deref(),
        Some(*key),
        "key rebuilt"
    );
    let prefix = bucket.subject_prefix(&m.subject);
    assert!(key.starts_with(&prefix), "key outside its subject's prefix");
    // The longest matching category pattern wins.
    let best = categories
        .iter()
        .filter(|(p, _)| key.starts_with(&p.replace("{subject}", m.subject.as_str())))
        .max_by_key(|(p, _)| p.len());
    if let Some((p, c)) = best {
        let ties = categories
            .iter()
            .filter(|(q, _)| {
                q.len() == p.len() && key.starts_with(&q.replace("{subject}", m.subject.as_str()))
            })
            .count();
        if ties == 1 {
            assert_eq!(&m.category, c, "category of the longest pattern");
        }
    } else {
        assert_eq!(m.category, cat(99), "the bucket's default category");
    }
});
