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
//! events. So the source encodes each event once into an [`EventLine`] that lacks those two
//! fields, `EventLine::finish` records them, and [`EventLine::write_to`] splices them in as
//! the line is written into a record. Nothing is re-encoded, and `ChangeEvent::to_line` (in tests) goes
//! through the same `EventLine::build` so the two can never disagree.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::position::BinlogPosition;

/// A row image: column name to value, in the table's column order.
pub(crate) type RowImage = serde_json::Map<String, serde_json::Value>;

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// A row as a snapshot read it: `before` is null, `after` the row.
    Read,
    /// A table's snapshot begins: its `read` rows follow. Key and `before` are null; `after`
    /// is null, or `{"unique_key": [...]}` for a table without a primary key chunked by that
    /// unique key.
    SnapshotStart,
    /// A table's snapshot is complete: `after` is `{"rows": N}`, the number of `read` rows.
    SnapshotEnd,
    /// A DDL statement on the table (`output.ddl`): `after` is `{"statement": "...",
    /// "columns": [{"name", "type"}] or null}`; key and `before` are null. A database-level
    /// statement has `table` `""`.
    Ddl,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
            Op::Read => "read",
            Op::SnapshotStart => "snapshot_start",
            Op::SnapshotEnd => "snapshot_end",
            Op::Ddl => "ddl",
        }
    }
}

/// One row change, as consumers read it from the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// `insert`, `update`, `delete`, `truncate`, or from snapshots `read`, `snapshot_start`
    /// and `snapshot_end`.
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
    #[cfg(test)]
    pub(crate) fn to_line(&self) -> Vec<u8> {
        self.to_event_line().to_vec()
    }

    /// The event as the source hands it to the sink: the same bytes as the source's own
    /// encoder produces from binlog values (both go through [`EventLine::build`]).
    #[cfg(test)]
    pub(crate) fn to_event_line(&self) -> EventLine {
        let prefix = line_prefix(
            self.op,
            &self.database,
            &self.table,
            self.ts_ms,
            &self.position,
        );
        let image = |image: &Option<RowImage>| {
            image.as_ref().map(|image| {
                let mut out = Vec::new();
                write_json(&mut out, image);
                out
            })
        };
        let mut line = EventLine::build(
            &prefix,
            self.row,
            &gtid_json(self.gtid.as_deref()),
            image(&self.primary_key).as_deref(),
            image(&self.before).as_deref(),
            image(&self.after).as_deref(),
        );
        line.finish(self.xid, self.commit);
        line
    }
}

/// `database.table`, each part in backticks when it contains a dot or a backtick (a backtick
/// doubled inside), as MySQL quotes names: so `` `my.db`.t `` and `` my.`db.t` `` stay two
/// names (and two partition keys). Names without either are written as they are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName(Arc<str>);

impl TableName {
    /// Joins a schema and a table name.
    pub fn new(database: &str, table: &str) -> Self {
        Self(format!("{}.{}", quote_name(database), quote_name(table)).into())
    }

    /// Splits `text`, `database.table` with either part in backticks (a backtick doubled
    /// inside), at its first dot outside backticks; the parts come back unquoted. `None` when
    /// there is no such dot or a part is empty.
    pub(crate) fn split(text: &str) -> Option<(String, String)> {
        let mut parts = vec![String::new()];
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '`' if quoted && chars.peek() == Some(&'`') => {
                    chars.next();
                    parts.last_mut().expect("one part").push('`');
                }
                '`' => quoted = !quoted,
                '.' if !quoted && parts.len() == 1 => parts.push(String::new()),
                c => parts.last_mut().expect("one part").push(c),
            }
        }
        match <[String; 2]>::try_from(parts) {
            Ok([database, table]) if !quoted && !database.is_empty() && !table.is_empty() => {
                Some((database, table))
            }
            _ => None,
        }
    }

    /// The `database.table` text, shared (cloning it does not allocate): the default
    /// partition key.
    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// The `database.table` text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name as it appears in a [`TableName`]: in backticks when it holds a dot or a backtick.
