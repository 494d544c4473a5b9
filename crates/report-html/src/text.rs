//! Escaping and number formatting: every string that reaches a document
//! goes through [`esc`], every coordinate through [`num`].

/// `s` escaped for HTML and SVG text and attribute values: `& < > " '`
/// become entities; control characters (but tab and line feed), which
/// neither may hold, become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate or length for an SVG attribute: at most two decimals, no
/// trailing zeros, and `0` for what is not a finite number, so that no
/// attribute ever says `NaN` or `inf`.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    match s {
        "-0" | "" => "0".into(),
        s => s.to_string(),
    }
}

/// Human-readable bytes (binary units), as the tables print them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Money, in the price list's currency, as the tables print it.
pub fn money(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    if v.abs() < 10.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// How a chart's values are counted, and so printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Subjects (a whole number).
    Subjects,
    /// Stored bytes.
    Bytes,
    /// A monthly amount of money.
    Money,
}

impl Measure {
    /// `v` printed in this measure's unit.
    pub fn show(self, v: f64) -> String {
        let v = if v.is_finite() { v } else { 0.0 };
        match self {
            Measure::Subjects => format!("{}", v.max(0.0).round() as u64),
            Measure::Bytes => bytes(v.max(0.0).round() as u64),
            Measure::Money => money(v),
        }
    }

    /// What the unit is called in a caption.
    pub fn noun(self) -> &'static str {
        match self {
            Measure::Subjects => "subjects",
            Measure::Bytes => "bytes",
            Measure::Money => "monthly cost",
        }
    }
}

/// A time in milliseconds since the Unix epoch as RFC 3339 in UTC, to the
/// second (`-` for none: zero or before 1970).
pub fn rfc3339(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("a\u{0}b\u{1b}c\td"), "a\u{fffd}b\u{fffd}c\td");
        assert_eq!(esc("plain ü 中"), "plain ü 中");
    }

    #[test]
    fn numbers_are_always_finite_and_short() {
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(f64::INFINITY), "0");
        assert_eq!(num(f64::NEG_INFINITY), "0");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(1.0 / 3.0), "0.33");
        assert_eq!(num(-4.256), "-4.26");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "-");
        assert_eq!(rfc3339(1_000), "1970-01-01T00:00:01Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_419_385_123), "2026-12-04T21:23:05Z");
    }

    #[test]
    fn measures_print_like_the_tables() {
        assert_eq!(Measure::Subjects.show(30.0), "30");
        assert_eq!(Measure::Bytes.show(2048.0), "2.0 KiB");
        assert_eq!(Measure::Money.show(0.5), "$0.5000");
        assert_eq!(Measure::Money.show(f64::NAN), "$0.0000");
    }
}
