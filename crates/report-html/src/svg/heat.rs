//! A heat map of exposure: one row per authority, one column per home,
//! each cell shaded by the share of the home's subjects that the authority
//! could compel at one level (plaintext or ciphertext), and labelled with
//! their number. A legend explains the shades.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use domicile_core::plan::ExposureRow;

use super::{no_data, open};
use crate::text::{esc, num};

/// Which reach a map shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A copy and its key: the authority could read the data.
    Plaintext,
    /// A copy alone: the authority could take encrypted bytes only.
    Ciphertext,
}

impl Reach {
    pub fn name(self) -> &'static str {
        match self {
            Reach::Plaintext => "plaintext",
            Reach::Ciphertext => "ciphertext",
        }
    }

    fn tone(self) -> &'static str {
        match self {
            Reach::Plaintext => "#c0392b",
            Reach::Ciphertext => "#2e6da4",
        }
    }

    fn of(self, r: &ExposureRow) -> u64 {
        match self {
            Reach::Plaintext => r.plaintext_subjects,
            Reach::Ciphertext => r.ciphertext_subjects,
        }
    }
}

/// The rows and columns of a set of maps, shared so that maps drawn side by
/// side (before and after, plaintext and ciphertext) line up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Axes {
    pub authorities: Vec<String>,
    pub homes: Vec<String>,
}

impl Axes {
    /// Every authority and home of `rows`, in alphabetical order.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a ExposureRow>) -> Axes {
        let mut a = BTreeSet::new();
        let mut h = BTreeSet::new();
        for r in rows {
            a.insert(r.authority.to_string());
            h.insert(r.home.to_string());
        }
        Axes {
            authorities: a.into_iter().collect(),
            homes: h.into_iter().collect(),
        }
    }
}

const LABEL_W: f64 = 64.0;
const HEAD_H: f64 = 40.0;
const CELL_W: f64 = 64.0;
const CELL_H: f64 = 30.0;
const LEGEND_H: f64 = 44.0;

