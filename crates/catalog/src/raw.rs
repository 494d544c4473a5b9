//! Raw rows of the catalog's tables, as catalog migration moves them between
//! backends ([`crate::copy`]): the table list in foreign-key order, each
//! table's columns and their types, shared by every backend.

/// The type of a raw column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawType {
    Int,
    Text,
    Bytes,
}

/// One raw column value; `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// One raw row: its values in the order of [`RawTable::columns`].
pub type RawRow = Vec<RawValue>;

/// The catalog's tables, in an order that satisfies their foreign keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTable {
    Subjects,
    Placements,
    PlacementRegions,
    Objects,
    Garbage,
    Ledger,
    Settings,
    MigrationJobs,
    MigrationUnits,
    PolicyVersions,
    LedgerCheckpoints,
    MigrationRuns,
}

use RawType::{Bytes, Int, Text};

impl RawTable {
    /// Every table, parents before children.
    pub const ALL: [RawTable; 12] = [
        RawTable::Subjects,
        RawTable::Placements,
        RawTable::PlacementRegions,
        RawTable::Objects,
        RawTable::Garbage,
        RawTable::Ledger,
        RawTable::Settings,
        RawTable::MigrationJobs,
        RawTable::MigrationUnits,
        RawTable::PolicyVersions,
        RawTable::LedgerCheckpoints,
        RawTable::MigrationRuns,
    ];

    /// The table's SQL name.
    pub fn name(&self) -> &'static str {
        match self {
            RawTable::Subjects => "subjects",
            RawTable::Placements => "placements",
            RawTable::PlacementRegions => "placement_regions",
            RawTable::Objects => "objects",
            RawTable::Garbage => "garbage",
            RawTable::Ledger => "ledger",
            RawTable::Settings => "settings",
            RawTable::MigrationJobs => "migration_jobs",
            RawTable::MigrationUnits => "migration_units",
            RawTable::PolicyVersions => "policy_versions",
            RawTable::LedgerCheckpoints => "ledger_checkpoints",
            RawTable::MigrationRuns => "migration_runs",
        }
    }

    /// Every column, with its type, as both backends' schemas declare it.
    pub fn columns(&self) -> &'static [(&'static str, RawType)] {
        match self {
            RawTable::Subjects => &[
                ("token", Text),
                ("home", Text),
                ("created_at", Int),
                ("id_enc", Bytes),
            ],
            RawTable::Placements => &[
                ("token", Text),
                ("category", Text),
                ("home", Text),
                ("regions", Text),
                ("epoch", Int),
                ("state", Text),
                ("custodian", Text),
                ("wrapped_key", Bytes),
                ("objects", Int),
                ("bytes", Int),
                ("since", Int),
            ],
            RawTable::PlacementRegions => &[
                ("token", Text),
                ("category", Text),
                ("ordinal", Int),
                ("region", Text),
            ],
            RawTable::Objects => &[
                ("token", Text),
                ("lookup", Text),
                ("category", Text),
                ("name_enc", Bytes),
                ("meta_enc", Bytes),
                ("version", Int),
                ("size", Int),
                ("stored_size", Int),
                ("checksum", Text),
                ("blob_id", Text),
                ("modified_at", Int),
            ],
            RawTable::Garbage => &[
                ("id", Int),
                ("token", Text),
                ("category", Text),
                ("blob_id", Text),
                ("regions", Text),
                ("queued_at", Int),
                ("attempts", Int),
                ("next_try", Int),
            ],
            RawTable::Ledger => &[
                ("seq", Int),
                ("at", Int),
                ("kind", Text),
                ("subject", Text),
                ("body", Text),
                ("prev_hash", Text),
                ("hash", Text),
                ("actor", Text),
            ],
            RawTable::Settings => &[("key", Text), ("value", Text)],
            RawTable::MigrationJobs => &[
                ("id", Int),
                ("state", Text),
                ("created_at", Int),
                ("finished_at", Int),
                ("policy", Text),
                ("rate", Int),
                ("grace_ms", Int),
                ("units", Int),
                ("bytes", Int),
            ],
            RawTable::MigrationUnits => &[
                ("job", Int),
                ("token", Text),
                ("category", Text),
                ("priority", Int),
                ("from_regions", Text),
                ("to_regions", Text),
                ("custodian_from", Text),
                ("custodian_to", Text),
                ("objects", Int),
                ("bytes", Int),
                ("state", Text),
                ("attempts", Int),
                ("lease_owner", Text),
                ("lease_until", Int),
                ("purge_after", Int),
                ("moved_bytes", Int),
                ("error", Text),
                ("updated_at", Int),
            ],
            RawTable::PolicyVersions => &[
                ("version", Int),
                ("applied_at", Int),
                ("actor", Text),
                ("digest", Text),
                ("text", Text),
            ],
            RawTable::LedgerCheckpoints => &[
                ("seq", Int),
                ("key_id", Text),
                ("hash", Text),
                ("at", Int),
                ("public_key", Text),
                ("signature", Text),
            ],
            RawTable::MigrationRuns => &[
                ("job", Int),
                ("owner", Text),
                ("started_at", Int),
                ("finished_at", Int),
                ("units", Int),
                ("bytes", Int),
            ],
        }
    }

    /// How many leading columns form the primary key (pages are ordered by
    /// it, and resume after the last row's key).
    pub fn key_len(&self) -> usize {
        match self {
            RawTable::Subjects
            | RawTable::Garbage
            | RawTable::Ledger
            | RawTable::Settings
            | RawTable::MigrationJobs
            | RawTable::PolicyVersions => 1,
            RawTable::Placements | RawTable::Objects | RawTable::LedgerCheckpoints => 2,
            RawTable::PlacementRegions | RawTable::MigrationUnits | RawTable::MigrationRuns => 3,
        }
    }

    /// The comma-separated column list.
    pub fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns().iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }

    /// The comma-separated key column list.
    pub fn key_list(&self) -> String {
        let names: Vec<&str> = self.columns()[..self.key_len()]
            .iter()
            .map(|(n, _)| *n)
            .collect();
        names.join(", ")
    }
}
