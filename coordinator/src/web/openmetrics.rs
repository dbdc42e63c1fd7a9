//! Writing the OpenMetrics text format (what Prometheus scrapes): metric families with their
//! `TYPE`, `HELP` and `UNIT`, samples with escaped labels, and the closing `# EOF`.

use std::fmt::Write as _;

/// The content type of the text this writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Default)]
pub struct Text {
    out: String,
}

/// A label set: `&[("state", "preparing")]`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(l: Labels) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

impl Text {
    /// Starts a family: `kind` is counter, gauge or histogram; `unit` (seconds, bytes) must
    /// end the name (OpenMetrics' rule), or be empty.
    pub fn family(&mut self, name: &str, kind: &str, unit: &str, help: &str) {
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        if !unit.is_empty() {
            let _ = writeln!(self.out, "# UNIT {name} {unit}");
        }
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
    }

    /// One sample; `suffix` is "" for a gauge, "_total" for a counter.
    pub fn sample(&mut self, name: &str, suffix: &str, l: Labels, v: f64) {
        let _ = writeln!(self.out, "{name}{suffix}{} {}", labels(l), number(v));
    }

    /// A histogram's samples: `buckets` counts per bound (not cumulative), then +Inf, count
    /// and sum.
    pub fn histogram(&mut self, name: &str, l: Labels, bounds: &[f64], buckets: &[u64], count: u64, sum: f64) {
        let mut acc = 0u64;
        for (b, n) in bounds.iter().zip(buckets.iter().chain(std::iter::repeat(&0))) {
            acc += n;
            let le = number(*b);
            let mut with: Vec<(&str, &str)> = l.to_vec();
            with.push(("le", &le));
            self.sample(name, "_bucket", &with, acc as f64);
        }
        let mut with: Vec<(&str, &str)> = l.to_vec();
        with.push(("le", "+Inf"));
        self.sample(name, "_bucket", &with, count as f64);
        self.sample(name, "_count", l, count as f64);
        self.sample(name, "_sum", l, sum);
    }

    pub fn finish(mut self) -> String {
        self.out.push_str("# EOF\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn families_samples_and_escaped_labels() {
        let mut t = super::Text::default();
        t.family("seedship_seeds", "gauge", "", "Seeds by state.");
        t.sample("seedship_seeds", "", &[("state", "a\"b\\c\nd")], 3.0);
        t.family("x_seconds", "histogram", "seconds", "H.");
        t.histogram("x_seconds", &[], &[0.5, 1.0], &[1, 2], 4, 7.25);
        let s = t.finish();
        assert!(s.contains("seedship_seeds{state=\"a\\\"b\\\\c\\nd\"} 3\n"), "{s}");
        assert!(
            s.contains(
                "x_seconds_bucket{le=\"0.5\"} 1\nx_seconds_bucket{le=\"1\"} 3\nx_seconds_bucket{le=\"+Inf\"} 4\n"
            ),
            "{s}"
        );
        assert!(s.contains("# UNIT x_seconds seconds\n") && s.ends_with("x_seconds_sum 7.25\n# EOF\n"), "{s}");
    }
}
