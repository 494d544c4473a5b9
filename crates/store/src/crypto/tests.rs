use super::*;
use proptest::prelude::*;

const ID: &str = "00112233445566778899aabbccddeeff";

/// Seals `data` whole; returns the stored bytes.
fn seal_all(key: Option<&DataKey>, data: &[u8], chunk_size: u32) -> Result<Vec<u8>> {
    let mut enc = BlobEncoder::new(key, ID, chunk_size)?;
    let mut out = enc.header().to_vec();
    let cs = chunk_size as usize;
    let n = data.len().div_ceil(cs).max(1);
    for i in 0..n {
        let chunk = &data[(i * cs).min(data.len())..((i + 1) * cs).min(data.len())];
        enc.seal_chunk(chunk, i + 1 == n, &mut out)?;
    }
    Ok(out)
}

/// Opens `plain_range` of a stored blob the way a range reader does: only the chunks
/// the span names.
fn open_range(
    key: Option<&DataKey>,
    stored: &[u8],
    plain_len: u64,
    range: Range<u64>,
) -> Result<Vec<u8>> {
    let dec = BlobDecoder::new(key, ID, stored)?;
    let layout = dec.layout(plain_len)?;
    let span = layout.span(range.clone())?;
    let mut out = Vec::new();
    for i in span.first_chunk..=span.last_chunk {
        let r = layout.stored_range(i);
        let mut chunk = stored
            .get(r.start as usize..r.end as usize)
            .ok_or_else(|| Error::corrupt("truncated"))?
            .to_vec();
        let plain = dec.open_chunk(i, &mut chunk, layout.is_last(i))?;
        let p = layout.plain_range(i);
        let lo = range.start.max(p.start) - p.start;
        let hi = range.end.min(p.end).max(p.start) - p.start;
        out.extend_from_slice(&plain[lo as usize..hi as usize]);
    }
    Ok(out)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn round_trips_at_boundary_sizes() -> Result<()> {
    let key = DataKey::generate()?;
    let cs = 1024u32;
    let c = cs as usize;
    for len in [0, 1, c - 1, c, c + 1, 3 * c + 5] {
        let plain = data(len);
        for key in [Some(&key), None] {
            let stored = seal_all(key, &plain, cs)?;
            let mode = if key.is_some() {
                Mode::Aes256Gcm
            } else {
                Mode::Plain
            };
            assert_eq!(stored.len() as u64, stored_len(len as u64, cs, mode)?);
            assert_eq!(open_range(key, &stored, len as u64, 0..len as u64)?, plain);
            if key.is_some() && len > 0 {
                assert_ne!(
                    &stored[HEADER_LEN..HEADER_LEN + len.min(c)],
                    &plain[..len.min(c)]
                );
            }
        }
    }
    Ok(())
}

#[test]
fn tampering_reordering_and_truncation_are_detected() -> Result<()> {
    let key = DataKey::generate()?;
    let cs = 1024u32;
    let len = 3 * 1024 + 5;
    let plain = data(len);
    let stored = seal_all(Some(&key), &plain, cs)?;
    let layout = ChunkLayout::new(len as u64, cs, Mode::Aes256Gcm)?;
    let all = 0..len as u64;

    // Any flipped byte, in the header, a ciphertext or a tag.
    for at in [0, 5, 6, 12, HEADER_LEN, HEADER_LEN + 1100, stored.len() - 1] {
        let mut bad = stored.clone();
        bad[at] ^= 0x40;
        assert!(
            open_range(Some(&key), &bad, len as u64, all.clone()).is_err(),
            "byte {at}"
        );
    }

    // Swapping two full chunks.
    let (a, b) = (layout.stored_range(0), layout.stored_range(1));
    let mut swapped = stored.clone();
    swapped[a.start as usize..a.end as usize]
        .copy_from_slice(&stored[b.start as usize..b.end as usize]);
    swapped[b.start as usize..b.end as usize]
        .copy_from_slice(&stored[a.start as usize..a.end as usize]);
    assert!(open_range(Some(&key), &swapped, len as u64, all.clone()).is_err());

    // Dropping the last chunk, and claiming the blob ended there.
    let cut = layout.stored_range(3).start as usize;
    let truncated = &stored[..cut];
    assert!(open_range(Some(&key), truncated, len as u64, all.clone()).is_err());
    assert!(open_range(Some(&key), truncated, 3 * 1024, 0..3 * 1024).is_err());

    // Shortening the last chunk.
    assert!(
        open_range(
            Some(&key),
            &stored[..stored.len() - 1],
            len as u64,
            all.clone()
        )
        .is_err()
    );

    // The wrong key, the wrong blob id, and a downgrade to plain mode.
    let other = DataKey::generate()?;
    assert!(open_range(Some(&other), &stored, len as u64, all.clone()).is_err());
    let dec = BlobDecoder::new(Some(&key), "ffffffffffffffffffffffffffffffff", &stored)?;
    let mut first = stored[a.start as usize..a.end as usize].to_vec();
    assert!(dec.open_chunk(0, &mut first, false).is_err());
    let mut plain_mode = stored.clone();
    plain_mode[5] = 0;
    assert!(matches!(
        BlobDecoder::new(Some(&key), ID, &plain_mode),
        Err(Error::Crypto { .. })
    ));
    assert!(matches!(
        BlobDecoder::new(None, ID, &stored),
        Err(Error::Crypto { .. })
    ));
    Ok(())
}

#[test]
fn same_plaintext_and_blob_id_never_give_the_same_ciphertext() -> Result<()> {
    let key = DataKey::generate()?;
    let plain = data(100);
    assert_ne!(
        seal_all(Some(&key), &plain, 64)?,
        seal_all(Some(&key), &plain, 64)?
    );
    Ok(())
}

#[test]
fn encoder_refuses_non_canonical_chunking() -> Result<()> {
    let key = DataKey::generate()?;
    let mut out = Vec::new();
    let mut enc = BlobEncoder::new(Some(&key), ID, 8)?;
    assert!(
        enc.seal_chunk(&[0; 7], false, &mut out).is_err(),
        "short middle chunk"
    );
    assert!(
        enc.seal_chunk(&[0; 9], true, &mut out).is_err(),
        "oversized chunk"
    );
    enc.seal_chunk(&[0; 8], false, &mut out)?;
    assert!(
        enc.seal_chunk(&[], true, &mut out).is_err(),
        "empty final chunk"
    );
    enc.seal_chunk(&[0; 3], true, &mut out)?;
    assert!(
        enc.seal_chunk(&[0; 3], true, &mut out).is_err(),
        "after the last"
    );
    assert!(BlobEncoder::new(None, ID, 0).is_err());
    assert!(BlobEncoder::new(None, ID, MAX_CHUNK_SIZE + 1).is_err());
    Ok(())
}

#[test]
fn spans_cover_exactly_the_needed_chunks() -> Result<()> {
    let cs = 100;
    let layout = ChunkLayout::new(250, cs, Mode::Aes256Gcm)?;
    assert_eq!(layout.chunk_count(), 3);
    let span = layout.span(150..201)?;
    assert_eq!((span.first_chunk, span.last_chunk), (1, 2));
    assert_eq!(span.stored, (HEADER_LEN as u64 + 116)..layout.stored_len());
    let span = layout.span(100..200)?;
    assert_eq!((span.first_chunk, span.last_chunk), (1, 1));
    assert!(layout.span(0..251).is_err());
    let empty = ChunkLayout::new(0, cs, Mode::Aes256Gcm)?;
    assert_eq!(
        empty.span(0..0)?.stored,
        HEADER_LEN as u64..HEADER_LEN as u64 + 16
    );
    Ok(())
}

#[test]
fn sealed_values_are_bound_to_key_and_context() -> Result<()> {
    let key = DataKey::generate()?;
    let sealed = seal_value(&key, b"ctx-1", b"photos/2024/me.jpg")?;
    assert_eq!(open_value(&key, b"ctx-1", &sealed)?, b"photos/2024/me.jpg");
    assert!(open_value(&key, b"ctx-2", &sealed).is_err());
    assert!(open_value(&DataKey::generate()?, b"ctx-1", &sealed).is_err());
    let mut bad = sealed.clone();
    bad[20] ^= 1;
    assert!(open_value(&key, b"ctx-1", &bad).is_err());
    assert!(open_value(&key, b"ctx-1", &sealed[..10]).is_err());
    assert_eq!(open_value(&key, b"", &seal_value(&key, b"", b"")?)?, b"");
    Ok(())
}

#[test]
fn debug_does_not_print_the_key() {
    let key = DataKey::from_bytes([0xab; KEY_LEN]);
    let shown = format!("{key:?}");
    assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn range_reads_equal_the_plaintext_slice(
        len in 0usize..600,
        chunk_size in 1u32..80,
        a in 0usize..=600,
        b in 0usize..=600,
        encrypted in any::<bool>(),
    ) {
        let key = DataKey::from_bytes([7; KEY_LEN]);
        let key = encrypted.then_some(&key);
        let plain = data(len);
        let stored = seal_all(key, &plain, chunk_size)?;
        let (a, b) = (a.min(len), b.min(len));
        let (start, end) = (a.min(b), a.max(b));
        let got = open_range(key, &stored, len as u64, start as u64..end as u64)?;
        prop_assert_eq!(got, plain[start..end].to_vec());
    }
}
