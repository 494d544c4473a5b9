//! ListObjects and ListObjectsV2.
//!
//! Keys are `prefix + subject + suffix + name`, where the object is stored
//! in the subject as `{bucket}/{name}`: a listing shows the objects of its
//! own bucket only ([`Bucket::key_of`]), never those another bucket (or the
//! command line) stored in the same subject. Names are only readable per
//! subject (they are sealed under the subject's data keys, and the catalog
//! keys them by a keyed hash), so a bucket's objects in a subject are found
//! by reading the subject's names once and keeping those in the bucket's
//! namespace; since they all share that prefix, name order is key order.
//! So:
//!
//! - a listing whose prefix lies within one subject's key prefix (such as
//!   `users/alice/photos/`) lists that subject alone: one catalog read of
//!   its objects, whatever the number of subjects;
//! - a listing above the subject level (such as `users/`) enumerates the
//!   subjects that hold data ([`Engine::subjects_with_objects`]: one pass
//!   over the placements, O(subjects with data) per page), sorts them by
//!   key prefix, and lists subject after subject from the continuation
//!   point until the page is full. Slower, but exact: the same keys, in the
//!   same order, as a flat listing would give.
//!
//! An empty `delimiter=` means no delimiter (rclone sends one). The
//! continuation token is the last key or common prefix returned, hex
//! encoded. Multipart parts in progress are never listed. Names stored
//! before buckets were namespaces are listed through the one bucket that
//! can have written them ([`legacy_owner`]), in key order among the
//! bucket's own; where a key has both, the namespaced object is listed.
//!
//! [`Engine::subjects_with_objects`]: domicile_engine::Engine::subjects_with_objects
//! [`Bucket::key_of`]: domicile_core::bucket::Bucket::key_of

use std::collections::BTreeMap;
use std::str::FromStr;

use domicile_core::bucket::Bucket;
use domicile_core::ids::SubjectId;
use domicile_engine::ObjectInfo;
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::S3Api;
use super::error::{from_engine, s3};
use super::keys::{UPLOAD_PREFIX, legacy_owner};
use super::object::{etag_of, timestamp};

/// Largest page, as in S3.
const MAX_KEYS: i32 = 1000;

/// One listing request, normalised.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Entries at or before this key (or common prefix) are skipped.
    pub after: Option<String>,
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub objects: Vec<(String, ObjectInfo)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last entry returned, when truncated.
    pub last: Option<String>,
}

/// Accumulates entries in key order, grouping by delimiter.
struct Collector<'q> {
    q: &'q Query,
    page: Page,
    last_entry: Option<String>,
}

enum Step {
    More,
    Full,
}

impl<'q> Collector<'q> {
    fn new(q: &'q Query) -> Self {
        Collector {
            q,
            page: Page::default(),
            last_entry: None,
        }
    }

    fn entries(&self) -> usize {
        self.page.objects.len() + self.page.prefixes.len()
    }

    /// Offers the next key (keys come in ascending order).
    fn offer(&mut self, key: String, info: ObjectInfo) -> Step {
        if !key.starts_with(&self.q.prefix) {
            return Step::More;
        }
        let group = self.q.delimiter.as_ref().and_then(|d| {
            key[self.q.prefix.len()..]
                .find(d.as_str())
                .map(|at| key[..self.q.prefix.len() + at + d.len()].to_string())
        });
        let entry = group.clone().unwrap_or_else(|| key.clone());
        if self
            .q
            .after
            .as_ref()
            .is_some_and(|a| entry.as_str() <= a.as_str())
        {
            return Step::More;
        }
        if group.is_some() && self.last_entry.as_ref() == Some(&entry) {
            return Step::More;
        }
        if self.entries() >= self.q.max_keys {
            self.page.truncated = true;
            return Step::Full;
        }
        self.last_entry = Some(entry.clone());
        match group {
            Some(p) => self.page.prefixes.push(p),
            None => self.page.objects.push((key, info)),
        }
        Step::More
    }

    fn finish(mut self) -> Page {
        if self.page.truncated {
            self.page.last = self.last_entry;
        }
        self.page
    }
}

