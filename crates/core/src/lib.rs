//! The pure domain of domicile: everything that decides *where* data may
//! live and *who can reach it*, with no I/O and no async, so that it can be
//! explained and property-tested alone.
//!
//! - [`jurisdiction`]: ISO 3166-1 alpha-2 codes and the EU/EEA groups.
//! - [`ids`]: identifier newtypes that carry their own validity.
//! - [`config`]: the TOML config, parsed with spans and validated once;
//!   errors are `FILE:LINE:COL: message`.
//! - [`topology`]: operator, regions and custodians.
//! - [`policy`]: rules → what a (home, category) requires.
//! - [`placement`]: sticky rendezvous placement of copies.
//! - [`exposure`]: legal reach over copies and keys, and the grounds to
//!   cite for it.
//! - [`presets`]: built-in reach rule sets grounded in cited laws.
//! - [`cost`]: storage and egress prices.
//! - [`plan`]: a streaming diff of current placements against a policy.
//! - [`duration`]: how long a plan's moves would take, from measured (or
//!   stated, assumed) copy rates.
//! - [`diff`]: what a policy change means, per (home, category).
//! - [`bucket`]: S3 keys → subject, category and object name.

pub mod bucket;
pub mod config;
pub mod cost;
pub mod diff;
pub mod duration;
pub mod exposure;
pub mod ids;
pub mod jurisdiction;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod presets;
pub mod topology;

pub use config::{Config, ConfigError};
pub use ids::{Category, CustodianId, ObjectKey, RegionId, SubjectId};
pub use jurisdiction::Jurisdiction;
