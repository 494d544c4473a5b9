//! The charts, as inline SVG strings: deterministic geometry (the same
//! data gives the same bytes), a `viewBox` and no fixed size (they scale
//! to the width of the page), a `<title>` and an `aria-label` each, and no
//! reference to anything outside the element.
//!
//! - [`flow`]: bands from home countries to storage regions (Sankey).
//! - [`heat`]: a heat map of authority × home.
//! - [`bars`]: grouped horizontal bars (cost before and after).

pub mod bars;
pub mod flow;
pub mod heat;

use std::fmt::Write;

use crate::text::{esc, num};

/// Colours of series and nodes, in order; they print on white.
pub(crate) const PALETTE: [&str; 8] = [
    "#1f77b4", "#d95f02", "#2ca02c", "#7570b3", "#e7298a", "#8c564b", "#17becf", "#bcbd22",
];

/// About how wide `text` is drawn at the charts' font size, in user
/// units: enough to make room for labels (an estimate; there is no font
/// metrics without a renderer).
pub(crate) fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.6
}

pub(crate) fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// The opening of a chart `width` × `height` user units wide: an `<svg>`
/// that scales to its container, with `title` as its accessible name.
pub(crate) fn open(out: &mut String, class: &str, title: &str, width: f64, height: f64) {
    let _ = write!(
        out,
        r#"<svg class="{class}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" preserveAspectRatio="xMidYMin meet"><title>{t}</title>"#,
        class = esc(class),
        w = num(width),
        h = num(height),
        t = esc(title),
    );
}

/// A chart with nothing to draw: a frame that says so, the same size
/// whatever the data.
pub(crate) fn no_data(class: &str, title: &str, why: &str) -> String {
    let mut out = String::new();
    open(&mut out, class, title, 640.0, 80.0);
    let _ = write!(
        out,
        r##"<rect class="empty" x="1" y="1" width="638" height="78" rx="4" fill="none" stroke="#bbb" stroke-dasharray="4 3"/><text class="no-data" x="320" y="45" text-anchor="middle">{}</text></svg>"##,
        esc(why)
    );
    out
}
