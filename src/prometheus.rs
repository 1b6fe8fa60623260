//! The Prometheus text exposition format (version 0.0.4), written in one
//! place: every family of `/metrics` starts with [`family`] (its `# HELP` and
//! `# TYPE` lines) and every sample goes through [`Family::sample`], which
//! escapes label values. Uses nothing else of the crate, so each layer that
//! keeps metrics (server counters, sync status, the app's gauges) renders its
//! own families with it.

use std::fmt::{self, Write};

/// The metric types `/metrics` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A family whose HELP and TYPE lines are written; its samples follow.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

/// Starts the family `name`: writes `# HELP name help` and `# TYPE name kind`.
pub fn family<'a>(out: &'a mut String, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
    Family { out, name }
}

impl Family<'_> {
    /// One sample: `name{label="value",...} value`, or `name value` without
    /// labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl fmt::Display) -> &mut Self {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                push_escaped(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

/// Label values escape backslash, double quote and newline.
fn push_escaped(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_and_samples() {
        let mut out = String::new();
        family(&mut out, "x_total", Kind::Counter, "Things.")
            .sample(&[("client", "core \"sw\"\\1\n")], 3)
            .sample(&[("client", "a"), ("reason", "b")], 0);
        family(&mut out, "y", Kind::Gauge, "A \\ gauge\nover two lines.").sample(&[], 0.5);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{client=\"core \\\"sw\\\"\\\\1\\n\"} 3\n\
             x_total{client=\"a\",reason=\"b\"} 0\n\
             # HELP y A \\\\ gauge\\nover two lines.\n# TYPE y gauge\ny 0.5\n"
        );
    }
}
