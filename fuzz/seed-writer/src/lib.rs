//! What the fuzz targets and their seeds must agree on: the data key and
//! blob names the store's seeds are written with, and the deployment's
//! credentials that the request seeds carry.

/// The data key of the blob and sealed-value seeds.
pub const KEY: [u8; 32] = [7; 32];
/// The subject token and blob id of the blob seeds.
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
pub const BLOB_ID: &str = "0123456789abcdef0123456789abcdef";
/// The lookup hash the name and metadata seeds are bound to.
pub const LOOKUP: &str = "6c6f6f6b7570";

/// The in-process deployment's S3 credential and REST tokens.
pub const ACCESS_KEY: &str = "AKDOMICILEFUZZ";
pub const SECRET_KEY: &str = "fuzz-secret-key";
pub const ADMIN_TOKEN: &str = "fuzz-admin-token";
pub const AUDITOR_TOKEN: &str = "fuzz-auditor-token";

/// The config the in-process deployment runs, and a seed of the policy.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../examples/domicile.toml");