/// The subject a prefix lies within, if it names one whole subject prefix.
fn single_subject(bucket: &Bucket, prefix: &str) -> Option<SubjectId> {
    let rest = prefix.strip_prefix(bucket.fixed_prefix())?;
    let slash = rest.find('/')?;
    let id = SubjectId::from_str(&rest[..slash]).ok()?;
    prefix
        .starts_with(&bucket.subject_prefix(&id))
        .then_some(id)
}

/// How a subject's object shows in a listing of a bucket.
#[derive(Debug, PartialEq, Eq)]
enum Listed {
    /// Stored in the bucket's namespace, under this key.
    Own(String),
    /// Stored before buckets were namespaces, by this bucket alone
    /// ([`legacy_owner`]): under this key, unless the namespaced name of
    /// the same key exists too.
    Legacy(String),
}

/// The key of a subject's object in a listing of `bucket`: none for other
/// buckets' objects, for the command line's and for multipart parts in
/// progress.
fn listed_key(
    buckets: &[Bucket],
    bucket: &Bucket,
    subject: &SubjectId,
    info: &ObjectInfo,
) -> Option<Listed> {
    match bucket.name_in_bucket(&info.name) {
        Some(name) if name.starts_with(UPLOAD_PREFIX) => None,
        Some(_) => bucket.key_of(subject, &info.name).map(Listed::Own),
        None => {
            let owner = legacy_owner(buckets, &info.name, &info.category)?;
            (owner.name == bucket.name)
                .then(|| Listed::Legacy(format!("{}{}", bucket.subject_prefix(subject), info.name)))
        }
    }
}

impl S3Api {
    /// The subjects whose keys in `bucket` may start with `prefix`, in key
    /// order: the one subject a prefix lies within, else every subject
    /// with data whose key prefix does.
    pub(crate) async fn listed_subjects(
        &self,
        op: &'static str,
        bucket: &Bucket,
        prefix: &str,
    ) -> S3Result<Vec<SubjectId>> {
        Ok(match single_subject(bucket, prefix) {
            Some(id) => vec![id],
            None => {
                let fixed = bucket.fixed_prefix();
                if !(prefix.starts_with(fixed) || fixed.starts_with(prefix)) {
                    return Ok(Vec::new());
                }
                let mut ids: Vec<(String, SubjectId)> = self
                    .engine
                    .subjects_with_objects()
                    .await
                    .map_err(|e| from_engine(op, e))?
                    .into_iter()
                    .map(|id| (bucket.subject_prefix(&id), id))
                    .filter(|(p, _)| p.starts_with(prefix))
                    .collect();
                // Every key of a subject starts with its prefix, and no
                // prefix is a prefix of another: prefix order is key order.
                ids.sort();
                ids.into_iter().map(|(_, id)| id).collect()
            }
        })
    }

    /// One page of the keys of a bucket.
    pub(crate) async fn list_page(
        &self,
        op: &'static str,
        bucket: &Bucket,
        q: &Query,
    ) -> S3Result<Page> {
        let mut c = Collector::new(q);
        if q.max_keys == 0 {
            return Ok(c.finish());
        }
        let subjects = self.listed_subjects(op, bucket, &q.prefix).await?;
        for id in subjects {
            let sp = bucket.subject_prefix(&id);
            if let Some(after) = &q.after
                && sp.as_str() < after.as_str()
                && !after.starts_with(&sp)
            {
                // Every key of this subject sorts before the resume point.
                continue;
            }
            let objects = match self.engine.list(&id).await {
                Ok(o) => o,
                Err(domicile_engine::Error::NotRegistered) => continue,
                Err(e) => return Err(from_engine(op, e)),
            };
            let buckets = &self.engine.file_config().buckets;
            // Old names interleave with namespaced ones: order by key, the
            // namespaced object winning where a key has both.
            let mut keyed: BTreeMap<String, ObjectInfo> = BTreeMap::new();
            for info in objects {
                match listed_key(buckets, bucket, &id, &info) {
                    Some(Listed::Own(key)) => {
                        keyed.insert(key, info);
                    }
                    Some(Listed::Legacy(key)) => {
                        keyed.entry(key).or_insert(info);
                    }
                    None => {}
                }
            }
            for (key, info) in keyed {
                if let Step::Full = c.offer(key, info) {
                    return Ok(c.finish());
                }
            }
        }
        Ok(c.finish())
    }

