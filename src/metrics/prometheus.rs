//! The Prometheus text exposition (format 0.0.4) of a registry snapshot, for `GET /metrics`.

use super::{Metric, Snapshot, PUT_LATENCY, TABLE_EVENTS_PUT};

impl Snapshot {
    /// The Prometheus text exposition (format 0.0.4) of this snapshot, with the common labels.
    pub(crate) fn prometheus(&self, labels: &[(&str, &str)]) -> String {
        let common: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let with = |extra: Option<String>| {
            let mut all = common.clone();
            all.extend(extra);
            if all.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", all.join(","))
            }
        };
        let mut out = String::new();
        let header = |out: &mut String, metric: &Metric, kind: &str| {
            out.push_str(&format!(
                "# HELP {name} {}\n# TYPE {name} {kind}\n",
                metric.help,
                name = metric.prometheus
            ));
        };
        for (metric, value) in &self.gauges {
            header(&mut out, metric, "gauge");
            out.push_str(&format!("{}{} {value}\n", metric.prometheus, with(None)));
        }
        for (metric, value) in &self.counters {
            header(&mut out, metric, "counter");
            out.push_str(&format!("{}{} {value}\n", metric.prometheus, with(None)));
        }
        header(&mut out, &PUT_LATENCY, "summary");
        out.push_str(&format!(
            "{name}_sum{labels} {}\n{name}_count{labels} {}\n",
            self.put_latency.sum / 1000.0,
            self.put_latency.count,
            name = PUT_LATENCY.prometheus,
            labels = with(None),
        ));
        if !self.per_table.is_empty() {
            header(&mut out, &TABLE_EVENTS_PUT, "counter");
            for (table, value) in &self.per_table {
                let label = format!("table=\"{}\"", escape_label(table.as_str()));
                out.push_str(&format!(
                    "{}{} {value}\n",
                    TABLE_EVENTS_PUT.prometheus,
                    with(Some(label))
                ));
            }
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
