//! The config file as written: serde structures that keep every value's
//! span, so that validation can point at the exact line and column.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub operator: S<RawOperator>,
    #[serde(default)]
    pub catalog: Option<S<RawCatalog>>,
    #[serde(default)]
    pub secrets: Option<S<RawSecrets>>,
    #[serde(default, rename = "region")]
    pub regions: Vec<S<RawRegion>>,
    #[serde(default, rename = "custodian")]
    pub custodians: Vec<S<RawCustodian>>,
    #[serde(default, rename = "bucket")]
    pub buckets: Vec<S<RawBucket>>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<S<RawRule>>,
    #[serde(default)]
    pub reach: Vec<S<RawReach>>,
    #[serde(default, rename = "credential")]
    pub credentials: Vec<S<super::access::RawCredential>>,
    #[serde(default, rename = "token")]
    pub tokens: Vec<S<super::access::RawToken>>,
    #[serde(default)]
    pub server: Option<S<super::server::RawServer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperator {
    pub name: S<String>,
    pub headquarters: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    pub url: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub file: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    pub id: S<String>,
    pub jurisdiction: S<String>,
    pub provider: S<String>,
    pub provider_headquarters: S<String>,
    pub store: S<String>,
    #[serde(default)]
    pub storage_price_gb_month: Option<S<f64>>,
    #[serde(default)]
    pub egress_price_gb: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustodian {
    pub id: S<String>,
    pub jurisdiction: S<String>,
    pub headquarters: S<String>,
    pub keyring: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    pub name: S<String>,
    pub subject: S<String>,
    pub category: S<String>,
    #[serde(default)]
    pub categories: Option<S<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: S<String>,
    #[serde(default)]
    pub homes: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub categories: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub allow: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub deny: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub copies: Option<S<i64>>,
    #[serde(default)]
    pub distinct_jurisdictions: Option<S<bool>>,
    #[serde(default)]
    pub require_in: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub custodian: Option<S<String>>,
    #[serde(default)]
    pub prefer: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReach {
    /// With `over`; with `preset`, narrows the preset's authorities.
    #[serde(default)]
    pub authority: Option<S<String>>,
    #[serde(default)]
    pub over: Option<S<String>>,
    /// A built-in rule set (`crate::presets`), instead of `over`.
    #[serde(default)]
    pub preset: Option<S<String>>,
}
