//! The JSON contract: one change event per committed row change, one line of JSON each.
//!
//! ```json
//! {"op":"update","database":"shop","table":"orders","ts_ms":1763712000000,
//!  "position":"mariadb-bin.000003:4321","row":0,"gtid":"0-1-57","xid":9001,"commit":false,
//!  "primary_key":{"id":7},"before":{"id":7,"status":"new"},"after":{"id":7,"status":"paid"}}
//! ```
//!
//! Every key is always present, in this order; absent values are `null`. Row images keep the
//! table's column order. `position` + `row` identify an event uniquely, so consumers can drop
//! the duplicates that at-least-once delivery allows.
//!
//! # Two-step encoding
//!
//! `xid` and `commit` are only known when the transaction's commit event is read, after its row
//! events. So the source encodes each event once into an [`EncodedEvent`] whose bytes are split
//! around those two fields, and [`EncodedEvent::finish`] splices them in. Nothing is re-encoded,
//! and [`ChangeEvent::to_line`] uses the same path so the two can never disagree.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::position::BinlogPosition;

/// A row image: column name to value, in the table's column order.
pub type RowImage = serde_json::Map<String, serde_json::Value>;

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A new row: `before` is null.
    Insert,
    /// A changed row: both images are present.
    Update,
    /// A removed row: `after` is null.
    Delete,
    /// `TRUNCATE TABLE`: every row of the table removed at once; `before`, `after` and
    /// `primary_key` are null.
    Truncate,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
        }
    }
}

/// One row change, as consumers read it from the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// `insert`, `update`, `delete` or `truncate`.
    pub op: Op,
    /// The schema (database) name.
    pub database: String,
    /// The table name.
    pub table: String,
    /// The binlog event's timestamp, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Where the rows event starts in the source's binlog.
    pub position: BinlogPosition,
    /// The row's index within its rows event.
    pub row: u32,
    /// The transaction's GTID, when the server assigns one.
    pub gtid: Option<String>,
    /// The transaction's XID, when it commits by XID.
    pub xid: Option<u64>,
    /// True on the last event of each transaction.
    pub commit: bool,
    /// The primary-key columns and their values; null for a table without a primary key.
    pub primary_key: Option<RowImage>,
    /// The row before the change; null for inserts.
    pub before: Option<RowImage>,
    /// The row after the change; null for deletes.
    pub after: Option<RowImage>,
}

impl ChangeEvent {
    /// The event as one JSON line, ending with `\n`.
    pub fn to_line(&self) -> Vec<u8> {
        EncodedEvent::encode(self).finish(self.xid, self.commit)
    }

    /// The fully qualified table name, `database.table`: the default partition key.
    pub fn table_name(&self) -> TableName {
        TableName::new(&self.database, &self.table)
    }
}

/// `database.table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName(String);

impl TableName {
    /// Joins a schema and a table name.
    pub fn new(database: &str, table: &str) -> Self {
        Self(format!("{database}.{table}"))
    }

    /// The `database.table` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event encoded except for its `xid` and `commit` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    /// `{"op":…,"gtid":…` up to, not including, the `,"xid"` field.
    head: Vec<u8>,
    /// `,"primary_key":…}` after the `commit` field, without the newline.
    tail: Vec<u8>,
}

