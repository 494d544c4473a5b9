//! What the fuzz targets (`fuzz/`) reach inside the S3 API: the key
//! mapping with the S3 codes it answers, and the continuation token with
//! the paging it resumes. Not an API: hidden from the docs and free to
//! change with the modules it exposes.

use domicile_core::bucket::{Bucket, MappedKey};

pub use super::list::fuzzing::{ListPage, decode_token, encode_token, page};

/// A key mapped through a bucket as every S3 operation maps it, or the S3
/// error code it is refused with.
pub fn map_key(bucket: &Bucket, key: &str) -> Result<MappedKey, String> {
    super::keys::map_key(bucket, key).map_err(|e| e.code().as_str().to_string())
}
