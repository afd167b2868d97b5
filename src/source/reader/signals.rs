//! Signals: rows inserted into `snapshot.signal_table` ask for snapshots while the daemon
//! runs (as Debezium's source signals), and carry the watermarks of the watermark method.
//!
//! # Invariants
//!
//! - A signal acts where the reader reads it, once: it is read from the binlog, so a restart
//!   from a checkpoint before it reads it again only if the checkpoint is before it, and then
//!   the snapshot it asked for was not recorded yet either.
//! - A malformed signal, or one naming a table `[filter]` leaves out, is logged and ignored:
//!   a typo in an insert must not stop replication.

use super::Reader;
use crate::{
    event::{Op, TableName},
    position::BinlogPosition,
    source::decode,
    stream::PendingTable,
};

impl Reader {
    /// Whether `table` is `snapshot.signal_table`.
    pub(super) fn is_signal_table(&self, table: &TableName) -> bool {
        self.config.signal_table.as_ref() == Some(table)
    }

    /// Rows of the signal table: each insert of `type` `snapshot` (or Debezium's
    /// `execute-snapshot`) asks for the tables its `data` names (`shop.a,shop.b`, a JSON array
    /// of names, or Debezium's `{"data-collections": [...]}`) to be snapshotted, after those
    /// already pending. A table `[filter]` leaves out, or a malformed signal, is logged and
    /// ignored: a typo in an insert must not stop replication.
    pub(super) fn snapshot_signals(&mut self, rows: &decode::EncodedRows, at: &BinlogPosition) {
        for row in rows.iter() {
            let Some(image) = row
                .after
                .and_then(|after| serde_json::from_slice::<serde_json::Value>(after).ok())
            else {
                continue;
            };
            if let Some(kind @ ("watermark-low" | "watermark-high")) = image["type"].as_str() {
                let id = image["data"].as_str().unwrap_or_default().to_owned();
                self.snapshot_watermark(kind == "watermark-low", id);
                continue;
            }
            if rows.op() != Op::Insert {
                continue;
            }
            let id = match &image["id"] {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let kind = image["type"].as_str().unwrap_or_default();
            if !matches!(kind, "snapshot" | "execute-snapshot") {
                tracing::warn!(signal = %id, kind, position = %at, "signal of an unknown type ignored (known: snapshot)");
                continue;
            }
            let names = signal_tables(&image["data"]);
            if names.is_empty() {
                tracing::warn!(signal = %id, position = %at, "snapshot signal without tables ignored: data must name them (shop.a,shop.b)");
            }
            for name in names {
                self.signal_table_asked(&id, &name, at);
            }
        }
    }

    /// One table a signal asks for.
    fn signal_table_asked(&mut self, id: &str, name: &str, at: &BinlogPosition) {
        let Some((database, table)) = TableName::split(name.trim()) else {
            tracing::warn!(signal = %id, table = name, position = %at, "snapshot signal names no database.table; ignored");
            return;
        };
        if !self.config.captured.matches(&database, &table) {
            tracing::warn!(signal = %id, table = name, position = %at, "snapshot signal names a table [filter] leaves out; ignored");
            return;
        }
        let Some(snapshots) = &mut self.snapshots else {
            tracing::warn!(signal = %id, table = name, "snapshot signal ignored: snapshots are off");
            return;
        };
        let table = TableName::new(&database, &table);
        let Some(pending) =
            snapshots.request(PendingTable::new(table.clone(), &format!("signal-{id}")))
        else {
            tracing::info!(signal = %id, table = %table, "snapshot signal for a table already to be read");
            return;
        };
        tracing::info!(signal = %id, table = %table, position = %at, "snapshot asked for by a signal");
        self.metrics.set_snapshot_tables_pending(pending);
    }
}

/// The table names of a signal's `data`.
fn signal_tables(data: &serde_json::Value) -> Vec<String> {
    let strings = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    match data {
        serde_json::Value::String(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(parsed @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
                signal_tables(&parsed)
            }
            _ => text
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        serde_json::Value::Array(_) => strings(data),
        serde_json::Value::Object(map) => strings(
            map.get("data-collections")
                .or(map.get("tables"))
                .unwrap_or(&serde_json::Value::Null),
        ),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::signal_tables;

    #[test]
    fn a_signal_names_tables_as_a_list_json_or_debezium_does() {
        let tables = |data: serde_json::Value| signal_tables(&data);
        let both = ["shop.a", "shop.b"];
        assert_eq!(tables(serde_json::json!("shop.a, shop.b")), both);
        assert_eq!(tables(serde_json::json!(r#"["shop.a","shop.b"]"#)), both);
        assert_eq!(
            tables(serde_json::json!(
                r#"{"data-collections":["shop.a","shop.b"]}"#
            )),
            both
        );
        assert_eq!(
            tables(serde_json::json!({"tables": ["shop.a", "shop.b"]})),
            both
        );
        assert!(tables(serde_json::json!(null)).is_empty());
        assert!(tables(serde_json::json!("")).is_empty());
    }
}
