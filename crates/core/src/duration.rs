//! How long a plan's moves would take, from copy rates.
//!
//! The migrator runs every unit of a job from one queue, whatever its
//! regions, so the job is one lane: it takes as long as the larger of its
//! bytes at the byte rate and its units at the unit rate (small units are
//! bound by the work per unit, large ones by the bytes). The rates are
//! measured on the migrations that ran before ([`Rates::measured`]), or,
//! with none, the stated defaults ([`Rates::assumed`]), and the estimate
//! says which.

use crate::plan::Totals;

/// Bytes per second assumed with no measured migration: the migration
/// benchmark's 212 MiB/s between two local regions (docs/benchmarks.md,
/// "Migration"), rounded down.
pub const ASSUMED_BYTES_PER_SECOND: f64 = 200.0 * 1024.0 * 1024.0;

/// Units per second assumed with no measured migration: the same
/// benchmark's 2,000 units in 13.5 s, rounded down.
pub const ASSUMED_UNITS_PER_SECOND: f64 = 140.0;

/// One measured migration run: what it moved and in how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub units: u64,
    pub bytes: u64,
    pub millis: u64,
}

/// Copy rates, and where they come from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rates {
    pub bytes_per_second: f64,
    pub units_per_second: f64,
    /// The runs the rates were measured on; 0 when they are assumed.
    pub measured_runs: u64,
}

impl Rates {
    /// The defaults, with nothing measured.
    pub fn assumed() -> Rates {
        Rates {
            bytes_per_second: ASSUMED_BYTES_PER_SECOND,
            units_per_second: ASSUMED_UNITS_PER_SECOND,
            measured_runs: 0,
        }
    }

    /// The rates of `runs`: each the best any run reached (a run of large
    /// units says little of the unit rate, and one of small units little
    /// of the byte rate). Runs that moved nothing or took no time are left
    /// out; with none left, or a rate that no run measured, the assumed
    /// one.
    pub fn measured(runs: &[Run]) -> Rates {
        let timed: Vec<&Run> = runs.iter().filter(|r| r.millis > 0).collect();
        let best = |f: fn(&Run) -> u64| {
            timed
                .iter()
                .filter(|r| f(r) > 0)
                .map(|r| f(r) as f64 * 1000.0 / r.millis as f64)
                .filter(|rate| rate.is_finite() && *rate > 0.0)
                .fold(None, |best: Option<f64>, rate| {
                    Some(best.map_or(rate, |b| b.max(rate)))
                })
        };
        let (bytes, units) = (best(|r| r.bytes), best(|r| r.units));
        let used = timed.iter().filter(|r| r.units > 0 || r.bytes > 0).count() as u64;
        match (bytes, units) {
            (None, None) => Rates::assumed(),
            (b, u) => Rates {
                bytes_per_second: b.unwrap_or(ASSUMED_BYTES_PER_SECOND),
                units_per_second: u.unwrap_or(ASSUMED_UNITS_PER_SECOND),
                measured_runs: used,
            },
        }
    }
}

/// How long a plan's moves would take.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub seconds: f64,
    /// The rates it was computed with.
    pub rates: Rates,
    /// `measured` (from past migrations) or `assumed` (the defaults).
    pub basis: &'static str,
}

/// The duration of moving `totals`' units and bytes at `rates`. A rate
/// that is not a positive number is taken as the assumed one, so the
/// estimate is always a finite number of seconds.
pub fn estimate(totals: &Totals, rates: Rates) -> Estimate {
    let usable = |r: f64, assumed: f64| if r.is_finite() && r > 0.0 { r } else { assumed };
    let rates = Rates {
        bytes_per_second: usable(rates.bytes_per_second, ASSUMED_BYTES_PER_SECOND),
        units_per_second: usable(rates.units_per_second, ASSUMED_UNITS_PER_SECOND),
        measured_runs: rates.measured_runs,
    };
    let by_bytes = totals.bytes as f64 / rates.bytes_per_second;
    let by_units = totals.units as f64 / rates.units_per_second;
    Estimate {
        seconds: by_bytes.max(by_units),
        rates,
        basis: if rates.measured_runs > 0 {
            "measured"
        } else {
            "assumed"
        },
    }
}

