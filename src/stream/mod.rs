//! The messages that travel between the stages, in binlog order: what a source emits (a
//! change event ready to send, or a transaction boundary), and the partition key that orders
//! an event. They sit below every stage, beside the JSON contract in [`crate::event`], so no
//! stage imports another.

mod key;
mod snapshot;

pub use self::key::KeyValue;
pub(crate) use self::snapshot::{Covered, PendingTable, SnapshotState};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    event::{EventLine, TableName},
    position::{BinlogPosition, ResumePoint},
};

/// What a source sends the sink, in binlog order.
#[derive(Debug)]
pub enum Message {
    /// One encoded change event.
    Event(OutboundEvent),
    /// Encoded change events in binlog order, handed over in one channel operation: a
    /// transaction's held events at its end, or what spills from the lookahead buffer, in
    /// batches of at most `BATCH_BYTES` (64 KiB) of lines (or one event), so that a bounded channel
    /// of them stays bounded in bytes.
    Events(Vec<OutboundEvent>),
    /// A transaction boundary: every event before it belongs to committed transactions, and
    /// resuming at this position repeats none of them.
    Boundary(Boundary),
    /// A line about an event that is not a row change (`decode --verbose`: `# file:offset
    /// TYPE`), in its place among the events. Only the offline decoder emits it; the
    /// producer never sends one.
    Comment(String),
}

/// The most bytes of lines in one [`Message::Events`] (a larger event goes alone).
pub(crate) const BATCH_BYTES: usize = 64 << 10;

impl Message {
    /// The change events it carries (none for a boundary or a comment).
    pub fn into_events(self) -> Vec<OutboundEvent> {
        match self {
            Message::Event(event) => vec![event],
            Message::Events(events) => events,
            Message::Boundary(_) | Message::Comment(_) => Vec::new(),
        }
    }
}

/// A change event ready to send.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    /// Its table.
    pub(crate) table: TableName,
    /// Its partition key: what orders it (see `kinesis.partition_by`).
    pub(crate) key: Arc<str>,
    /// Where its rows event starts, for error messages.
    pub(crate) position: BinlogPosition,
    /// The JSON line.
    pub line: EventLine,
    /// For an update that changed the row's primary key: the key it had before (the line's
    /// `primary_key` is the new one). A snapshot of the table must know both.
    pub(crate) moved_from: Option<Box<[u8]>>,
}

/// An acknowledged transaction boundary, with the binlog timestamp (Unix seconds, 0 when
/// unknown) of the event that ends it: what the retention headroom metric is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundary {
    /// Where to resume.
    pub(crate) point: ResumePoint,
    /// The boundary event's binlog timestamp.
    pub(crate) binlog_ts: u32,
    /// XA transactions prepared before it and undecided at it.
    pub(crate) prepared: Vec<PreparedXa>,
    /// Snapshot progress at it; `None` with snapshots off (`snapshot.mode = "never"`).
    pub(crate) snapshot: Option<Arc<SnapshotState>>,
}

impl From<ResumePoint> for Boundary {
    fn from(point: ResumePoint) -> Self {
        Self {
            prepared: Vec::new(),
            point,
            binlog_ts: 0,
            snapshot: None,
        }
    }
}

/// An XA transaction prepared and not yet decided, as the checkpoint remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreparedXa {
    /// Its XID as the binlog writes it (`X'7831',X'',1`).
    pub(crate) xid: String,
    /// Where its events start (its GTID event, or its `XA START`).
    pub(crate) position: BinlogPosition,
}

/// Characters in a partition key (AWS limit).
pub(crate) const MAX_PARTITION_KEY_CHARS: usize = 256;

/// The partition key of an event: its table (`database.table`), or with `by_primary_key` its
/// table and key values (`database.table/{"id":7}`), so that each row keeps its order while a
/// hot table spreads over shards. `primary_key` is the row's key as a JSON object. A key longer
/// than Kinesis allows has its values replaced by their SHA-256
/// (`database.table/#<64 hex digits>`): stable across restarts and versions, never truncated
/// into a collision. A table without a primary key keeps the table key.
pub(crate) fn partition_key(
    table: &TableName,
    primary_key: Option<&[u8]>,
    by_primary_key: bool,
) -> Arc<str> {
    let Some(values) = primary_key.filter(|_| by_primary_key) else {
        return table.shared();
    };
    let values = String::from_utf8_lossy(values);
    let key = format!("{table}/{values}");
    if key.chars().count() <= MAX_PARTITION_KEY_CHARS {
        return key.into();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(values.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{table}/#{hex}").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_are_the_table_or_the_row_and_long_ones_are_hashed() {
        let table = TableName::new("shop", "orders");
        let pk = br#"{"id":7,"region":"eu"}"#.as_slice();
        assert_eq!(&*partition_key(&table, Some(pk), false), "shop.orders");
        assert_eq!(&*partition_key(&table, None, true), "shop.orders");
        assert_eq!(
            &*partition_key(&table, Some(pk), true),
            r#"shop.orders/{"id":7,"region":"eu"}"#
        );
        let long = serde_json::to_vec(&serde_json::json!({"id": "x".repeat(300)})).unwrap();
        let key = partition_key(&table, Some(&long), true);
        assert_eq!(key.len(), "shop.orders/#".len() + 64);
        assert!(key.starts_with("shop.orders/#"));
        assert_eq!(key, partition_key(&table, Some(&long), true), "stable");
        // Golden: the hash is part of the stream's contract (keys must not move between
        // versions).
        let expected = {
            use sha2::{Digest, Sha256};
            let hex: String = Sha256::digest(&long)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("shop.orders/#{hex}")
        };
        assert_eq!(&*key, expected);
        let other = serde_json::to_vec(&serde_json::json!({"id": "y".repeat(300)})).unwrap();
        assert_ne!(key, partition_key(&table, Some(&other), true));
    }
}
