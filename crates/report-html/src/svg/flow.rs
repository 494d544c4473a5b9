//! A flow diagram: nodes on the left (home countries) joined to nodes on
//! the right (storage regions) by bands whose thickness is proportional to
//! the value that flows (subjects or bytes). Each node is as tall as the sum
//! of its bands; one scale serves both columns, so the two add up alike.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{colour, no_data, open, text_width};
use crate::text::{Measure, esc, num};

/// One band: `value` from `from` to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub from: String,
    pub to: String,
    pub value: f64,
}

/// Width of the drawing, in user units, at the least (long labels widen
/// it).
pub const WIDTH: f64 = 640.0;
/// The horizontal run of the bands.
const SPAN: f64 = 300.0;
/// The height all the bands of the diagram share (gaps come on top).
pub const BAND_HEIGHT: f64 = 240.0;
const TOP: f64 = 34.0;
const GAP: f64 = 8.0;
const NODE: f64 = 10.0;

struct Node {
    name: String,
    value: f64,
    y: f64,
    h: f64,
}

/// Sums per node name, heaviest first (then by name), and lays them out
/// top to bottom.
fn column(flows: &[&Flow], key: impl Fn(&Flow) -> &str, scale: f64) -> Vec<Node> {
    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for f in flows {
        *sums.entry(key(f)).or_default() += f.value;
    }
    let mut nodes: Vec<(&str, f64)> = sums.into_iter().collect();
    nodes.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut y = TOP;
    nodes
        .into_iter()
        .map(|(name, value)| {
            let h = value * scale;
            let n = Node {
                name: name.to_string(),
                value,
                y,
                h,
            };
            y += h + GAP;
            n
        })
        .collect()
}