impl EncodedEvent {
    /// Encodes everything but `xid` and `commit`.
    pub fn encode(event: &ChangeEvent) -> Self {
        let mut head = Vec::with_capacity(128);
        head.extend_from_slice(br#"{"op":""#);
        head.extend_from_slice(event.op.as_str().as_bytes());
        head.extend_from_slice(br#"","database":"#);
        write_json(&mut head, &event.database);
        head.extend_from_slice(br#","table":"#);
        write_json(&mut head, &event.table);
        head.extend_from_slice(br#","ts_ms":"#);
        head.extend_from_slice(event.ts_ms.to_string().as_bytes());
        head.extend_from_slice(br#","position":"#);
        write_json(&mut head, &event.position);
        head.extend_from_slice(br#","row":"#);
        head.extend_from_slice(event.row.to_string().as_bytes());
        head.extend_from_slice(br#","gtid":"#);
        write_json(&mut head, &event.gtid);

        let mut tail = Vec::with_capacity(256);
        tail.extend_from_slice(br#","primary_key":"#);
        write_json(&mut tail, &event.primary_key);
        tail.extend_from_slice(br#","before":"#);
        write_json(&mut tail, &event.before);
        tail.extend_from_slice(br#","after":"#);
        write_json(&mut tail, &event.after);
        tail.push(b'}');
        Self { head, tail }
    }

    /// The size of the finished line, give or take the digits of the xid.
    pub fn approximate_len(&self) -> usize {
        self.head.len() + self.tail.len() + 48
    }

    /// The complete JSON line, ending with `\n`.
    pub fn finish(self, xid: Option<u64>, commit: bool) -> Vec<u8> {
        let Self { mut head, tail } = self;
        head.reserve(tail.len() + 48);
        head.extend_from_slice(br#","xid":"#);
        match xid {
            Some(xid) => head.extend_from_slice(xid.to_string().as_bytes()),
            None => head.extend_from_slice(b"null"),
        }
        head.extend_from_slice(if commit {
            br#","commit":true"#.as_slice()
        } else {
            br#","commit":false"#.as_slice()
        });
        head.extend_from_slice(&tail);
        head.push(b'\n');
        head
    }
}

fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing strings, positions, integers and JSON maps into a Vec cannot fail: the only
    // error sources are I/O (none for a Vec) and non-string map keys (RowImage keys are strings).
    serde_json::to_writer(out, value).expect("serializing a JSON value into memory cannot fail");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn image(value: serde_json::Value) -> Option<RowImage> {
        match value {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        }
    }

    fn sample() -> ChangeEvent {
        ChangeEvent {
            op: Op::Update,
            database: "shop".into(),
            table: "orders".into(),
            ts_ms: 1_763_712_000_000,
            position: "mariadb-bin.000003:4321".parse().unwrap(),
            row: 0,
            gtid: Some("0-1-57".into()),
            xid: Some(9001),
            commit: false,
            primary_key: image(json!({"id": 7})),
            before: image(json!({"id": 7, "status": "new"})),
            after: image(json!({"id": 7, "status": "paid"})),
        }
    }

    /// Golden line: the documented example, byte for byte. If this fails, the external contract
    /// changed: update the README and tell consumers, do not just update the expectation.
    #[test]
    fn encodes_the_documented_example_exactly() {
        let line = String::from_utf8(sample().to_line()).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"op":"update","database":"shop","table":"orders","ts_ms":1763712000000,"#,
                r#""position":"mariadb-bin.000003:4321","row":0,"gtid":"0-1-57","xid":9001,"#,
                r#""commit":false,"primary_key":{"id":7},"before":{"id":7,"status":"new"},"#,
                r#""after":{"id":7,"status":"paid"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn insert_and_delete_have_null_images_and_absent_fields_are_null() {
        let mut event = sample();
        event.op = Op::Insert;
        event.before = None;
        event.gtid = None;
        event.xid = None;
        event.primary_key = None;
        event.commit = true;
        let line = String::from_utf8(event.to_line()).unwrap();
        assert!(line.contains(
            r#""gtid":null,"xid":null,"commit":true,"primary_key":null,"before":null,"after":{"#
        ));
    }

    #[test]
    fn two_step_encoding_matches_serde() {
        let mut event = sample();
        event.database = "we\"ird\\db\n".into();
        event.after = image(json!({"z": 1, "a": "🎉", "m": null, "n": -1.5}));
        let line = event.to_line();
        assert_eq!(
            &line[..line.len() - 1],
            serde_json::to_vec(&event).unwrap().as_slice()
        );
        let parsed: ChangeEvent = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed, event);
    }

    #[test]
    fn keeps_column_order() {
        let mut event = sample();
        event.after = image(json!({"zeta": 1, "alpha": 2}));
        let line = String::from_utf8(event.to_line()).unwrap();
        assert!(line.contains(r#""after":{"zeta":1,"alpha":2}"#), "{line}");
    }
}