fn quote_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['.', '`']) {
        format!("`{}`", name.replace('`', "``")).into()
    } else {
        name.into()
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event's JSON line on its way to the sink.
///
/// The source encodes each row once, straight from the binlog values, into one buffer that
/// lacks only the `xid` and `commit` fields (see "Two-step encoding"); `EventLine::finish`
/// records them when the transaction ends and [`EventLine::write_to`] splices them in where
/// the line is written into a record. Nothing is re-encoded or copied on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    /// Built lines: everything but the `xid` and `commit` fields and the final newline. Raw
    /// lines: the whole line.
    bytes: Vec<u8>,
    /// Where the `xid` and `commit` fields go; `None` for a raw line.
    splice: Option<Splice>,
    /// Where the `primary_key` object is in `bytes`, when there is one.
    primary_key: Option<(usize, usize)>,
    /// For an event too large to send, which was never encoded: its size (at least), while
    /// `bytes` holds only its primary key, for the message about it.
    too_large: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Splice {
    at: usize,
    xid: Option<u64>,
    commit: bool,
}

/// What every row of one rows event shares at the start of its line: `{"op":…,"row":`.
pub(crate) fn line_prefix(
    op: Op,
    database: &str,
    table: &str,
    ts_ms: u64,
    position: &BinlogPosition,
) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(96 + database.len() + table.len());
    prefix.extend_from_slice(br#"{"op":""#);
    prefix.extend_from_slice(op.as_str().as_bytes());
    prefix.extend_from_slice(br#"","database":"#);
    write_json(&mut prefix, database);
    prefix.extend_from_slice(br#","table":"#);
    write_json(&mut prefix, table);
    prefix.extend_from_slice(br#","ts_ms":"#);
    prefix.extend_from_slice(itoa::Buffer::new().format(ts_ms).as_bytes());
    prefix.extend_from_slice(br#","position":"#);
    write_json(&mut prefix, position);
    prefix.extend_from_slice(br#","row":"#);
    prefix
}

/// A GTID as its JSON value: a string, or `null`.
pub(crate) fn gtid_json(gtid: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(gtid.map_or(4, |g| g.len() + 2));
    write_json(&mut out, &gtid);
    out
}

impl EventLine {
    /// A line from its parts: `prefix` from [`line_prefix`], the row number, the GTID as JSON
    /// ([`gtid_json`]), and the primary key and row images as JSON objects (`null` when
    /// absent).
    pub(crate) fn build(
        prefix: &[u8],
        row: u32,
        gtid: &[u8],
        primary_key: Option<&[u8]>,
        before: Option<&[u8]>,
        after: Option<&[u8]>,
    ) -> Self {
        let image_len = |image: Option<&[u8]>| image.map_or(4, <[u8]>::len);
        let mut bytes = Vec::with_capacity(
            prefix.len()
                + 10
                + 8
                + gtid.len()
                + 44
                + image_len(primary_key)
                + image_len(before)
                + image_len(after)
                + 1,
        );
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(itoa::Buffer::new().format(row).as_bytes());
        bytes.extend_from_slice(br#","gtid":"#);
        bytes.extend_from_slice(gtid);
        let at = bytes.len();
        bytes.extend_from_slice(br#","primary_key":"#);
        let key_start = bytes.len();
        bytes.extend_from_slice(primary_key.unwrap_or(b"null"));
        let primary_key = primary_key.map(|_| (key_start, bytes.len()));
        bytes.extend_from_slice(br#","before":"#);
        bytes.extend_from_slice(before.unwrap_or(b"null"));
        bytes.extend_from_slice(br#","after":"#);
        bytes.extend_from_slice(after.unwrap_or(b"null"));
        bytes.push(b'}');
        Self {
            bytes,
            splice: Some(Splice {
                at,
                xid: None,
                commit: false,
            }),
            primary_key,
            too_large: None,
        }
    }

    /// An event that was not encoded because it is larger than any record may be: `len` is
    /// its size, at least. The sink refuses it by that size (`kinesis.oversize`); it is never
    /// written.
    pub(crate) fn too_large(len: usize, primary_key: Option<&[u8]>) -> Self {
        let bytes = primary_key.map(<[u8]>::to_vec).unwrap_or_default();
        Self {
            primary_key: primary_key.map(|_| (0, bytes.len())),
            bytes,
            splice: None,
            too_large: Some(len),
        }
    }

    /// A line that is complete as it is (it ends with `\n`): comments, tests.
    #[cfg(test)]
    pub(crate) fn raw(line: Vec<u8>) -> Self {
        Self {
            bytes: line,
            splice: None,
            primary_key: None,
            too_large: None,
        }
    }

    /// Sets the fields only the transaction's end tells: its XID, and whether this is its
    /// last event. Until then a line says `"xid":null,"commit":false`.
    pub(crate) fn finish(&mut self, xid: Option<u64>, commit: bool) {
        if let Some(splice) = self.splice.as_mut() {
            splice.xid = xid;
            splice.commit = commit;
        }
    }

    /// The length of the line as written, newline included.
    pub(crate) fn len(&self) -> usize {
        if let Some(len) = self.too_large {
            return len;
        }
        match self.splice {
            None => self.bytes.len(),
            Some(splice) => {
                // `null`, or the XID's decimal digits.
                let xid = splice
                    .xid
                    .map_or(4, |xid| xid.checked_ilog10().map_or(1, |d| d as usize + 1));
                self.bytes.len() + XID_FIELD.len() + xid + commit_field(splice.commit).len() + 1
            }
        }
    }

    /// The heap bytes the line holds (its capacity), for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Appends the line, ending with `\n`, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        debug_assert!(
            self.too_large.is_none(),
            "an event too large to send is never written"
        );
        let Some(splice) = self.splice else {
            out.extend_from_slice(&self.bytes);
            return;
        };
        out.extend_from_slice(&self.bytes[..splice.at]);
        out.extend_from_slice(XID_FIELD);
        match splice.xid {
            Some(xid) => out.extend_from_slice(itoa::Buffer::new().format(xid).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(commit_field(splice.commit));
        out.extend_from_slice(&self.bytes[splice.at..]);
        out.push(b'\n');
    }

    /// The line as bytes, ending with `\n`.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out);
        out
    }

    /// The event's `primary_key` object as JSON text, when it has one.
    pub(crate) fn primary_key(&self) -> Option<&str> {
        let (start, end) = self.primary_key?;
        std::str::from_utf8(&self.bytes[start..end]).ok()
    }
}

const XID_FIELD: &[u8] = br#","xid":"#;

fn commit_field(commit: bool) -> &'static [u8] {
    if commit {
        br#","commit":true"#
    } else {
        br#","commit":false"#
    }
}

/// Appends `value` as JSON.
pub(crate) fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing strings, positions, integers and JSON maps into a Vec cannot fail: the only
    // error sources are I/O (none for a Vec) and non-string map keys (RowImage keys are strings).
    serde_json::to_writer(out, value).expect("serializing a JSON value into memory cannot fail");
}

/// Writes `text` as a JSON string, exactly as [`write_json`] does, without its machinery for
/// the common case of text with nothing to escape (no quote, backslash or control character): the
/// snapshot's and the binlog path's text values.
pub(crate) fn write_json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        write_json(out, text);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_json_string_is_written_as_serde_json_writes_it() {
        let mut texts: Vec<String> = (0u8..=0x7f).map(|b| format!("a{}b", b as char)).collect();
        texts.extend(
            [
                "",
                "plain",
                "é€😀",
                "\u{2028}\u{2029}",
                "tab\tquote\"slash\\",
                "\u{7f}",
            ]
            .map(str::to_owned),
        );
        for text in texts {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            write_json_str(&mut fast, &text);
            write_json(&mut slow, &text);
            assert_eq!(fast, slow, "{text:?}");
        }
    }

    /// Regression (issue 11, item 12): `my.db`.`t` and `my`.`db.t` were both `my.db.t`, one
    /// partition key for two tables. Names without dots are unchanged (their keys too).
    #[test]
    fn names_with_dots_are_quoted_so_two_tables_never_share_a_name() {
        assert_eq!(TableName::new("shop", "orders").as_str(), "shop.orders");
        let a = TableName::new("my.db", "t");
        let b = TableName::new("my", "db.t");
        assert_eq!(a.as_str(), "`my.db`.t");
        assert_eq!(b.as_str(), "my.`db.t`");
        assert_eq!(TableName::new("a`b", "t").as_str(), "`a``b`.t");
        for (database, table) in [
            ("my.db", "t"),
            ("my", "db.t"),
            ("a`b", "c.d"),
            ("shop", "orders"),
        ] {
            assert_eq!(
                TableName::split(TableName::new(database, table).as_str()),
                Some((database.to_owned(), table.to_owned()))
            );
        }
        assert_eq!(TableName::split("nodot"), None);
        assert_eq!(TableName::split("`unclosed.t"), None);
        assert_eq!(TableName::split(".t"), None);
    }

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
    fn a_line_knows_its_length_for_every_xid() {
        let xids = [
            None,
            Some(0),
            Some(9),
            Some(10),
            Some(99),
            Some(100),
            Some(u64::MAX),
        ];
        for xid in xids {
            for commit in [false, true] {
                let mut event = sample();
                event.xid = xid;
                event.commit = commit;
                let line = event.to_event_line();
                assert_eq!(line.len(), line.to_vec().len(), "{xid:?} {commit}");
            }
        }
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
