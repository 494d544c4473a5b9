//! Body checksums as S3 has them: `Content-MD5` and the `x-amz-checksum-*`
//! algorithms (CRC32, CRC32C, CRC64NVME, SHA1, SHA256), given as headers
//! or as the trailer of an aws-chunked body (`x-amz-trailer`, whose
//! signature s3s checks).
//!
//! [`Claims`] reads what a request says of its body; [`Verify`] wraps the
//! body as the engine reads it and computes every digest on the way. At the
//! end of the body it compares them with the claims: a mismatch fails the
//! read, so the engine aborts the write and nothing is committed, and the
//! handler answers `BadDigest` ([`Checked::refusal`]). What it computed is
//! stored, sealed, with the object's metadata (by algorithm, base64, as S3
//! writes them): the claimed algorithms, or CRC64NVME when none is claimed,
//! as S3 does by default.
//!
//! Objects of parts: [`composite`] (the checksum of the parts' checksums,
//! `-N`) and [`full_object`] (the parts' CRCs combined, without reading a
//! byte again).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{ChecksumAlgorithm, ChecksumType};
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders};
use tokio::io::{AsyncRead, ReadBuf};

use super::error::s3;

/// The checksum algorithms of S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

pub(crate) const FULL_OBJECT: &str = ChecksumType::FULL_OBJECT;
pub(crate) const COMPOSITE: &str = ChecksumType::COMPOSITE;

impl Algorithm {
    pub(crate) const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// S3's name (`CRC32`, …), as stored.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => ChecksumAlgorithm::CRC32,
            Algorithm::Crc32c => ChecksumAlgorithm::CRC32C,
            Algorithm::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
            Algorithm::Sha1 => ChecksumAlgorithm::SHA1,
            Algorithm::Sha256 => ChecksumAlgorithm::SHA256,
        }
    }

    /// The algorithm of a name, in any case.
    pub(crate) fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Its header: `x-amz-checksum-crc32`, ….
    pub(crate) fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    /// The size of its digest, in bytes.
    fn len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    /// The CRC of a CRC algorithm, for combining.
    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Algorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }

    /// The checksum types S3 allows for an upload of parts, the default
    /// first: CRC64NVME is full-object only, the SHAs composite only.
    pub(crate) fn types(self) -> &'static [&'static str] {
        match self {
            Algorithm::Crc64Nvme => &[FULL_OBJECT],
            Algorithm::Crc32 | Algorithm::Crc32c => &[COMPOSITE, FULL_OBJECT],
            Algorithm::Sha1 | Algorithm::Sha256 => &[COMPOSITE],
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Crc32 => Crc32::checksum(data).to_vec(),
            Algorithm::Crc32c => Crc32c::checksum(data).to_vec(),
            Algorithm::Crc64Nvme => Crc64Nvme::checksum(data).to_vec(),
            Algorithm::Sha1 => Sha1::checksum(data).as_ref().to_vec(),
            Algorithm::Sha256 => Sha256::checksum(data).as_ref().to_vec(),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s.as_bytes()).ok()
}

/// A checksum value, decoded, if it is one of `a`.
fn decode(a: Algorithm, value: &str) -> Option<Vec<u8>> {
    unb64(value).filter(|v| v.len() == a.len())
}

fn invalid_value(a: Algorithm) -> S3Error {
    s3(
        S3ErrorCode::InvalidRequest,
        format!("Value for {} header is invalid.", a.header()),
    )
}

/// Why a checked body was refused at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Content-MD5 did not match.
    Md5,
    /// This algorithm's checksum did not match.
    Mismatch(Algorithm),
    /// The trailer `x-amz-trailer` announced did not come.
    MissingTrailer(Algorithm),
}

impl Refusal {
    pub(crate) fn to_s3(&self) -> S3Error {
        match self {
            Refusal::Md5 => s3(
                S3ErrorCode::BadDigest,
                "The Content-MD5 you specified did not match what we received.",
            ),
            Refusal::Mismatch(a) => s3(
                S3ErrorCode::BadDigest,
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    a.name()
                ),
            ),
            Refusal::MissingTrailer(a) => {
                let mut e = s3(
                    S3ErrorCode::Custom("MalformedTrailerError".into()),
                    format!(
                        "The request contained trailing data that was not well-formed: {} was announced in x-amz-trailer but not sent.",
                        a.header()
                    ),
                );
                e.set_status_code(hyper::StatusCode::BAD_REQUEST);
                e
            }
        }
    }
}