/// The flow diagram of `flows`, titled `title`; `left` and `right` head
/// the two columns. Flows that are not finite and positive are left out;
/// when none is left, a "no data" chart.
pub fn flow_svg(title: &str, left: &str, right: &str, measure: Measure, flows: &[Flow]) -> String {
    let flows: Vec<&Flow> = flows
        .iter()
        .filter(|f| f.value.is_finite() && f.value > 0.0)
        .collect();
    let total: f64 = flows.iter().map(|f| f.value).sum();
    if flows.is_empty() || !total.is_finite() || total <= 0.0 {
        return no_data("chart flow", title, "No data stored: nothing flows.");
    }
    let scale = BAND_HEIGHT / total;
    let lefts = column(&flows, |f| &f.from, scale);
    let rights = column(&flows, |f| &f.to, scale);
    let index = |nodes: &[Node], name: &str| nodes.iter().position(|n| n.name == name);
    let rows = lefts.len().max(rights.len()) as f64;
    let height = TOP + BAND_HEIGHT + GAP * (rows - 1.0) + 16.0;
    // Room for the labels: "name value" beside each node.
    let label = |n: &Node| text_width(&n.name) + text_width(&measure.show(n.value)) + 8.0;
    let left_w = lefts.iter().map(label).fold(40.0, f64::max);
    let right_w = rights.iter().map(label).fold(40.0, f64::max);
    let left_x = (left_w + 10.0)
        .max(WIDTH - SPAN - 2.0 * NODE - right_w - 16.0)
        .max(60.0);
    let right_x = left_x + NODE + SPAN;
    let width = (right_x + NODE + right_w + 16.0).max(WIDTH);

    let mut out = String::new();
    open(&mut out, "chart flow", title, width, height);
    let _ = write!(
        out,
        r#"<text class="head" x="{}" y="18" text-anchor="end">{}</text><text class="head" x="{}" y="18">{}</text>"#,
        num(left_x + NODE),
        esc(left),
        num(right_x),
        esc(right)
    );
    // A left node's colour follows its name's alphabetical rank, so that
    // diagrams of the same homes side by side colour them alike.
    let mut by_name: Vec<&str> = lefts.iter().map(|n| n.name.as_str()).collect();
    by_name.sort_unstable();
    let hue: Vec<usize> = lefts
        .iter()
        .map(|n| by_name.binary_search(&n.name.as_str()).unwrap_or(0))
        .collect();
    // Bands in the order of their left node, then of their right node, so
    // that they stack without crossing inside a node.
    let mut bands: Vec<(usize, usize, f64)> = flows
        .iter()
        .filter_map(|f| Some((index(&lefts, &f.from)?, index(&rights, &f.to)?, f.value)))
        .collect();
    bands.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut left_used = vec![0.0; lefts.len()];
    let mut right_in: Vec<Vec<(usize, f64)>> = vec![Vec::new(); rights.len()];
    for &(l, r, v) in &bands {
        right_in[r].push((l, v));
    }
    let mut right_used = vec![0.0; rights.len()];
    out.push_str(r#"<g class="bands">"#);
    for &(l, r, v) in &bands {
        let t = v * scale;
        let y0 = lefts[l].y + left_used[l] + t / 2.0;
        left_used[l] += t;
        let y1 = rights[r].y + right_used[r] + t / 2.0;
        right_used[r] += t;
        let x0 = left_x + NODE;
        let x1 = right_x;
        let xm = (x0 + x1) / 2.0;
        let _ = write!(
            out,
            r#"<path class="band" d="M{x0} {y0}C{xm} {y0} {xm} {y1} {x1} {y1}" fill="none" stroke="{c}" stroke-opacity="0.45" stroke-width="{t}" data-from="{from}" data-to="{to}" data-value="{val}"><title>{from} → {to}: {shown}</title></path>"#,
            x0 = num(x0),
            y0 = num(y0),
            xm = num(xm),
            x1 = num(x1),
            y1 = num(y1),
            c = colour(hue[l]),
            t = num(t.max(0.0)),
            from = esc(&lefts[l].name),
            to = esc(&rights[r].name),
            val = num(v),
            shown = esc(&measure.show(v)),
        );
    }
    out.push_str("</g>");
    for (i, n) in lefts.iter().enumerate() {
        node(&mut out, n, left_x, colour(hue[i]), measure, true);
    }
    for n in &rights {
        node(&mut out, n, right_x, "#555", measure, false);
    }
    out.push_str("</svg>");
    out
}

fn node(out: &mut String, n: &Node, x: f64, fill: &str, measure: Measure, left: bool) {
    let cy = n.y + n.h / 2.0 + 4.0;
    let (tx, anchor) = if left {
        (x - 6.0, "end")
    } else {
        (x + NODE + 6.0, "start")
    };
    let _ = write!(
        out,
        r#"<g class="node"><rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"/><text x="{tx}" y="{cy}" text-anchor="{anchor}"><tspan class="label">{name}</tspan> <tspan class="value">{value}</tspan></text></g>"#,
        x = num(x),
        y = num(n.y),
        w = num(NODE),
        h = num(n.h.max(0.5)),
        tx = num(tx),
        cy = num(cy),
        name = esc(&n.name),
        value = esc(&measure.show(n.value)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(from: &str, to: &str, value: f64) -> Flow {
        Flow {
            from: from.into(),
            to: to.into(),
            value,
        }
    }

    /// `(from, to, stroke-width)` of every band.
    fn bands(svg: &str) -> Vec<(String, String, f64)> {
        let attr = |s: &str, name: &str| -> String {
            let start = s
                .find(&format!(" {name}=\""))
                .unwrap_or_else(|| panic!("{name} in {s}"))
                + name.len()
                + 3;
            s[start..start + s[start..].find('"').unwrap_or(0)].to_string()
        };
        svg.split("<path class=\"band\"")
            .skip(1)
            .map(|p| {
                let tag = &p[..p.find('>').unwrap_or(p.len())];
                (
                    attr(tag, "data-from"),
                    attr(tag, "data-to"),
                    attr(tag, "stroke-width").parse().unwrap_or(f64::NAN),
                )
            })
            .collect()
    }

    #[test]
    fn band_widths_are_proportional_to_values() {
        let svg = flow_svg(
            "t",
            "Home",
            "Region",
            Measure::Subjects,
            &[
                flow("IN", "cn-north", 30.0),
                flow("CN", "cn-north", 10.0),
                flow("IN", "in-mumbai", 20.0),
            ],
        );
        let b = bands(&svg);
        assert_eq!(b.len(), 3, "{svg}");
        let w = |from: &str, to: &str| {
            b.iter()
                .find(|x| x.0 == from && x.1 == to)
                .map(|x| x.2)
                .unwrap_or_else(|| panic!("no band {from}→{to} in {svg}"))
        };
        // 60 in all share the band height.
        assert!((w("IN", "cn-north") - 120.0).abs() < 0.01, "{b:?}");
        assert!((w("CN", "cn-north") - 40.0).abs() < 0.01, "{b:?}");
        assert!((w("IN", "in-mumbai") - 80.0).abs() < 0.01, "{b:?}");
        let sum: f64 = b.iter().map(|x| x.2).sum();
        assert!((sum - BAND_HEIGHT).abs() < 0.05, "{b:?}");
        // Node labels carry their totals.
        assert!(svg.contains(r#"<tspan class="label">IN</tspan> <tspan class="value">50</tspan>"#));
        assert!(
            svg.contains(
                r#"<tspan class="label">cn-north</tspan> <tspan class="value">40</tspan>"#
            )
        );
        assert!(svg.contains("<title>t</title>") && svg.contains(r#"aria-label="t""#));
    }

    #[test]
    fn the_same_data_draws_the_same_bytes() {
        let a = [
            flow("A", "x", 1.0),
            flow("B", "y", 2.0),
            flow("A", "y", 3.0),
        ];
        let mut b = a.clone();
        b.reverse();
        let one = flow_svg("t", "l", "r", Measure::Bytes, &a);
        assert_eq!(one, flow_svg("t", "l", "r", Measure::Bytes, &b));
    }

    #[test]
    fn a_home_keeps_its_colour_whatever_its_weight() {
        let fill = |svg: &str, home: &str| {
            let at = svg
                .find(&format!(r#"<tspan class="label">{home}</tspan>"#))
                .unwrap_or_else(|| panic!("{home} in {svg}"));
            let rect = svg[..at].rfind("<rect").unwrap_or(0);
            let f = &svg[rect..];
            let f = &f[f.find("fill=\"").unwrap_or(0) + 6..];
            f[..f.find('"').unwrap_or(0)].to_string()
        };
        let a = flow_svg(
            "a",
            "l",
            "r",
            Measure::Subjects,
            &[flow("CN", "x", 1.0), flow("IN", "x", 5.0)],
        );
        let b = flow_svg(
            "b",
            "l",
            "r",
            Measure::Subjects,
            &[flow("CN", "x", 5.0), flow("IN", "x", 1.0)],
        );
        assert_eq!(fill(&a, "CN"), fill(&b, "CN"));
        assert_eq!(fill(&a, "IN"), fill(&b, "IN"));
        assert_ne!(fill(&a, "CN"), fill(&a, "IN"));
    }

    #[test]
    fn labels_are_escaped() {
        let svg = flow_svg(
            r#"<b>"t"</b>"#,
            "<l>",
            "r&",
            Measure::Subjects,
            &[flow("<script>", r#"a"b'c&d"#, 1.0)],
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>") && !svg.contains("<l>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("a&quot;b&#39;c&amp;d"));
    }

    #[test]
    fn no_data_is_a_chart_that_says_so() {
        for flows in [
            vec![],
            vec![flow("A", "x", 0.0)],
            vec![flow("A", "x", f64::NAN), flow("B", "y", -1.0)],
            vec![flow("A", "x", f64::INFINITY)],
        ] {
            let svg = flow_svg("t", "l", "r", Measure::Bytes, &flows);
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
            assert!(svg.contains("No data"), "{svg}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
        // A tiny flow beside a huge one: finite, if thin.
        let svg = flow_svg(
            "t",
            "l",
            "r",
            Measure::Bytes,
            &[flow("A", "x", 1e300), flow("B", "y", 1e-300)],
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