    pub(crate) async fn list_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let token = input
            .continuation_token
            .as_deref()
            .map(decode_token)
            .transpose()?;
        let after = match (token, input.start_after.clone()) {
            (Some(t), Some(s)) => Some(t.max(s)),
            (t, s) => t.or(s),
        };
        let q = query(
            input.prefix.clone(),
            input.delimiter.clone(),
            after,
            input.max_keys,
        )?;
        let page = self.list_page("ListObjectsV2", bucket, &q).await?;
        let url = encode_urls(input.encoding_type.as_ref());
        let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
        let key_count = (page.objects.len() + page.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(&q.prefix)),
            delimiter: q.delimiter.as_deref().map(enc),
            max_keys: Some(q.max_keys as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: input.start_after.as_deref().map(enc),
            is_truncated: Some(page.truncated),
            next_continuation_token: page.last.as_deref().map(|l| hex::encode(l.as_bytes())),
            contents: Some(objects(&page, &enc, input.fetch_owner.unwrap_or(false))),
            common_prefixes: Some(prefixes(&page, &enc)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(crate) async fn list_v1(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let q = query(
            input.prefix.clone(),
            input.delimiter.clone(),
            input.marker.clone().filter(|m| !m.is_empty()),
            input.max_keys,
        )?;
        let page = self.list_page("ListObjects", bucket, &q).await?;
        let url = encode_urls(input.encoding_type.as_ref());
        let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(&q.prefix)),
            delimiter: q.delimiter.as_deref().map(enc),
            marker: Some(input.marker.as_deref().map(enc).unwrap_or_default()),
            max_keys: Some(q.max_keys as i32),
            is_truncated: Some(page.truncated),
            // Given with or without a delimiter: clients need not guess.
            next_marker: page.last.as_deref().map(enc),
            contents: Some(objects(&page, &enc, true)),
            common_prefixes: Some(prefixes(&page, &enc)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

fn query(
    prefix: Option<String>,
    delimiter: Option<String>,
    after: Option<String>,
    max_keys: Option<i32>,
) -> S3Result<Query> {
    let max_keys = match max_keys {
        None => MAX_KEYS,
        Some(n) if n < 0 => {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                "max-keys must not be negative",
            ));
        }
        Some(n) => n.min(MAX_KEYS),
    };
    Ok(Query {
        prefix: prefix.unwrap_or_default(),
        delimiter: delimiter.filter(|d| !d.is_empty()),
        after,
        max_keys: max_keys as usize,
    })
}

fn decode_token(t: &str) -> S3Result<String> {
    hex::decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidArgument,
                "the continuation token provided is incorrect",
            )
        })
}

fn encode_urls(e: Option<&EncodingType>) -> bool {
    e.is_some_and(|e| e.as_str() == EncodingType::URL)
}

/// Percent-encodes all but unreserved characters and `/`, as S3 does for
/// `encoding-type=url`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The owner of every object: the deployment (there are no accounts).
pub(crate) fn owner() -> Owner {
    Owner {
        display_name: Some("domicile".into()),
        id: Some("domicile".into()),
    }
}

/// A page's objects; with their owner when asked (ListObjectsV2's
/// `fetch-owner`; ListObjects always gives it, as S3 does).
fn objects(page: &Page, enc: &dyn Fn(&str) -> String, with_owner: bool) -> Vec<Object> {
    page.objects
        .iter()
        .map(|(key, info)| Object {
            key: Some(enc(key)),
            owner: with_owner.then(owner),
            size: Some(info.size as i64),
            e_tag: Some(etag_of(info)),
            last_modified: Some(timestamp(info.modified_at)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect()
}

fn prefixes(page: &Page, enc: &dyn Fn(&str) -> String) -> Vec<CommonPrefix> {
    page.prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc(p)),
        })
        .collect()
}

#[doc(hidden)]
pub(super) mod fuzzing;