/// What a request claims of its body.
#[derive(Debug, Default, Clone)]
pub(crate) struct Claims {
    md5: Option<Vec<u8>>,
    given: Option<(Algorithm, Vec<u8>)>,
    trailer: Option<(Algorithm, TrailingHeaders)>,
    /// Computed and stored without a claim.
    also: Vec<Algorithm>,
}

impl Claims {
    /// The claims of a request's headers (`Content-MD5`, one
    /// `x-amz-checksum-*`, `x-amz-trailer`, `x-amz-sdk-checksum-algorithm`)
    /// and its trailers' handle. Refuses malformed or contradictory ones,
    /// with S3's errors, before any byte is stored.
    pub(crate) fn of(headers: &HeaderMap, trailers: Option<&TrailingHeaders>) -> S3Result<Claims> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let mut claims = Claims::default();
        if let Some(v) = headers.get("content-md5") {
            let md5 = v
                .to_str()
                .ok()
                .and_then(unb64)
                .filter(|d| d.len() == 16)
                .ok_or_else(|| {
                    s3(
                        S3ErrorCode::InvalidDigest,
                        "The Content-MD5 you specified was invalid.",
                    )
                })?;
            claims.md5 = Some(md5);
        }
        for a in Algorithm::ALL {
            let Some(v) = headers.get(a.header()) else {
                continue;
            };
            if claims.given.is_some() {
                return Err(s3(
                    S3ErrorCode::InvalidRequest,
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                ));
            }
            let value = v
                .to_str()
                .ok()
                .and_then(|v| decode(a, v))
                .ok_or_else(|| invalid_value(a))?;
            claims.given = Some((a, value));
        }
        if let Some(t) = text("x-amz-trailer") {
            let a = t
                .trim()
                .strip_prefix("x-amz-checksum-")
                .and_then(Algorithm::parse)
                .filter(|a| t.trim().eq_ignore_ascii_case(&a.header()))
                .ok_or_else(|| {
                    s3(
                        S3ErrorCode::InvalidRequest,
                        "x-amz-trailer must name one x-amz-checksum-* header",
                    )
                })?;
            if claims.given.is_some() {
                return Err(s3(
                    S3ErrorCode::InvalidRequest,
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                ));
            }
            let handle = trailers.cloned().ok_or_else(|| {
                s3(
                    S3ErrorCode::InvalidRequest,
                    "x-amz-trailer needs an aws-chunked body with trailers (x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER or STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER)",
                )
            })?;
            claims.trailer = Some((a, handle));
        }
        if let Some(name) = text("x-amz-sdk-checksum-algorithm") {
            let a = Algorithm::parse(name).ok_or_else(|| {
                s3(
                    S3ErrorCode::InvalidRequest,
                    "Value for x-amz-sdk-checksum-algorithm header is invalid.",
                )
            })?;
            if claims.claimed() != Some(a) {
                return Err(s3(
                    S3ErrorCode::InvalidRequest,
                    "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found.",
                ));
            }
        }
        Ok(claims)
    }

    /// The algorithm the request claims a checksum of, if any.
    pub(crate) fn claimed(&self) -> Option<Algorithm> {
        self.given
            .as_ref()
            .map(|(a, _)| *a)
            .or(self.trailer.as_ref().map(|(a, _)| *a))
    }

    /// Also computes and stores `a`, claimed or not.
    pub(crate) fn also(mut self, a: Algorithm) -> Self {
        if !self.also.contains(&a) {
            self.also.push(a);
        }
        self
    }

    /// What is computed: the claimed algorithm and the others asked for,
    /// or CRC64NVME if that makes none.
    fn computed(&self) -> Vec<Algorithm> {
        let mut all: Vec<Algorithm> = self.claimed().into_iter().collect();
        for a in &self.also {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        if all.is_empty() {
            all.push(Algorithm::Crc64Nvme);
        }
        all
    }
}

/// What a checked body came to, shared with the handler.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    outcome: Mutex<Option<Result<BTreeMap<String, String>, Refusal>>>,
}

impl Checked {
    /// The checksums computed, once the whole body was read and matched.
    pub(crate) fn checksums(&self) -> Option<BTreeMap<String, String>> {
        self.outcome.lock().ok()?.clone()?.ok()
    }

