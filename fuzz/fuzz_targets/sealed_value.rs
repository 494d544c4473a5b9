//! Sealed values: object names, metadata and subject ids as the catalog
//! holds them (`seal_value` / `open_value`).
//!
//! Input: a context selector (1 byte: 0 an object name, 1 its metadata, 2
//! a sealed subject id, else the next byte is the length of a raw
//! context), then the sealed bytes. They are opened as the engine opens
//! them (the name as UTF-8, the metadata as JSON). A value that opens must
//! seal again and open to the same bytes, and one flipped bit anywhere in
//! it must make it fail.

#![no_main]

use domicile_engine::ObjectMeta;
use domicile_fuzz::{KEY, LOOKUP};
use domicile_store::DataKey;
use domicile_store::crypto::{open_value, seal_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (context, sealed) = match selector {
        0 => (format!("name:{LOOKUP}").into_bytes(), rest),
        1 => (format!("meta:{LOOKUP}").into_bytes(), rest),
        2 => (b"0123456789abcdef0123456789abcdef".to_vec(), rest),
        _ => {
            let Some((&len, rest)) = rest.split_first() else {
                return;
            };
            let len = usize::from(len).min(rest.len());
            (rest[..len].to_vec(), &rest[len..])
        }
    };
    let key = DataKey::from_bytes(KEY);
    let Ok(plain) = open_value(&key, &context, sealed) else {
        return;
    };
    // As the engine reads them.
    match selector {
        0 | 2 => {
            let _ = String::from_utf8(plain.clone());
        }
        1 => {
            let _: ObjectMeta = serde_json::from_slice(&plain).unwrap_or_default();
        }
        _ => {}
    }
    let again = seal_value(&key, &context, &plain).unwrap();
    assert_eq!(open_value(&key, &context, &again).unwrap(), plain);
    let bit = plain.len() % (sealed.len() * 8);
    let mut flipped = sealed.to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(
        open_value(&key, &context, &flipped).is_err(),
        "a sealed value with bit {bit} flipped still opens"
    );
    let mut other = context.clone();
    other.push(0);
    assert!(
        open_value(&key, &other, sealed).is_err(),
        "a sealed value opens under another context"
    );
});