/// The shade of a cell whose `share` of the home's subjects is reached.
fn opacity(share: f64) -> f64 {
    if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The map of `reach` over `rows`, laid out on `axes`. A cell absent from
/// `rows` counts as nobody reached.
pub fn heat_svg(title: &str, axes: &Axes, rows: &[ExposureRow], reach: Reach) -> String {
    if axes.authorities.is_empty() || axes.homes.is_empty() {
        return no_data(
            "chart heat",
            title,
            "No exposure to show: no subject holds data.",
        );
    }
    let cols = axes.homes.len() as f64;
    let width = (LABEL_W + CELL_W * cols + 8.0).max(340.0);
    let grid_h = CELL_H * axes.authorities.len() as f64;
    let height = HEAD_H + grid_h + LEGEND_H;
    let by_cell: BTreeMap<(String, String), &ExposureRow> = rows
        .iter()
        .map(|r| ((r.authority.to_string(), r.home.to_string()), r))
        .collect();
    let mut out = String::new();
    open(
        &mut out,
        &format!("chart heat {}", reach.name()),
        title,
        width,
        height,
    );
    let _ = write!(
        out,
        r#"<text class="head" x="4" y="14">{} reach</text><text class="axis" x="{}" y="14" text-anchor="end">home →</text><text class="axis" x="4" y="{}">authority ↓</text>"#,
        esc(reach.name()),
        num(width - 4.0),
        num(HEAD_H - 6.0),
    );
    for (j, home) in axes.homes.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text class="col" x="{}" y="{}" text-anchor="middle">{}</text>"#,
            num(LABEL_W + CELL_W * (j as f64 + 0.5)),
            num(HEAD_H - 6.0),
            esc(home)
        );
    }
    for (i, authority) in axes.authorities.iter().enumerate() {
        let y = HEAD_H + CELL_H * i as f64;
        let _ = write!(
            out,
            r#"<text class="row" x="{}" y="{}" text-anchor="end">{}</text>"#,
            num(LABEL_W - 8.0),
            num(y + CELL_H / 2.0 + 4.0),
            esc(authority)
        );
        for (j, home) in axes.homes.iter().enumerate() {
            let x = LABEL_W + CELL_W * j as f64;
            let row = by_cell.get(&(authority.clone(), home.clone()));
            let (n, of) = row.map(|r| (reach.of(r), r.subjects)).unwrap_or((0, 0));
            let share = if of == 0 { 0.0 } else { n as f64 / of as f64 };
            let o = opacity(share);
            let ink = if o > 0.55 { "on-dark" } else { "on-light" };
            let _ = write!(
                out,
                r##"<g class="cell" data-authority="{a}" data-home="{h}" data-value="{n}"><rect x="{x}" y="{y}" width="{w}" height="{hh}" fill="{tone}" fill-opacity="{o}" stroke="#999" stroke-width="0.5"/><text class="{ink}" x="{tx}" y="{ty}" text-anchor="middle">{n}</text><title>{a} over {h}: {n} of {of} subjects in {r}</title></g>"##,
                a = esc(authority),
                h = esc(home),
                x = num(x),
                y = num(y),
                w = num(CELL_W),
                hh = num(CELL_H),
                tone = reach.tone(),
                o = num(o),
                tx = num(x + CELL_W / 2.0),
                ty = num(y + CELL_H / 2.0 + 4.0),
                r = reach.name(),
            );
        }
    }
    // Legend: five shades, from nobody to every subject of the home.
    let ly = HEAD_H + grid_h + 12.0;
    let _ = write!(
        out,
        r#"<g class="legend"><text x="4" y="{}">share of the home&#39;s subjects:</text>"#,
        num(ly + 12.0)
    );
    for (k, share) in [0.0, 0.25, 0.5, 0.75, 1.0].iter().enumerate() {
        let x = 176.0 + 26.0 * k as f64;
        let _ = write!(
            out,
            r##"<rect x="{x}" y="{y}" width="22" height="14" fill="{tone}" fill-opacity="{o}" stroke="#999" stroke-width="0.5"/><text x="{tx}" y="{ty}" text-anchor="middle" class="small">{p}%</text>"##,
            x = num(x),
            y = num(ly),
            tone = reach.tone(),
            o = num(*share),
            tx = num(x + 11.0),
            ty = num(ly + 26.0),
            p = (share * 100.0) as u32,
        );
    }
    out.push_str("</g></svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(a: &str, h: &str, subjects: u64, plain: u64, cipher: u64) -> ExposureRow {
        ExposureRow {
            authority: a.parse().unwrap_or_else(|_| panic!("{a}")),
            home: h.parse().unwrap_or_else(|_| panic!("{h}")),
            subjects,
            plaintext_subjects: plain,
            ciphertext_subjects: cipher,
            grounds: vec![],
        }
    }

    fn cell<'a>(svg: &'a str, a: &str, h: &str) -> &'a str {
        let start = svg
            .find(&format!(r#"data-authority="{a}" data-home="{h}""#))
            .unwrap_or_else(|| panic!("no cell {a}×{h} in {svg}"));
        &svg[start..start + svg[start..].find("</g>").unwrap_or(0)]
    }

    #[test]
    fn plaintext_and_ciphertext_are_drawn_apart() {
        let rows = [
            row("CN", "IN", 30, 30, 0),
            row("US", "IN", 30, 0, 15),
            row("CN", "CN", 10, 10, 0),
        ];
        let axes = Axes::of(&rows);
        assert_eq!(axes.authorities, ["CN", "US"]);
        assert_eq!(axes.homes, ["CN", "IN"]);
        let plain = heat_svg("p", &axes, &rows, Reach::Plaintext);
        let cipher = heat_svg("c", &axes, &rows, Reach::Ciphertext);
        assert!(cell(&plain, "CN", "IN").contains(r#"data-value="30""#));
        assert!(cell(&plain, "CN", "IN").contains(r#"fill-opacity="1""#));
        assert!(cell(&plain, "US", "IN").contains(r#"fill-opacity="0""#));
        assert!(cell(&cipher, "US", "IN").contains(r#"data-value="15""#));
        assert!(cell(&cipher, "US", "IN").contains(r#"fill-opacity="0.5""#));
        // US has no row for home CN: nobody reached.
        assert!(cell(&plain, "US", "CN").contains(r#"data-value="0""#));
        assert!(plain.contains("plaintext reach") && cipher.contains("ciphertext reach"));
        assert!(plain.contains("share of the home&#39;s subjects"));
        assert!(plain.contains("<title>p</title>"));
    }

    #[test]
    fn empty_maps_say_so_and_never_divide_by_zero() {
        let none = heat_svg("t", &Axes::default(), &[], Reach::Plaintext);
        assert!(none.contains("No exposure"), "{none}");
        // A home with no subjects: shares of 0 of 0.
        let rows = [row("CN", "IN", 0, 0, 0)];
        let svg = heat_svg("t", &Axes::of(&rows), &rows, Reach::Ciphertext);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(cell(&svg, "CN", "IN").contains(r#"fill-opacity="0""#));
    }
}