    /// Why the body was refused at its end, if it was.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        self.outcome.lock().ok()?.clone()?.err()
    }

    fn set(&self, r: Result<BTreeMap<String, String>, Refusal>) {
        if let Ok(mut o) = self.outcome.lock() {
            *o = Some(r);
        }
    }
}

/// A body that computes its digests as it is read and compares them with
/// the claims at its end (see the module's documentation).
pub(crate) struct Verify<R> {
    inner: R,
    claims: Claims,
    md5: Option<Md5>,
    hasher: Option<ChecksumHasher>,
    checked: Arc<Checked>,
}

impl<R> Verify<R> {
    pub(crate) fn new(inner: R, claims: Claims) -> (Self, Arc<Checked>) {
        let mut hasher = ChecksumHasher::default();
        for a in claims.computed() {
            match a {
                Algorithm::Crc32 => hasher.crc32 = Some(Crc32::new()),
                Algorithm::Crc32c => hasher.crc32c = Some(Crc32c::new()),
                Algorithm::Crc64Nvme => hasher.crc64nvme = Some(Crc64Nvme::new()),
                Algorithm::Sha1 => hasher.sha1 = Some(Sha1::new()),
                Algorithm::Sha256 => hasher.sha256 = Some(Sha256::new()),
            }
        }
        let checked = Arc::new(Checked::default());
        let md5 = claims.md5.is_some().then(Md5::new);
        (
            Verify {
                inner,
                claims,
                md5,
                hasher: Some(hasher),
                checked: checked.clone(),
            },
            checked,
        )
    }

    /// At the end of the body: every digest against its claim.
    fn finish(&mut self) -> Result<(), Refusal> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let outcome = self.compare(hasher);
        self.checked.set(outcome.clone());
        outcome.map(|_| ())
    }

    fn compare(&mut self, hasher: ChecksumHasher) -> Result<BTreeMap<String, String>, Refusal> {
        if let (Some(want), Some(md5)) = (&self.claims.md5, self.md5.take())
            && md5.finalize().as_slice() != want.as_slice()
        {
            return Err(Refusal::Md5);
        }
        let sums = checksums_of(&hasher.finalize());
        let got = |a: Algorithm| sums.get(a.name()).and_then(|v| unb64(v));
        if let Some((a, want)) = &self.claims.given
            && got(*a).as_ref() != Some(want)
        {
            return Err(Refusal::Mismatch(*a));
        }
        if let Some((a, trailers)) = &self.claims.trailer {
            let sent = trailers
                .read(|h| {
                    h.get(a.header())
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .flatten()
                .ok_or(Refusal::MissingTrailer(*a))?;
            if decode(*a, sent.trim()).is_none_or(|want| got(*a) != Some(want)) {
                return Err(Refusal::Mismatch(*a));
            }
        }
        Ok(sums)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Verify<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let asked = buf.remaining() > 0;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let new = &buf.filled()[before..];
            if new.is_empty() && asked {
                if this.finish().is_err() {
                    return Poll::Ready(Err(std::io::Error::other(
                        "the body's checksum does not match",
                    )));
                }
            } else {
                if let Some(h) = &mut this.hasher {
                    h.update(new);
                }
                if let Some(m) = &mut this.md5 {
                    m.update(new);
                }
            }
        }
        polled
    }
}

/// The checksums of s3s's record, by algorithm name.
fn checksums_of(c: &s3s::dto::Checksum) -> BTreeMap<String, String> {
    let pairs = [
        (Algorithm::Crc32, &c.checksum_crc32),
        (Algorithm::Crc32c, &c.checksum_crc32c),
        (Algorithm::Crc64Nvme, &c.checksum_crc64nvme),
        (Algorithm::Sha1, &c.checksum_sha1),
        (Algorithm::Sha256, &c.checksum_sha256),
    ];
    pairs
        .into_iter()
        .filter_map(|(a, v)| Some((a.name().to_string(), v.clone()?)))
        .collect()
}

/// Stored checksums as the response fields of s3s's record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Fields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub kind: Option<ChecksumType>,
}

