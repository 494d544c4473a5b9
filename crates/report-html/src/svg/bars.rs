//! Grouped horizontal bars: one group per label (a region), one bar per
//! series (before, after), all on one scale from zero.

use std::fmt::Write;

use super::{colour, no_data, open, text_width};
use crate::text::{Measure, esc, num};

/// One group of bars: its label and one value per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    pub values: Vec<f64>,
}

/// Width of the drawing, in user units, at the least (long labels widen
/// it).
pub const WIDTH: f64 = 640.0;
/// The length of the longest bar.
pub const BAR_SPAN: f64 = 360.0;
const BAR_H: f64 = 12.0;
const GROUP_GAP: f64 = 10.0;
const TOP: f64 = 28.0;

/// The chart of `groups`, one bar per name in `series` (a value missing
/// from a group, or not finite, counts as zero; negative values too).
pub fn bars_svg(title: &str, series: &[&str], measure: Measure, groups: &[Group]) -> String {
    if groups.is_empty() || series.is_empty() {
        return no_data("chart bars", title, "No data to chart.");
    }
    let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let max = groups
        .iter()
        .flat_map(|g| g.values.iter().copied().map(clean))
        .fold(0.0, f64::max);
    let scale = if max > 0.0 { BAR_SPAN / max } else { 0.0 };
    let group_h = BAR_H * series.len() as f64 + GROUP_GAP;
    let height = TOP + group_h * groups.len() as f64 + 4.0;
    let label_w = groups
        .iter()
        .map(|g| text_width(&g.label) + 16.0)
        .fold(80.0, f64::max);
    let value_w = groups
        .iter()
        .flat_map(|g| g.values.iter())
        .map(|v| text_width(&measure.show(clean(*v))) + 8.0)
        .fold(0.0, f64::max);
    let width = (label_w + BAR_SPAN + value_w + 8.0).max(WIDTH);
    let mut out = String::new();
    open(&mut out, "chart bars", title, width, height);
    // The series' legend.
    for (k, s) in series.iter().enumerate() {
        let x = label_w + 110.0 * k as f64;
        let _ = write!(
            out,
            r#"<rect x="{}" y="6" width="12" height="12" fill="{}"/><text x="{}" y="16">{}</text>"#,
            num(x),
            colour(k),
            num(x + 16.0),
            esc(s)
        );
    }
    for (i, g) in groups.iter().enumerate() {
        let y = TOP + group_h * i as f64;
        let _ = write!(
            out,
            r#"<text class="row" x="{}" y="{}" text-anchor="end">{}</text>"#,
            num(label_w - 8.0),
            num(y + BAR_H * series.len() as f64 / 2.0 + 4.0),
            esc(&g.label)
        );
        for (k, s) in series.iter().enumerate() {
            let v = clean(g.values.get(k).copied().unwrap_or(0.0));
            let w = v * scale;
            let by = y + BAR_H * k as f64;
            let _ = write!(
                out,
                r#"<rect class="bar" x="{x}" y="{y}" width="{w}" height="{h}" fill="{c}" data-label="{l}" data-series="{s}" data-value="{v}"><title>{l}, {s}: {shown}</title></rect><text class="small" x="{tx}" y="{ty}">{shown}</text>"#,
                x = num(label_w),
                y = num(by),
                w = num(w),
                h = num(BAR_H - 2.0),
                c = colour(k),
                l = esc(&g.label),
                s = esc(s),
                v = num(v),
                shown = esc(&measure.show(v)),
                tx = num(label_w + w + 4.0),
                ty = num(by + BAR_H - 3.0),
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths(svg: &str) -> Vec<f64> {
        svg.split(r#"<rect class="bar""#)
            .skip(1)
            .map(|p| {
                let s = &p[p.find(" width=\"").unwrap_or(0) + 8..];
                s[..s.find('"').unwrap_or(0)].parse().unwrap_or(f64::NAN)
            })
            .collect()
    }

    #[test]
    fn bars_are_proportional_on_one_scale() {
        let svg = bars_svg(
            "cost",
            &["before", "after"],
            Measure::Money,
            &[
                Group {
                    label: "cn-north".into(),
                    values: vec![4.0, 1.0],
                },
                Group {
                    label: "in-mumbai".into(),
                    values: vec![0.0, 2.0],
                },
            ],
        );
        assert_eq!(
            widths(&svg),
            [BAR_SPAN, BAR_SPAN / 4.0, 0.0, BAR_SPAN / 2.0]
        );
        assert!(svg.contains(">$4.0000<") && svg.contains("before") && svg.contains("after"));
    }

    #[test]
    fn zeros_and_nothing_draw_without_nan() {
        let zeros = bars_svg(
            "t",
            &["before"],
            Measure::Money,
            &[Group {
                label: "<r>".into(),
                values: vec![0.0, f64::NAN],
            }],
        );
        assert_eq!(widths(&zeros), [0.0]);
        assert!(!zeros.contains("NaN") && !zeros.contains("inf") && !zeros.contains("<r>"));
        let none = bars_svg("t", &["before"], Measure::Money, &[]);
        assert!(none.contains("No data"), "{none}");
        let neg = bars_svg(
            "t",
            &["a"],
            Measure::Money,
            &[Group {
                label: "x".into(),
                values: vec![f64::NEG_INFINITY],
            }],
        );
        assert!(!neg.contains("NaN") && !neg.contains("inf"), "{neg}");
    }
}
