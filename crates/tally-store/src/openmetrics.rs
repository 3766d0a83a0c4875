//! Metric families written by more than one exposition writer, so that `tally export
//! --format openmetrics` and the collector's `/metrics` cannot disagree on a family's
//! name, type, help or labels.
//!
//! A counter is named without `_total` and its samples with it. How the `# HELP` and
//! `# TYPE` lines name a counter differs between the two text formats: OpenMetrics names
//! the family (`tally_events`), the Prometheus text format names the sample
//! (`tally_events_total`), which is also what `promtool check metrics` expects.

use std::fmt::{Display, Write as _};

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A count that only grows; samples carry the `_total` suffix.
    Counter,
    /// A value that goes up and down.
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

/// Which text format a family's `# HELP` and `# TYPE` lines follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: the lines name a counter's sample (`x_total`).
    Prometheus,
    /// OpenMetrics 1.0: the lines name a counter's family (`x`).
    OpenMetrics,
}

/// One metric family with `N` labels, named in a fixed order.
#[derive(Debug, Clone, Copy)]
pub struct Family<const N: usize> {
    /// The family name, without `_total`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order every sample writes them.
    pub labels: [&'static str; N],
}

/// Events stored, per app, type and name. The collector bounds the names per app and
/// sums the rest as type and name `other`; the export keeps every name.
pub const EVENTS: Family<3> = Family {
    name: "tally_events",
    kind: Kind::Counter,
    help: "Events stored, per app, type and name; names past a writer's top list are summed as other.",
    labels: ["app", "type", "name"],
};

impl<const N: usize> Family<N> {
    /// The name samples are written under: `_total` appended for counters.
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            Kind::Gauge => self.name.to_owned(),
        }
    }

    /// The `# HELP` and `# TYPE` lines, each ending in a newline.
    pub fn header(&self, format: Format) -> String {
        let named = match format {
            Format::Prometheus => self.sample_name(),
            Format::OpenMetrics => self.name.to_owned(),
        };
        format!("# HELP {named} {}\n# TYPE {named} {}\n", self.help, self.kind.as_str())
    }

    /// One sample line, ending in a newline; `values` pair up with the family's labels.
    pub fn sample(&self, values: [&str; N], value: impl Display) -> String {
        let mut line = String::new();
        self.write_sample(&mut line, values, value);
        line
    }

    /// Appends one sample line to `out`, as [`Family::sample`] makes it.
    pub fn write_sample(&self, out: &mut String, values: [&str; N], value: impl Display) {
        out.push_str(self.name);
        if self.kind == Kind::Counter {
            out.push_str("_total");
        }
        if N > 0 {
            out.push('{');
            for (index, (label, value)) in self.labels.iter().zip(values).enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{label}=\"{}\"", escape_label(value));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

/// Escapes a label value for both text formats: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_per_format_and_sampled_with_total() {
        assert!(
            EVENTS
                .header(Format::OpenMetrics)
                .contains("# TYPE tally_events counter\n")
        );
        assert!(
            EVENTS
                .header(Format::Prometheus)
                .contains("# TYPE tally_events_total counter\n")
        );
        assert_eq!(
            EVENTS.sample(["a\"b", "command", "line\nbreak"], 3),
            "tally_events_total{app=\"a\\\"b\",type=\"command\",name=\"line\\nbreak\"} 3\n"
        );
    }

    #[test]
    fn gauges_keep_their_name() {
        let family = Family {
            name: "tally_x",
            kind: Kind::Gauge,
            help: "X.",
            labels: [],
        };
        assert_eq!(
            family.header(Format::Prometheus),
            "# HELP tally_x X.\n# TYPE tally_x gauge\n"
        );
        assert_eq!(family.sample([], 1.5), "tally_x 1.5\n");
    }
}
