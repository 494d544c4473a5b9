//! The column lists of each table as the statements read them, and the
//! text encodings of the columns that hold structure (placement states,
//! region lists). The rows are decoded by [`Sql`](super::Sql), in
//! [`steps`](super::steps).

use crate::error::{Error, Result};
use crate::jobs::UnitState;
use crate::model::PlacementState;

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
pub(crate) const GARBAGE_COLS: &str =
    "id, token, category, blob_id, regions, queued_at, attempts, next_try";

/// The ledger columns, in the order [`Sql::entry_from`] reads them.
pub(crate) const LEDGER_COLS: &str = "seq, at, kind, subject, body, prev_hash, hash, actor";

/// The policy version columns, in the order [`Sql::policy_from`] reads them.
pub(crate) const POLICY_COLS: &str = "version, applied_at, actor, digest, text";

/// The checkpoint columns, in the order [`Sql::checkpoint_from`] reads them.
pub(crate) const CHECKPOINT_COLS: &str = "seq, hash, at, key_id, public_key, signature";

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

pub(crate) fn decode_regions(text: &str) -> Result<Vec<String>> {
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

pub(crate) fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        reason: format!("unknown {what} in the migration tables"),
    }
}

pub(crate) fn unit_state(text: &str) -> Result<UnitState> {
    UnitState::parse(text).ok_or_else(|| corrupt("unit state"))
}
