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
//! Column lists live in [`crate::raw`], shared by both backends, whose
//! schemas are at the same version.
//!
//! The source must not change during the copy: stop every server and worker
//! first. The copy checks this afterwards: the row counts of source and
//! target must match table by table, and the target's ledger must verify
//! with the source's head.

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::ledger::ChainVerifier;
use crate::raw::{RawRow, RawTable};

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
