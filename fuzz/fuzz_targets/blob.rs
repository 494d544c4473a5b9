//! The blob header and chunk decoder, through the store's own read path.
//!
//! Input: flags (1 byte: bit 0 a data key is given, bit 1 a range is
//! asked), the plaintext length the catalog would hold (u64 LE, below
//! 2^48: the engine never records more), a range (two u64 LE), then the
//! stored blob. The blob is put in a memory region and read back with
//! `read_blob`, as a GET would. Any answer but a panic is fine; a read
//! that succeeds must yield exactly the bytes of its range.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use domicile_fuzz::{BLOB_ID, KEY, TOKEN, runtime};
use domicile_store::{BlobPath, DataKey, RegionStore, read_blob};
use futures::TryStreamExt;
use libfuzzer_sys::fuzz_target;

fn region() -> &'static (RegionStore, BlobPath) {
    static R: OnceLock<(RegionStore, BlobPath)> = OnceLock::new();
    R.get_or_init(|| {
        (
            RegionStore::open("fuzz", "memory://", Path::new("/")).unwrap(),
            BlobPath::new(TOKEN, "profile", BLOB_ID).unwrap(),
        )
    })
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 25 {
        return;
    }
    let flags = data[0];
    let plain_len = u64_at(data, 1) & ((1 << 48) - 1);
    let range = (flags & 2 != 0).then(|| u64_at(data, 9)..u64_at(data, 17));
    let stored = Bytes::copy_from_slice(&data[25..]);
    let key = DataKey::from_bytes(KEY);
    let key = (flags & 1 != 0).then_some(&key);
    let (region, path) = region();
    runtime().block_on(async {
        region.put(path, stored).await.unwrap();
        let Ok(stream) = read_blob(region, path, key, plain_len, range.clone()).await else {
            return;
        };
        let pieces: Result<Vec<Bytes>, _> = stream.try_collect().await;
        if let Ok(pieces) = pieces {
            let got: u64 = pieces.iter().map(|p| p.len() as u64).sum();
            let want = range.map_or(plain_len, |r| r.end - r.start);
            assert_eq!(got, want, "a successful read yields exactly its range");
        }
    });
});