/// Seconds as a person reads them: `45 s`, `12 min`, `3 h 20 min`, `2 d 4 h`.
pub fn human(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

impl Estimate {
    /// The estimate in one line, with its rates and their source.
    pub fn describe(&self) -> String {
        let rates = format!(
            "{:.0} MiB/s and {:.0} units/s",
            self.rates.bytes_per_second / (1024.0 * 1024.0),
            self.rates.units_per_second
        );
        let source = if self.rates.measured_runs > 0 {
            format!(
                "measured on {} past migration run{}",
                self.rates.measured_runs,
                if self.rates.measured_runs == 1 {
                    ""
                } else {
                    "s"
                }
            )
        } else {
            "assumed: no migration measured yet".to_string()
        };
        format!("about {}, at {rates} ({source})", human(self.seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(units: u64, bytes: u64) -> Totals {
        Totals {
            units,
            bytes,
            ..Totals::default()
        }
    }

    #[test]
    fn a_measured_rate_is_used_and_the_estimate_scales_with_bytes() {
        // 1 GiB in 10 s, 100 units: 100 MiB/s, 10 units/s.
        let rates = Rates::measured(&[Run {
            units: 100,
            bytes: 1 << 30,
            millis: 10_000,
        }]);
        assert_eq!(rates.measured_runs, 1);
        assert_eq!(rates.bytes_per_second, (1u64 << 30) as f64 / 10.0);
        assert_eq!(rates.units_per_second, 10.0);
        let one = estimate(&totals(10, 1 << 30), rates);
        assert_eq!(one.basis, "measured");
        assert_eq!(one.seconds, 10.0);
        let four = estimate(&totals(10, 4 << 30), rates);
        assert_eq!(four.seconds, 40.0);
        // Many small units: bound by the unit rate.
        let small = estimate(&totals(1000, 1 << 20), rates);
        assert_eq!(small.seconds, 100.0);
        // The best run of each rate.
        let two = Rates::measured(&[
            Run {
                units: 100,
                bytes: 1 << 30,
                millis: 10_000,
            },
            Run {
                units: 1000,
                bytes: 1 << 20,
                millis: 5_000,
            },
        ]);
        assert_eq!(two.units_per_second, 200.0);
        assert_eq!(two.bytes_per_second, (1u64 << 30) as f64 / 10.0);
        assert_eq!(two.measured_runs, 2);
    }

    #[test]
    fn no_or_bad_history_falls_back_to_the_stated_assumption() {
        let assumed = Rates::assumed();
        for runs in [
            vec![],
            vec![Run {
                units: 5,
                bytes: 500,
                millis: 0,
            }],
            vec![Run {
                units: 0,
                bytes: 0,
                millis: 1000,
            }],
        ] {
            let r = Rates::measured(&runs);
            assert_eq!(r, assumed, "{runs:?}");
            let e = estimate(&totals(3, 1 << 30), r);
            assert_eq!(e.basis, "assumed");
            assert!(e.seconds.is_finite() && e.seconds > 0.0);
        }
        // Re-keys only: units measured, bytes assumed.
        let r = Rates::measured(&[Run {
            units: 50,
            bytes: 0,
            millis: 1000,
        }]);
        assert_eq!(r.units_per_second, 50.0);
        assert_eq!(r.bytes_per_second, ASSUMED_BYTES_PER_SECOND);
        // Rates that are zero, negative or not numbers never divide.
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = estimate(
                &totals(7, 7 << 20),
                Rates {
                    bytes_per_second: bad,
                    units_per_second: bad,
                    measured_runs: 1,
                },
            );
            assert!(e.seconds.is_finite(), "{bad}: {}", e.seconds);
            assert_eq!(e.rates.bytes_per_second, ASSUMED_BYTES_PER_SECOND);
        }
        assert_eq!(estimate(&totals(0, 0), assumed).seconds, 0.0);
    }

    #[test]
    fn durations_read_as_people_read_them() {
        assert_eq!(human(0.4), "0 s");
        assert_eq!(human(59.0), "59 s");
        assert_eq!(human(125.0), "2 min");
        assert_eq!(human(3.0 * 3600.0 + 20.0 * 60.0), "3 h 20 min");
        assert_eq!(human(2.0 * 86_400.0 + 4.0 * 3600.0), "2 d 4 h");
        assert_eq!(human(f64::NAN), "0 s");
        let e = estimate(&totals(1, 1 << 30), Rates::assumed());
        assert_eq!(
            e.describe(),
            "about 5 s, at 200 MiB/s and 140 units/s (assumed: no migration measured yet)"
        );
    }
}
