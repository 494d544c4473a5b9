//! Rows to model types, and the text encodings of the columns that hold
//! structure (placement states, region lists).

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Sql};
use crate::error::{Error, Result};
use crate::jobs::{JobRow, JobState, UnitRow, UnitState};
use crate::model::{
    GarbageRow, LedgerEntry, ObjectRow, PlacementRow, PlacementState, PlacementSummary, SubjectRow,
};

/// The subject columns, in the order [`Sql::subject_from`] reads them.
pub(crate) const SUBJECT_COLS: &str = "token, home, created_at, id_enc";

/// The object columns, in the order [`Sql::object_from`] reads them.
pub(crate) const OBJECT_COLS: &str = "token, lookup, category, name_enc, meta_enc, version, size, \
     stored_size, checksum, blob_id, modified_at";

/// The placement columns, in the order [`Sql::placement_from`] reads them.
/// `regions` repeats, in order, what `placement_regions` holds (every write
/// changes both in one transaction), so one row is the whole placement.
pub(crate) const PLACEMENT_COLS: &str =
    "token, category, regions, epoch, state, custodian, wrapped_key, objects, bytes, since";

/// The columns of a placement summary, in the order [`Sql::summary_from`]
/// reads them.
pub(crate) const SUMMARY_COLS: &str =
    "token, home, category, custodian, epoch, objects, bytes, regions";

/// The garbage columns, in the order [`Sql::garbage_from`] reads them.
pub(crate) const GARBAGE_COLS: &str = "id, token, category, blob_id, regions, queued_at";

/// The ledger columns, in the order [`Sql::entry_from`] reads them.
pub(crate) const LEDGER_COLS: &str = "seq, at, kind, subject, body, prev_hash, hash";

/// The job columns, in the order [`Sql::job_from`] reads them.
pub(crate) const JOB_COLS: &str =
    "id, state, created_at, finished_at, policy, rate, grace_ms, units, bytes";

/// The unit columns, in the order [`Sql::unit_from`] reads them.
pub(crate) const UNIT_COLS: &str = "job, token, category, priority, from_regions, to_regions, \
     custodian_from, custodian_to, objects, bytes, state, attempts, lease_owner, lease_until, \
     purge_after, moved_bytes, error, updated_at";

pub(crate) fn encode_state(state: &PlacementState) -> Result<String> {
    serde_json::to_string(state).map_err(|e| Error::Corrupt {
        reason: format!("placement state does not encode: {e}"),
    })
}

pub(crate) fn decode_state(text: &str) -> Result<PlacementState> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        reason: format!("placement state {text:?}: {e}"),
    })
}

/// A garbage row's regions, as JSON.
pub(crate) fn encode_regions(regions: &[String]) -> Result<String> {
    serde_json::to_string(regions).map_err(|e| Error::Corrupt {
        reason: format!("regions do not encode: {e}"),
    })
}

fn decode_regions(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        reason: format!("garbage regions {text:?}: {e}"),
    })
}

/// A comma-separated list (region ids hold no comma).
pub(crate) fn split_list(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').map(str::to_string).collect()
    }
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        reason: format!("unknown {what} in the migration tables"),
    }
}

pub(crate) fn unit_state(text: &str) -> Result<UnitState> {
    UnitState::parse(text).ok_or_else(|| corrupt("unit state"))
}

