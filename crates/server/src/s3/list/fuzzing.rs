//! The continuation token and the paging it resumes, as ListObjects does
//! them, without an engine: for the fuzz targets (`fuzz/`) only.

use domicile_engine::{ObjectInfo, ObjectMeta};

use super::{Collector, Step, decode_token as decode, query};

/// One page of a listing, keys and common prefixes only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<String>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    pub last: Option<String>,
}

/// A continuation token as ListObjectsV2 reads it: the resume point, or
/// the S3 error code it is refused with.
pub fn decode_token(token: &str) -> Result<String, String> {
    decode(token).map_err(|e| e.code().as_str().to_string())
}

/// The continuation token ListObjectsV2 returns after `last`.
pub fn encode_token(last: &str) -> String {
    hex::encode(last.as_bytes())
}

/// One page of `keys` (ascending, as a subject's listing offers them) for
/// a request's prefix, delimiter, resume point and max-keys, as
/// `list_page` collects it; or the S3 error code of a refused request.
pub fn page(
    keys: &[String],
    prefix: Option<String>,
    delimiter: Option<String>,
    after: Option<String>,
    max_keys: Option<i32>,
) -> Result<ListPage, String> {
    let q = query(prefix, delimiter, after, max_keys).map_err(|e| e.code().as_str().to_string())?;
    let mut c = Collector::new(&q);
    if q.max_keys > 0 {
        for key in keys {
            if let Step::Full = c.offer(key.clone(), info(key)) {
                break;
            }
        }
    }
    let page = c.finish();
    Ok(ListPage {
        objects: page.objects.into_iter().map(|(k, _)| k).collect(),
        prefixes: page.prefixes,
        truncated: page.truncated,
        last: page.last,
    })
}

fn info(name: &str) -> ObjectInfo {
    ObjectInfo {
        name: name.into(),
        category: String::new(),
        size: 0,
        version: 1,
        modified_at: 0,
        checksum: String::new(),
        meta: ObjectMeta::default(),
        parts: Vec::new(),
    }
}
