//! What the stream knows of snapshots, carried on every boundary and saved with it in the
//! checkpoint: which tables the stream covers, which are still to be read, and how far the
//! one being read has got.
//!
//! # Invariants
//!
//! - A table the `covered` filter matches is in the stream: its rows were snapshotted, or
//!   it is in `pending`, or it was covered when snapshots were off (`mode = "never"`, or a
//!   checkpoint older than snapshots: see `checkpoint`).
//! - The tables being read are the first of `pending` (`snapshot.parallel_tables` of them at
//!   most); each one's `after` is the last key of its rows emitted before this boundary,
//!   `rows` how many rows were emitted: resuming reads the rows after `after`, so no row
//!   before this boundary is read twice.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::key::KeyValue;
use crate::event::TableName;

/// The snapshot part of a boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotState {
    /// The `[filter]` whose tables the stream covers.
    pub(crate) covered: Covered,
    /// Tables still to read, in order; the first ones are being read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) pending: Vec<PendingTable>,
}

/// A `[filter]`: its include and exclude patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Covered {
    /// `filter.include`.
    pub(crate) include: Vec<String>,
    /// `filter.exclude`.
    pub(crate) exclude: Vec<String>,
}

/// A table to snapshot, and how far its snapshot got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PendingTable {
    /// The table.
    #[serde(with = "table_name")]
    pub(crate) table: TableName,
    /// Which request it belongs to: `initial-<ms>`, `added-<ms>`, `requested-<ms>`,
    /// `signal-<ms>`, `when_needed-<ms>` (milliseconds since the Unix epoch of the request).
    pub(crate) id: String,
    /// The last key emitted; `None` before the first row (the `snapshot_start` marker is
    /// not emitted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) after: Option<Vec<KeyValue>>,
    /// Rows emitted so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) rows: u64,
}

impl PendingTable {
    /// A table to read from its start.
    pub(crate) fn new(table: TableName, id: &str) -> Self {
        Self {
            table,
            id: id.to_owned(),
            after: None,
            rows: 0,
        }
    }

    /// Whether its `snapshot_start` marker has been emitted.
    pub(crate) fn started(&self) -> bool {
        self.after.is_some() || self.rows > 0
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A [`TableName`] as its `database.table` text (parts in backticks where needed).
mod table_name {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        table: &TableName,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(table.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<TableName, D::Error> {
        let text = String::deserialize(deserializer)?;
        let (database, table) = TableName::split(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a database.table name"))
        })?;
        Ok(TableName::new(&database, &table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips_names_with_dots() {
        let state = SnapshotState {
            covered: Covered {
                include: vec!["shop.*".into()],
                exclude: vec![],
            },
            pending: vec![
                PendingTable {
                    after: Some(vec![KeyValue::Int(7), KeyValue::Bytes(b"eu".to_vec())]),
                    rows: 10,
                    ..PendingTable::new(TableName::new("my.db", "t`x"), "initial-1")
                },
                PendingTable::new(TableName::new("shop", "users"), "initial-1"),
            ],
        };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(
            text,
            r#"{"covered":{"include":["shop.*"],"exclude":[]},"pending":[{"table":"`my.db`.`t``x`","id":"initial-1","after":[{"int":7},{"bytes":"ZXU="}],"rows":10},{"table":"shop.users","id":"initial-1"}]}"#
        );
        assert_eq!(serde_json::from_str::<SnapshotState>(&text).unwrap(), state);
        assert!(serde_json::from_str::<SnapshotState>(
            r#"{"covered":{"include":[],"exclude":[]},"pending":[{"table":"nodot","id":"x"}]}"#
        )
        .is_err());
    }
}