impl<D> Sql<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    for<'a> i64: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> Option<i64>: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> bool: Decode<'a, D> + Type<D>,
    for<'a> &'a str: Encode<'a, D> + Type<D> + ColumnIndex<D::Row>,
    for<'a> Option<&'a str>: Encode<'a, D> + Type<D>,
    for<'a> String: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> Option<String>: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> &'a [u8]: Encode<'a, D> + Type<D>,
    for<'a> Option<&'a [u8]>: Encode<'a, D> + Type<D>,
    for<'a> Vec<u8>: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> Option<Vec<u8>>: Encode<'a, D> + Decode<'a, D> + Type<D>,
    usize: ColumnIndex<D::Row>,
{
    pub(crate) fn subject_from(r: &D::Row) -> Result<SubjectRow> {
        Ok(SubjectRow {
            token: r.try_get(0)?,
            home: r.try_get(1)?,
            created_at: r.try_get(2)?,
            id_enc: r.try_get(3)?,
        })
    }

    pub(crate) fn placement_from(r: &D::Row) -> Result<PlacementRow> {
        let regions: String = r.try_get(2)?;
        let state: String = r.try_get(4)?;
        Ok(PlacementRow {
            token: r.try_get(0)?,
            category: r.try_get(1)?,
            regions: split_list(&regions),
            epoch: r.try_get(3)?,
            state: decode_state(&state)?,
            custodian: r.try_get(5)?,
            wrapped_key: r.try_get(6)?,
            objects: r.try_get(7)?,
            bytes: r.try_get(8)?,
            since: r.try_get(9)?,
        })
    }

    pub(crate) fn summary_from(r: &D::Row) -> Result<PlacementSummary> {
        let regions: String = r.try_get(7)?;
        Ok(PlacementSummary {
            token: r.try_get(0)?,
            home: r.try_get(1)?,
            category: r.try_get(2)?,
            custodian: r.try_get(3)?,
            epoch: r.try_get(4)?,
            objects: r.try_get(5)?,
            bytes: r.try_get(6)?,
            regions: split_list(&regions),
        })
    }

    pub(crate) fn object_from(r: &D::Row) -> Result<ObjectRow> {
        Ok(ObjectRow {
            token: r.try_get(0)?,
            lookup: r.try_get(1)?,
            category: r.try_get(2)?,
            name_enc: r.try_get(3)?,
            meta_enc: r.try_get(4)?,
            version: r.try_get(5)?,
            size: r.try_get(6)?,
            stored_size: r.try_get(7)?,
            checksum: r.try_get(8)?,
            blob_id: r.try_get(9)?,
            modified_at: r.try_get(10)?,
        })
    }

    pub(crate) fn garbage_from(r: &D::Row) -> Result<GarbageRow> {
        let regions: String = r.try_get(4)?;
        Ok(GarbageRow {
            id: r.try_get(0)?,
            token: r.try_get(1)?,
            category: r.try_get(2)?,
            blob_id: r.try_get(3)?,
            regions: decode_regions(&regions)?,
            queued_at: r.try_get(5)?,
        })
    }

    pub(crate) fn entry_from(r: &D::Row) -> Result<LedgerEntry> {
        Ok(LedgerEntry {
            seq: r.try_get(0)?,
            at: r.try_get(1)?,
            kind: r.try_get(2)?,
            subject: r.try_get(3)?,
            body: r.try_get(4)?,
            prev_hash: r.try_get(5)?,
            hash: r.try_get(6)?,
        })
    }

    pub(crate) fn job_from(r: &D::Row) -> Result<JobRow> {
        let state: String = r.try_get(1)?;
        Ok(JobRow {
            id: r.try_get(0)?,
            state: JobState::parse(&state).ok_or_else(|| corrupt("job state"))?,
            created_at: r.try_get(2)?,
            finished_at: r.try_get(3)?,
            policy: r.try_get(4)?,
            rate: r.try_get(5)?,
            grace_ms: r.try_get(6)?,
            units: r.try_get(7)?,
            bytes: r.try_get(8)?,
        })
    }

    pub(crate) fn unit_from(r: &D::Row) -> Result<UnitRow> {
        let from: String = r.try_get(4)?;
        let to: String = r.try_get(5)?;
        let state: String = r.try_get(10)?;
        Ok(UnitRow {
            job: r.try_get(0)?,
            token: r.try_get(1)?,
            category: r.try_get(2)?,
            priority: r.try_get(3)?,
            from: split_list(&from),
            to: split_list(&to),
            custodian_from: r.try_get(6)?,
            custodian_to: r.try_get(7)?,
            objects: r.try_get(8)?,
            bytes: r.try_get(9)?,
            state: unit_state(&state)?,
            attempts: r.try_get(11)?,
            lease_owner: r.try_get(12)?,
            lease_until: r.try_get(13)?,
            purge_after: r.try_get(14)?,
            moved_bytes: r.try_get(15)?,
            error: r.try_get(16)?,
            updated_at: r.try_get(17)?,
        })
    }
}
