//! Where data can live and who holds the keys: the operator, its regions and
//! its key custodians, as the config declares them.

use crate::ids::{CustodianId, RegionId};
use crate::jurisdiction::Jurisdiction;

/// The company running domicile.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub name: String,
    pub headquarters: Jurisdiction,
}

/// One storage location.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub id: RegionId,
    pub jurisdiction: Jurisdiction,
    pub provider: String,
    pub provider_headquarters: Jurisdiction,
    /// Store URL, with relative `file://` paths already resolved.
    pub store: String,
    pub storage_price_gb_month: f64,
    pub egress_price_gb: f64,
}

/// Holds the key that wraps subjects' data keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Custodian {
    pub id: CustodianId,
    pub jurisdiction: Jurisdiction,
    pub headquarters: Jurisdiction,
    /// Keyring URL, with relative `file://` paths already resolved.
    pub keyring: String,
}

/// The operator, its regions (in config order) and its custodians.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub operator: Operator,
    pub regions: Vec<Region>,
    pub custodians: Vec<Custodian>,
}

impl Topology {
    pub fn region(&self, id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id.as_str() == id)
    }

    pub fn region_index(&self, id: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.id.as_str() == id)
    }

    pub fn custodian(&self, id: &str) -> Option<&Custodian> {
        self.custodians.iter().find(|c| c.id.as_str() == id)
    }
}
