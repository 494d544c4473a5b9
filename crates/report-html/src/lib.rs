//! domicile's reports as one self-contained HTML document each: inline SVG
//! charts generated here (no script, no font, no fetch of any kind), the
//! CSS in the page, tables with the same numbers as the charts, and a
//! layout that prints as A4. Plain string building; the same data gives
//! the same bytes. The command line (`--format html`) renders whole
//! documents; the web console (`domicile-server`'s `ui`) places the same
//! sections in its pages as fragments. It knows nothing of either.
//!
//! - [`text`]: escaping of every string, coordinates that are always
//!   finite, bytes, money and times as the tables print them.
//! - [`svg`]: the charts: flow diagram, heat map, bars.
//! - [`flows`]: stored data per (home, region), now and after a plan's
//!   moves.
//! - [`page`]: the document around the charts: header (policy version and
//!   digest, time), sections, tables, the CSS.
//! - [`report`]: the documents: the present (residency, exposure, cost,
//!   violations) and a plan (before and after), whole or as fragments.

pub mod flows;
pub mod page;
pub mod report;
pub mod svg;
pub mod text;

pub use flows::Flows;
pub use page::Meta;
pub use report::{Focus, PlanView, Present, plan, plan_fragment, present, present_fragment};