impl Fields {
    pub(crate) fn of(sums: &BTreeMap<String, String>, kind: Option<&str>) -> Fields {
        let get = |a: Algorithm| sums.get(a.name()).cloned();
        Fields {
            crc32: get(Algorithm::Crc32),
            crc32c: get(Algorithm::Crc32c),
            crc64nvme: get(Algorithm::Crc64Nvme),
            sha1: get(Algorithm::Sha1),
            sha256: get(Algorithm::Sha256),
            kind: (!sums.is_empty())
                .then(|| ChecksumType::from(kind.unwrap_or(FULL_OBJECT).to_string())),
        }
    }

    /// The one of algorithm `a`.
    pub(crate) fn only(sums: &BTreeMap<String, String>, a: Algorithm) -> Fields {
        let one: BTreeMap<String, String> = sums
            .get(a.name())
            .map(|v| (a.name().to_string(), v.clone()))
            .into_iter()
            .collect();
        Fields::of(&one, None)
    }
}

/// Fills the checksum fields of a response (or any s3s record with the
/// same field names) from [`Fields`].
macro_rules! set_checksums {
    ($out:expr, $fields:expr) => {{
        let f: $crate::s3::checksum::Fields = $fields;
        $out.checksum_crc32 = f.crc32;
        $out.checksum_crc32c = f.crc32c;
        $out.checksum_crc64nvme = f.crc64nvme;
        $out.checksum_sha1 = f.sha1;
        $out.checksum_sha256 = f.sha256;
        f.kind
    }};
}
pub(crate) use set_checksums;

/// The checksum of algorithm `a` a record (a CompletedPart, a
/// CompleteMultipartUpload request) gives, if any.
macro_rules! given_checksum {
    ($rec:expr, $a:expr) => {
        match $a {
            $crate::s3::checksum::Algorithm::Crc32 => $rec.checksum_crc32.clone(),
            $crate::s3::checksum::Algorithm::Crc32c => $rec.checksum_crc32c.clone(),
            $crate::s3::checksum::Algorithm::Crc64Nvme => $rec.checksum_crc64nvme.clone(),
            $crate::s3::checksum::Algorithm::Sha1 => $rec.checksum_sha1.clone(),
            $crate::s3::checksum::Algorithm::Sha256 => $rec.checksum_sha256.clone(),
        }
    };
}
pub(crate) use given_checksum;

/// S3's COMPOSITE checksum of an object of parts: the checksum of the
/// parts' binary checksums, base64, `-` and the number of parts. None if
/// a part's value is not one of `a`.
pub(crate) fn composite<'a>(
    a: Algorithm,
    parts: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut all = Vec::new();
    let mut n = 0usize;
    for p in parts {
        all.extend(decode(a, p)?);
        n += 1;
    }
    Some(format!("{}-{n}", b64(&a.digest(&all))))
}

