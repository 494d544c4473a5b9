//! Where each home's data is stored, per (home, region), from the
//! residency report; and where it would be once a plan's moves are made.

use std::collections::BTreeMap;

use domicile_core::plan::Move;
use domicile_engine::reports::ResidencyRow;

use crate::svg::flow::Flow;
use crate::text::Measure;

/// What one home keeps in one region: subjects counted once per category
/// (a subject whose profile and payments are both there counts twice, as
/// the residency report's rows add up), objects and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub subjects: i64,
    pub objects: i64,
    pub bytes: i64,
}

/// Stored data per (home, region), and the jurisdiction of each region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flows {
    cells: BTreeMap<(String, String), Stored>,
    jurisdictions: BTreeMap<String, String>,
}

impl Flows {
    /// The present, from the residency report's rows (summed over
    /// categories).
    pub fn from_residency(rows: &[ResidencyRow]) -> Flows {
        let mut f = Flows::default();
        for r in rows {
            let c = f
                .cells
                .entry((r.home.clone(), r.region.clone()))
                .or_default();
            c.subjects += r.subjects;
            c.objects += r.objects;
            c.bytes += r.bytes;
            if r.jurisdiction != "?" {
                f.jurisdictions
                    .entry(r.region.clone())
                    .or_insert_with(|| r.jurisdiction.clone());
            }
        }
        f
    }

    /// Names the jurisdiction of a region (for regions that only a plan
    /// brings in).
    pub fn name_region(&mut self, region: &str, jurisdiction: &str) {
        self.jurisdictions
            .entry(region.to_string())
            .or_insert_with(|| jurisdiction.to_string());
    }

    /// The state after `m`: its unit leaves the regions it is moved out
    /// of and enters those it is copied to (regions it keeps stay as they
    /// are).
    pub fn apply(&mut self, m: &Move) {
        let home = m.home.to_string();
        let delta = |sign: i64| Stored {
            subjects: sign,
            objects: sign * m.objects as i64,
            bytes: sign * m.bytes as i64,
        };
        for r in m.from.iter().filter(|r| !m.to.contains(r)) {
            self.add(&home, r.as_str(), delta(-1));
        }
        for r in m.to.iter().filter(|r| !m.from.contains(r)) {
            self.add(&home, r.as_str(), delta(1));
        }
    }

    fn add(&mut self, home: &str, region: &str, d: Stored) {
        let c = self
            .cells
            .entry((home.to_string(), region.to_string()))
            .or_default();
        c.subjects += d.subjects;
        c.objects += d.objects;
        c.bytes += d.bytes;
    }

    /// What a region is called in charts: its id and jurisdiction.
    pub fn region_label(&self, region: &str) -> String {
        match self.jurisdictions.get(region) {
            Some(j) => format!("{region} ({j})"),
            None => region.to_string(),
        }
    }

    /// The jurisdiction of a region, `?` when not known.
    pub fn jurisdiction(&self, region: &str) -> &str {
        self.jurisdictions.get(region).map_or("?", |s| s.as_str())
    }

    /// What `home` keeps in `region` (nothing if absent).
    pub fn get(&self, home: &str, region: &str) -> Stored {
        self.cells
            .get(&(home.to_string(), region.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// Every (home, region) that holds something, in order.
    pub fn rows(&self) -> impl Iterator<Item = (&str, &str, Stored)> {
        self.cells
            .iter()
            .filter(|(_, s)| s.subjects > 0 || s.bytes > 0)
            .map(|((h, r), s)| (h.as_str(), r.as_str(), *s))
    }

    /// The bands of a flow diagram in `measure` (subjects or bytes).
    pub fn chart(&self, measure: Measure) -> Vec<Flow> {
        self.rows()
            .map(|(h, r, s)| Flow {
                from: h.to_string(),
                to: self.region_label(r),
                value: match measure {
                    Measure::Bytes => s.bytes.max(0) as f64,
                    _ => s.subjects.max(0) as f64,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use domicile_core::plan::MoveReason;

    use super::*;

    fn res(home: &str, category: &str, region: &str, subjects: i64, bytes: i64) -> ResidencyRow {
        ResidencyRow {
            home: home.into(),
            category: category.into(),
            region: region.into(),
            jurisdiction: "CN".into(),
            subjects,
            objects: subjects,
            bytes,
        }
    }

    #[test]
    fn moves_take_units_out_of_the_regions_they_leave() {
        let before = Flows::from_residency(&[
            res("IN", "profile", "cn-north", 3, 300),
            res("IN", "payment", "cn-north", 2, 50),
            res("CN", "profile", "cn-north", 1, 10),
        ]);
        let rows: Vec<_> = before.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1],
            (
                "IN",
                "cn-north",
                Stored {
                    subjects: 5,
                    objects: 5,
                    bytes: 350
                }
            )
        );
        let mut after = before.clone();
        after.name_region("in-mumbai", "IN");
        after.apply(&Move {
            token: "t".into(),
            subject: None,
            home: "IN".parse().unwrap_or_else(|_| unreachable!()),
            category: "payment".into(),
            from: vec!["cn-north".parse().unwrap_or_else(|_| unreachable!())],
            to: vec!["in-mumbai".parse().unwrap_or_else(|_| unreachable!())],
            custodian_from: "a".into(),
            custodian_to: "b".into(),
            objects: 1,
            bytes: 25,
            egress_cost: 0.0,
            reason: MoveReason::Forbidden,
        });
        let rows: Vec<_> = after.rows().collect();
        assert_eq!(
            rows,
            [
                (
                    "CN",
                    "cn-north",
                    Stored {
                        subjects: 1,
                        objects: 1,
                        bytes: 10
                    }
                ),
                (
                    "IN",
                    "cn-north",
                    Stored {
                        subjects: 4,
                        objects: 4,
                        bytes: 325
                    }
                ),
                (
                    "IN",
                    "in-mumbai",
                    Stored {
                        subjects: 1,
                        objects: 1,
                        bytes: 25
                    }
                ),
            ]
        );
        let chart = after.chart(Measure::Bytes);
        assert!(
            chart
                .iter()
                .any(|f| f.to == "in-mumbai (IN)" && f.value == 25.0)
        );
        assert_eq!(after.region_label("cn-north"), "cn-north (CN)");
    }
}
