//! Catalog migration: copying a whole catalog, row for row, into another
//! backend (for example an embedded SQLite catalog into PostgreSQL when a
//! deployment outgrows one machine).
//!
//! Every table is copied verbatim: subjects with their sealed ids,
//! placements with their wrapped keys, states and epochs, placement regions,
//! the object index, the garbage queue (with its ids), settings, migration
//! jobs and units, and the ledger with its own seqs and hashes, so that the
//! chain verifies in the target with the same head. Nothing is re-derived
//! and no ledger entry is appended for the copy itself.
//!
//! The backends expose the raw rows through three [`Catalog`] methods that
//! exist for catalog migration only ([`Catalog::raw_count`],
//! [`Catalog::raw_page`], [`Catalog::raw_insert`]) and one that ends an
//! import ([`Catalog::raw_finish`]: PostgreSQL moves its `ledger_head` to
//! the last copied entry and its identity sequences past the copied ids).
//! Column lists live here, in [`RawTable::columns`], shared by both
//! backends, whose schemas are at the same version.
//!
//! The source must not change during the copy: stop every server and worker
//! first. The copy checks this afterwards: the row counts of source and
//! target must match table by table, and the target's ledger must verify
//! with the source's head.

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::ledger::ChainVerifier;

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
}

use RawType::{Bytes, Int, Text};

impl RawTable {
    /// Every table, parents before children.
    pub const ALL: [RawTable; 9] = [
        RawTable::Subjects,
        RawTable::Placements,
        RawTable::PlacementRegions,
        RawTable::Objects,
        RawTable::Garbage,
        RawTable::Ledger,
        RawTable::Settings,
        RawTable::MigrationJobs,
        RawTable::MigrationUnits,
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
            ],
            RawTable::Ledger => &[
                ("seq", Int),
                ("at", Int),
                ("kind", Text),
                ("subject", Text),
                ("body", Text),
                ("prev_hash", Text),
                ("hash", Text),
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
            | RawTable::MigrationJobs => 1,
            RawTable::Placements | RawTable::Objects => 2,
            RawTable::PlacementRegions | RawTable::MigrationUnits => 3,
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

/// Rows of one table in source and target after a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub source: i64,
    pub target: i64,
}

/// What [`copy_catalog`] copied and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Per table, in copy order; source and target are equal.
    pub tables: Vec<TableCount>,
    /// Ledger entries verified in the target.
    pub ledger_entries: u64,
    /// The ledger's last seq and hash, the same in source and target.
    pub ledger_head: (i64, String),
}

/// Rows copied per page (and per insert transaction).
pub const PAGE: u32 = 500;

/// Copies every row of `from` into `to`, page by page, then checks the
/// copy: per-table row counts of both must match, and `to`'s ledger must
/// verify (hash by hash) up to the same head as `from`'s.
///
/// `to` must be empty (a fresh schema): otherwise this fails with
/// [`Error::NotEmpty`] and writes nothing. `progress` is called after each
/// page with the table and the rows copied of it so far.
///
/// Each page is inserted in its own transaction: a copy that fails half-way
/// leaves a partial target, to be dropped and created again.
pub async fn copy_catalog(
    from: &dyn Catalog,
    to: &dyn Catalog,
    mut progress: impl FnMut(RawTable, u64),
) -> Result<CopyReport> {
    for table in RawTable::ALL {
        let n = to.raw_count(table).await?;
        if n != 0 {
            return Err(Error::NotEmpty {
                table: table.name(),
                rows: n,
            });
        }
    }
    for table in RawTable::ALL {
        let mut after: Option<RawRow> = None;
        let mut copied = 0u64;
        loop {
            let rows = from.raw_page(table, after.as_deref(), PAGE).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last[..table.key_len()].to_vec());
            to.raw_insert(table, &rows).await?;
            copied += rows.len() as u64;
            progress(table, copied);
        }
    }
    to.raw_finish().await?;

    let mut tables = Vec::new();
    for table in RawTable::ALL {
        let source = from.raw_count(table).await?;
        let target = to.raw_count(table).await?;
        if source != target {
            return Err(Error::Conflict {
                reason: format!(
                    "table {} has {source} rows in the source but {target} in the target \
                     (did the source change during the copy?)",
                    table.name()
                ),
            });
        }
        tables.push(TableCount {
            table: table.name(),
            source,
            target,
        });
    }
    let source_head = verify_chain(from).await?;
    let target_head = verify_chain(to).await?;
    if source_head.1 != target_head.1 {
        return Err(Error::Conflict {
            reason: format!(
                "ledger head differs after the copy: source {:?}, target {:?}",
                source_head.1, target_head.1
            ),
        });
    }
    Ok(CopyReport {
        tables,
        ledger_entries: target_head.0,
        ledger_head: target_head.1,
    })
}

/// Verifies a catalog's whole ledger chain; returns the number of entries
/// and the head (seq, hash).
async fn verify_chain(cat: &dyn Catalog) -> Result<(u64, (i64, String))> {
    let mut v = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = cat.ledger_page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            v.push(e).map_err(|b| Error::Corrupt {
                reason: format!("ledger chain: {b}"),
            })?;
        }
    }
    Ok((v.count(), v.head()))
}