/// S3's FULL_OBJECT checksum of an object of parts, for a CRC: the parts'
/// CRCs (with their sizes) combined into the CRC of the whole. None for a
/// SHA, or a value that is not one of `a`.
pub(crate) fn full_object<'a>(
    a: Algorithm,
    parts: impl IntoIterator<Item = (&'a str, u64)>,
) -> Option<String> {
    let crc = a.crc()?;
    let mut whole: Option<u64> = None;
    for (value, size) in parts {
        let bytes = decode(a, value)?;
        let mut be = [0u8; 8];
        be[8 - bytes.len()..].copy_from_slice(&bytes);
        let part = u64::from_be_bytes(be);
        whole = Some(match whole {
            None => part,
            Some(w) => crc_fast::checksum_combine(crc, w, part, size),
        });
    }
    let w = whole?;
    Some(b64(&w.to_be_bytes()[8 - a.len()..]))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn sum(a: Algorithm, data: &[u8]) -> String {
        b64(&a.digest(data))
    }

    async fn read(body: &'static [u8], claims: Claims) -> (bool, Arc<Checked>) {
        let (mut r, checked) = Verify::new(body, claims);
        let mut out = Vec::new();
        let ok = r.read_to_end(&mut out).await.is_ok();
        (ok, checked)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap_or_else(|e| panic!("{e}")));
        }
        h
    }

    #[test]
    fn known_values() {
        // Values S3 documents and the AWS SDKs test against.
        assert_eq!(sum(Algorithm::Crc32, b"Hello world"), "i9aeUg==");
        assert_eq!(sum(Algorithm::Crc32c, b"Hello world"), "crUfeA==");
        assert_eq!(sum(Algorithm::Crc64Nvme, b"Hello world"), "OOJZ0D8xKts=");
        assert_eq!(
            sum(Algorithm::Sha1, b"Hello world"),
            "e1AsOh9IyGCa4hLN+2Od7jlnP14="
        );
    }

    #[tokio::test]
    async fn a_matching_body_passes_and_a_wrong_one_fails_at_its_end() {
        let good = sum(Algorithm::Crc32c, b"hello");
        let h = headers(&[("x-amz-checksum-crc32c", &good)]);
        let claims = Claims::of(&h, None).unwrap_or_else(|e| panic!("{e:?}"));
        let (ok, checked) = read(b"hello", claims.clone()).await;
        assert!(ok);
        assert_eq!(
            checked.checksums().and_then(|s| s.get("CRC32C").cloned()),
            Some(good)
        );
        let (ok, checked) = read(b"hellO", claims).await;
        assert!(!ok);
        assert_eq!(
            checked.refusal(),
            Some(Refusal::Mismatch(Algorithm::Crc32c))
        );
        assert_eq!(
            checked.refusal().map(|r| r.to_s3().code().clone()),
            Some(S3ErrorCode::BadDigest)
        );
    }

    #[tokio::test]
    async fn content_md5_is_checked() {
        let md5 = b64(&Md5::digest(b"abc"));
        let claims = Claims::of(&headers(&[("content-md5", &md5)]), None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(read(b"abc", claims.clone()).await.0);
        let (ok, checked) = read(b"abd", claims).await;
        assert!(!ok);
        assert_eq!(checked.refusal(), Some(Refusal::Md5));
        let bad = Claims::of(&headers(&[("content-md5", "bm90IG1kNQ==")]), None);
        assert_eq!(
            bad.err().map(|e| e.code().clone()),
            Some(S3ErrorCode::InvalidDigest)
        );
    }

    #[tokio::test]
    async fn without_a_claim_crc64nvme_is_computed() {
        let (ok, checked) = read(b"Hello world", Claims::default()).await;
        assert!(ok);
        let sums = checked.checksums().unwrap_or_default();
        assert_eq!(sums.len(), 1);
        assert_eq!(
            sums.get("CRC64NVME").map(String::as_str),
            Some("OOJZ0D8xKts=")
        );
    }

    #[test]
    fn contradictory_claims_are_refused() {
        let a = sum(Algorithm::Crc32, b"x");
        let b = sum(Algorithm::Sha256, b"x");
        let two = headers(&[("x-amz-checksum-crc32", &a), ("x-amz-checksum-sha256", &b)]);
        assert!(Claims::of(&two, None).is_err());
        let short = headers(&[("x-amz-checksum-sha256", &a)]);
        assert!(Claims::of(&short, None).is_err());
        let sdk = headers(&[
            ("x-amz-checksum-crc32", &a),
            ("x-amz-sdk-checksum-algorithm", "SHA256"),
        ]);
        assert!(Claims::of(&sdk, None).is_err());
        let trailer = headers(&[("x-amz-trailer", "x-amz-checksum-crc32")]);
        assert!(Claims::of(&trailer, None).is_err(), "no chunked body");
        let other = headers(&[("x-amz-trailer", "x-amz-meta-a")]);
        assert!(Claims::of(&other, None).is_err());
    }

    #[test]
    fn composite_and_full_object_checksums_of_parts() {
        let (p1, p2) = (b"hello ".as_slice(), b"world".as_slice());
        for a in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let whole = full_object(a, [(sum(a, p1).as_str(), 6), (sum(a, p2).as_str(), 5)]);
            assert_eq!(whole, Some(sum(a, b"hello world")), "{a:?}");
        }
        assert_eq!(full_object(Algorithm::Sha256, [("x", 1)]), None);
        let mut both = Algorithm::Sha256.digest(p1);
        both.extend(Algorithm::Sha256.digest(p2));
        assert_eq!(
            composite(
                Algorithm::Sha256,
                [
                    sum(Algorithm::Sha256, p1).as_str(),
                    sum(Algorithm::Sha256, p2).as_str()
                ]
            ),
            Some(format!("{}-2", b64(&Algorithm::Sha256.digest(&both))))
        );
        assert_eq!(composite(Algorithm::Crc32, ["not base64!"]), None);
    }
}
