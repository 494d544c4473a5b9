//! The catalog's schema versions. Each dialect has one SQL file per version
//! (`schema/{sqlite,postgres}/000N_*.sql`): the same tables, in its own
//! types. Applied migrations are never edited: a change is a new file in
//! each dialect's folder and a new name here.

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The names of the schema versions, oldest first: version N is entry N − 1.
const VERSIONS: [&str; 10] = [
    "init",
    "subject id sealed",
    "migration jobs",
    "unit claim order",
    "garbage by blob",
    "policy versions",
    "ledger actor",
    "garbage retries",
    "ledger checkpoints",
    "migration runs",
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = VERSIONS.len() as i64;

/// The migrator of one dialect, from its SQL file of each version.
pub(crate) fn migrator(files: [&'static str; VERSIONS.len()]) -> Migrator {
    Migrator::with_migrations(
        (1_i64..)
            .zip(VERSIONS)
            .zip(files)
            .map(|((version, name), sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}
