//! Jurisdictions (ISO 3166-1 alpha-2) and the groups that expand to them.

use std::fmt;
use std::str::FromStr;

/// One country or territory, by its ISO 3166-1 alpha-2 code (`IN`, `CN`…).
///
/// Only assigned codes parse: an unknown code is an error, never a silent
/// new jurisdiction that no rule would match.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Jurisdiction([u8; 2]);

/// The EU member states.
pub const EU: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// The EEA: the EU plus Iceland, Liechtenstein and Norway.
pub const EEA_EXTRA: &[&str] = &["IS", "LI", "NO"];

/// Why a jurisdiction code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown jurisdiction {code:?}: expected an ISO 3166-1 alpha-2 code such as IN, CN, US, or a group (EU, EEA)"
)]
pub struct UnknownJurisdiction {
    pub code: String,
}

impl Jurisdiction {
    /// Every assigned ISO 3166-1 alpha-2 code, sorted.
    pub fn all() -> Vec<Jurisdiction> {
        let mut all: Vec<Jurisdiction> = celes::Country::get_countries()
            .iter()
            .filter_map(|c| Jurisdiction::from_str(c.alpha2).ok())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The two-letter code.
    pub fn code(&self) -> &str {
        // The bytes are validated ASCII letters at construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The country's English name.
    pub fn name(&self) -> &'static str {
        celes::Country::from_alpha2(self.code())
            .map(|c| c.long_name)
            .unwrap_or("")
    }
}

impl FromStr for Jurisdiction {
    type Err = UnknownJurisdiction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnknownJurisdiction {
            code: s.to_string(),
        };
        let b = s.as_bytes();
        if b.len() != 2 || !b.iter().all(|c| c.is_ascii_uppercase()) {
            return Err(err());
        }
        celes::Country::from_alpha2(s).map_err(|_| err())?;
        Ok(Jurisdiction([b[0], b[1]]))
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl serde::Serialize for Jurisdiction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Jurisdiction {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Z]{2}$"))
            .description(Some("ISO 3166-1 alpha-2 code."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Jurisdiction {}

/// A named group of jurisdictions, if `name` is one (`EU`, `EEA`).
pub fn group(name: &str) -> Option<Vec<Jurisdiction>> {
    let codes: Vec<&str> = match name {
        "EU" => EU.to_vec(),
        "EEA" => EU.iter().chain(EEA_EXTRA).copied().collect(),
        _ => return None,
    };
    codes
        .iter()
        .map(|c| Jurisdiction::from_str(c).ok())
        .collect()
}

/// Parses a list entry that may be a jurisdiction or a group into its members.
pub fn expand(code: &str) -> Result<Vec<Jurisdiction>, UnknownJurisdiction> {
    match group(code) {
        Some(members) => Ok(members),
        None => Ok(vec![code.parse()?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_codes_only() {
        assert_eq!(
            "IN".parse::<Jurisdiction>().map(|j| j.to_string()),
            Ok("IN".into())
        );
        assert!("XX".parse::<Jurisdiction>().is_err());
        assert!("in".parse::<Jurisdiction>().is_err());
        assert!("IND".parse::<Jurisdiction>().is_err());
        assert!("".parse::<Jurisdiction>().is_err());
    }

    #[test]
    fn all_has_every_assigned_code() {
        let all = Jurisdiction::all();
        assert!(all.len() >= 249, "{}", all.len());
        for code in ["IN", "CN", "SG", "US", "TW", "DE"] {
            assert!(all.iter().any(|j| j.code() == code), "{code}");
        }
    }

    #[test]
    fn groups_expand() {
        let eu = expand("EU").unwrap_or_default();
        assert_eq!(eu.len(), 27);
        let eea = expand("EEA").unwrap_or_default();
        assert_eq!(eea.len(), 30);
        assert!(expand("ZZ").is_err());
    }
}