#[cfg(test)]
mod tests {
    use domicile_engine::ObjectMeta;

    use super::*;

    fn info(name: &str) -> ObjectInfo {
        ObjectInfo {
            name: name.into(),
            category: "profile".into(),
            size: 1,
            version: 1,
            modified_at: 0,
            checksum: "c".into(),
            meta: ObjectMeta::default(),
            parts: Vec::new(),
        }
    }

    fn run(keys: &[&str], q: &Query) -> Page {
        let mut c = Collector::new(q);
        for k in keys {
            if let Step::Full = c.offer(k.to_string(), info(k)) {
                break;
            }
        }
        c.finish()
    }

    fn q(prefix: &str, delimiter: Option<&str>, after: Option<&str>, max: usize) -> Query {
        Query {
            prefix: prefix.into(),
            delimiter: delimiter.map(str::to_string),
            after: after.map(str::to_string),
            max_keys: max,
        }
    }

    const KEYS: &[&str] = &["u/a/1", "u/a/d/2", "u/a/d/3", "u/a/e/4", "u/b/5"];

    #[test]
    fn groups_by_delimiter_and_pages() {
        let p = run(KEYS, &q("u/a/", Some("/"), None, 10));
        let keys: Vec<_> = p.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["u/a/1"]);
        assert_eq!(p.prefixes, ["u/a/d/", "u/a/e/"]);
        assert!(!p.truncated);

        let p = run(KEYS, &q("u/a/", Some("/"), None, 2));
        assert!(p.truncated);
        assert_eq!(p.last.as_deref(), Some("u/a/d/"));
        let p = run(KEYS, &q("u/a/", Some("/"), Some("u/a/d/"), 2));
        assert_eq!(p.prefixes, ["u/a/e/"]);
        assert!(!p.truncated);
    }

    #[test]
    fn pages_through_every_key_exactly_once() {
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let p = run(KEYS, &q("", None, after.as_deref(), 2));
            seen.extend(p.objects.iter().map(|(k, _)| k.clone()));
            if !p.truncated {
                break;
            }
            after = p.last;
        }
        assert_eq!(seen, KEYS);
    }

    #[test]
    fn empty_delimiter_is_none() {
        let q = query(None, Some(String::new()), None, None).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(q.delimiter.is_none());
        assert_eq!(q.max_keys, 1000);
    }

    #[test]
    fn lists_its_own_bucket_only() {
        let cat =
            |s: &str| domicile_core::ids::Category::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        let bucket = |name: &str| {
            Bucket::new(name, "users/{subject}/", cat("profile"), vec![])
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (a, b) = (bucket("user-data"), bucket("archive"));
        let both = [a.clone(), b.clone()];
        let u1 = SubjectId::from_str("u1").unwrap_or_else(|e| panic!("{e}"));
        let key = |bk: &Bucket, name: &str| listed_key(&both, bk, &u1, &info(name));
        let own = |k: &str| Some(Listed::Own(k.into()));
        assert_eq!(key(&a, "user-data/x"), own("users/u1/x"));
        assert_eq!(key(&b, "user-data/x"), None);
        assert_eq!(key(&b, "archive/d/y"), own("users/u1/d/y"));
        // Names without a bucket that both buckets could have written (the
        // same category): in neither. Parts in progress are hidden.
        assert_eq!(key(&a, "x"), None);
        assert_eq!(key(&b, "x"), None);
        assert_eq!(key(&a, "user-data2/x"), None);
        assert_eq!(key(&a, "user-data/.domicile-mpu/0123/00001"), None);
        assert_eq!(key(&a, ".domicile-mpu/0123/00001"), None);
        // With one bucket alone able to write it, an old name is that
        // bucket's.
        let one = [a.clone()];
        assert_eq!(
            listed_key(&one, &a, &u1, &info("x")),
            Some(Listed::Legacy("users/u1/x".into()))
        );
        assert_eq!(listed_key(&one, &b, &u1, &info("x")), None);
    }

    #[test]
    fn url_encoding_keeps_slashes() {
        assert_eq!(url_encode("a b/ü+"), "a%20b/%C3%BC%2B");
    }
}
