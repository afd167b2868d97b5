//! Snapshots: a table's current rows as `read` events.
//!
//! This module reads a table in primary-key chunks (a table without one by a NOT NULL unique
//! key, or, without either, in a single consistent read, in pieces) and encodes each row exactly as the binlog path encodes an
//! insert of it: the same `ColumnSchema`s, the same value conversion (`decode::to_json`), the
//! same line builder. `plan` decides which tables a run reads, the driver ([`serve`]) reads the
//! chunks the binlog reader asks for, and `placement` says where in the stream each goes;
//! the reader (`reader::snapshots`) owns the progress that the checkpoint saves.
//!
//! # Reading values as the binlog has them
//!
//! The chunk is read with the binary protocol (a prepared statement), on a connection with
//! `SET NAMES binary`, so text arrives as the bytes stored, in the column's character set, and
//! goes through the same conversion as binlog text. Three types are selected through an
//! expression because the binary protocol gives them in another form than the binlog:
//! - `TIMESTAMP` as `UNIX_TIMESTAMP(c)`: seconds since the epoch whatever the session time
//!   zone, as the binlog stores them (zero dates are 0 in both);
//! - `ENUM` and `SET` as `c+0`: the index and the bit set, as the binlog stores them; the
//!   labels come from `information_schema`, as they do for a binlog without full metadata.
//!
//! A column type this module does not map (MariaDB's `UUID`, `INET4`, `INET6`, ...) is an
//! error naming the column, never a guess.
//!
//! # Chunks
//!
//! `WHERE (k1, k2) > (?, ?) ORDER BY k1, k2 LIMIT n` on the primary key: the server compares
//! the keys (collations included), so the paging is right whatever the key's type; the last
//! row's key values, as the server returned them, start the next chunk.

mod consistent;
mod driver;
mod keys;
pub(crate) mod placement;
pub(crate) mod plan;
mod values;

pub(crate) use self::consistent::{consistent_position, end_consistent_read, open_consistent_read};
pub use self::driver::{serve, Arrival, Ask, DriverConfig};
use self::keys::unique_key;
pub(crate) use self::keys::unique_key_bytes;

use std::sync::Arc;

use super::{
    catalog,
    decode::ValueError,
    schema::{ColumnSchema, TableSchema},
    SourceError,
};
use crate::{
    config::ColumnAction,
    event::{gtid_json, line_prefix, write_json, EventLine, Op, TableName},
    position::BinlogPosition,
};
use mysql_async::{prelude::Queryable, Conn, Value};
use serde_json::Value as Json;

use self::values::{binlog_type, meta, snapshot_json, Direct, Fetch};

/// A table as a snapshot reads it.
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    schema: Arc<TableSchema>,
    /// What the chunks page by: the primary key, or for a table without one its first
    /// unique key whose columns are all NOT NULL; empty when there is neither.
    chunk_key: Vec<usize>,
    fetch: Vec<Fetch>,
    /// Which values are written without the conversion.
    direct: Vec<Direct>,
    /// The select list, in column order.
    select: String,
}

/// A table the snapshot cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// No such table (or no privilege to see it).
    #[error("table {table} is not in information_schema (it does not exist, or the user cannot see it: GRANT SELECT on it)")]
    NoTable {
        /// The table.
        table: TableName,
    },
    /// `[columns]` rules the table's keys cannot take.
    #[error("{message}")]
    Rules {
        /// The table.
        table: TableName,
        /// Which rule, which column, what to do instead.
        message: String,
    },
    /// A table whose engine has no consistent read (MyISAM, Aria, MEMORY, ...): its rows
    /// cannot be read as of one binlog position without locking it.
    #[error("table {table} uses the {engine} engine, which has no consistent read: snapshots read InnoDB tables only (without locks); convert it (ALTER TABLE ... ENGINE=InnoDB) or leave it out of the snapshot")]
    NotTransactional {
        /// The table.
        table: TableName,
        /// Its engine.
        engine: String,
    },
    /// A column type without a known binlog form.
    #[error("column {column:?} of {table} has type {data_type}, which snapshots cannot read yet")]
    UnsupportedType {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// Its `DATA_TYPE`.
        data_type: String,
    },
    /// The server does not say where its consistent read stands in the binlog.
    #[error("the server reports no binlog_snapshot_file/binlog_snapshot_position after START TRANSACTION WITH CONSISTENT SNAPSHOT (MariaDB with log_bin=ON reports them)")]
    NoSnapshotPosition,
    /// Snapshots are asked for on a MySQL server, where this version cannot place them.
    #[error("{tables} table(s) are to be snapshotted, and on MySQL snapshots place their chunks with watermarks written into snapshot.signal_table: set it (a table the account may write: GRANT SELECT, INSERT, UPDATE), or set snapshot.mode = \"never\" to stream changes only")]
    NeedsMariaDb {
        /// How many tables were to be read.
        tables: usize,
    },
    /// The account may not read the table.
    #[error("the MySQL account may not read {table} ({message}); snapshots need: GRANT SELECT ON {table} TO <user> (or leave the table out of [filter] / use snapshot.mode = \"never\")")]
    Denied {
        /// The table.
        table: TableName,
        /// The server's message.
        message: String,
    },
    /// Reading a chunk failed in a way that trying again cannot fix.
    #[error("cannot read a snapshot chunk of {table}: {message}")]
    Read {
        /// The table.
        table: TableName,
        /// What failed (the error chain).
        message: String,
    },
    /// The watermark method cannot place the rows of a table without a primary key.
    #[error("table {table} has neither a primary key nor a NOT NULL unique key, and the watermark method places chunks by key: add a key, leave the table out of [filter], or (on MariaDB) use snapshot.method = \"consistent_snapshot\"")]
    KeylessWithWatermark {
        /// The table.
        table: TableName,
    },
    /// Writing a watermark into the signal table failed.
    #[error("cannot write the snapshot watermark into {table} ({message}): it must exist as (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048)) and the account needs: GRANT SELECT, INSERT, UPDATE ON {table} TO <user>")]
    Watermark {
        /// The signal table.
        table: TableName,
        /// The server's message.
        message: String,
    },
    /// `run --snapshot` names a table `[filter]` leaves out.
    #[error("--snapshot names {table}, which [filter] does not include: only captured tables can be snapshotted")]
    NotIncluded {
        /// The table.
        table: TableName,
    },
    /// A value that cannot be written as JSON.
    #[error("cannot encode column {column:?} of {table}")]
    Value {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// Why.
        #[source]
        source: ValueError,
    },
}

impl From<SnapshotError> for SourceError {
    fn from(error: SnapshotError) -> Self {
        SourceError::Snapshot(Box::new(error))
    }
}

impl SnapshotTable {
    /// Reads the table's definition from `information_schema`.
    pub async fn describe(
        conn: &mut Conn,
        database: &str,
        table: &str,
    ) -> Result<Self, SourceError> {
        let name = TableName::new(database, table);
        let found = catalog::load(conn, database, table).await?;
        if found.columns.is_empty() {
            return Err(SnapshotError::NoTable { table: name }.into());
        }
        let engine: Option<Option<String>> = conn
            .exec_first(
                "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (database, table),
            )
            .await
            .map_err(|source| SourceError::Query {
                what: "reading a table's engine from information_schema",
                source,
            })?;
        let engine = engine.flatten().unwrap_or_default();
        if !engine.eq_ignore_ascii_case("InnoDB") {
            return Err(SnapshotError::NotTransactional {
                table: name,
                engine,
            }
            .into());
        }
        let mut columns = Vec::with_capacity(found.columns.len());
        let mut fetch = Vec::with_capacity(found.columns.len());
        let mut select = Vec::with_capacity(found.columns.len());
        for column in &found.columns {
            let (column_type, how) =
                binlog_type(column).ok_or_else(|| SnapshotError::UnsupportedType {
                    table: name.clone(),
                    column: column.name.clone(),
                    data_type: column.data_type.clone(),
                })?;
            select.push(select_expression(&column.name, how));
            fetch.push(how);
            columns.push(ColumnSchema {
                name: column.name.clone(),
                column_type,
                meta: meta(column_type, column.fsp),
                unsigned: column.unsigned,
                collation: column.collation,
                labels: column.labels.clone(),
            });
        }
        let chunk_key = if found.primary_key.is_empty() {
            unique_key(conn, database, table, &found.columns).await?
        } else {
            found.primary_key.clone()
        };
        let direct = columns
            .iter()
            .zip(&fetch)
            .map(|(column, how)| Direct::of(column, *how))
            .collect();
        let schema = TableSchema::from_columns(database, table, columns, found.primary_key.clone());
        Ok(Self {
            schema: Arc::new(schema),
            chunk_key,
            direct,
            fetch,
            select: select.join(", "),
        })
    }

    /// The table with `[columns]` rules applied: an excluded column is selected as `NULL`
    /// (its values never leave the server) and not written; a masked one is written as the
    /// mask; a hashed one as its hash. Excluding or masking a column of the key the chunks
    /// page by is refused, as the binlog path refuses it for a primary key.
    pub(crate) fn with_rules(
        mut self,
        rules: &crate::config::ColumnRules,
    ) -> Result<Self, SnapshotError> {
        if !rules.covers(&self.schema.database, &self.schema.table) {
            return Ok(self);
        }
        let schema =
            (*self.schema)
                .clone()
                .with_rules(rules)
                .map_err(|error| SnapshotError::Rules {
                    table: self.schema.name.clone(),
                    message: error.to_string(),
                })?;
        let mut select: Vec<String> = Vec::with_capacity(schema.columns.len());
        for (index, (column, codec)) in schema.columns.iter().zip(&schema.codecs).enumerate() {
            let action = codec.action();
            if self.chunk_key.contains(&index)
                && matches!(action, ColumnAction::Exclude | ColumnAction::Mask(_))
            {
                return Err(SnapshotError::Rules {
                    table: schema.name.clone(),
                    message: format!("[columns] rules {} column {} of {}, which is part of the unique key its rows are matched and paged by (it has no primary key): hash it instead, or leave the table out of the rule", action.name(), column.name, schema.name),
                });
            }
            select.push(match action {
                ColumnAction::Exclude => "NULL".to_owned(),
                _ => select_expression(&column.name, self.fetch[index]),
            });
        }
        self.select = select.join(", ");
        self.schema = Arc::new(schema);
        Ok(self)
    }

    /// For a table chunked by a unique key (it has no primary key): that key's column names.
    pub fn unique_key(&self) -> Option<Vec<String>> {
        (self.schema.primary_key.is_empty() && !self.chunk_key.is_empty()).then(|| {
            self.chunk_key
                .iter()
                .map(|&i| self.schema.columns[i].name.clone())
                .collect()
        })
    }

    /// The table's name.
    pub fn name(&self) -> &TableName {
        &self.schema.name
    }

    /// A table without a primary key or a NOT NULL unique key: it cannot be read in key
    /// chunks, only in one consistent read (see `driver`).
    pub fn is_keyless(&self) -> bool {
        self.chunk_key.is_empty()
    }

    /// Reads the whole table in the open consistent read on `conn`, in pieces of at most
    /// `limit` rows and about `max_bytes`, each handed to `piece` as it is full (the last one
    /// with `true`); at most one piece is held here. For a table without a primary key.
    pub(crate) async fn read_whole<F, Fut>(
        &self,
        conn: &mut Conn,
        limit: usize,
        max_bytes: usize,
        mut piece: F,
    ) -> Result<(), SourceError>
    where
        F: FnMut(Chunk, bool) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let query_error = |source| SourceError::Query {
            what: "reading a table without a primary key in one consistent read",
            source,
        };
        let query = format!(
            "SELECT {} FROM {}.{}",
            self.select,
            quote(&self.schema.database),
            quote(&self.schema.table)
        );
        let mut result = conn
            .exec_iter(query, Vec::<Value>::new())
            .await
            .map_err(query_error)?;
        let mut chunk = Chunk::default();
        let mut bytes = 0;
        let mut spans = Vec::new();
        while let Some(row) = result.next().await.map_err(query_error)? {
            let encoded = self.encode(row.unwrap(), &mut spans)?;
            bytes += encoded.after.len();
            chunk.rows.push(encoded);
            if chunk.rows.len() >= limit.max(1) || bytes >= max_bytes {
                if !piece(std::mem::take(&mut chunk), false).await {
                    return Ok(());
                }
                bytes = 0;
            }
        }
        drop(result);
        piece(chunk, true).await;
        Ok(())
    }

    /// The query of a chunk: the first one (`after_key` false), or the one after a key.
    fn chunk_query(&self, after_key: bool, limit: usize) -> String {
        let key: Vec<String> = self
            .chunk_key
            .iter()
            .map(|&i| quote(&self.schema.columns[i].name))
            .collect();
        let from = format!(
            "{}.{}",
            quote(&self.schema.database),
            quote(&self.schema.table)
        );
        let mut query = format!("SELECT {} FROM {from}", self.select);
        if after_key {
            let marks = vec!["?"; key.len()].join(", ");
            query.push_str(&format!(" WHERE ({}) > ({marks})", key.join(", ")));
        }
        query.push_str(&format!(" ORDER BY {} LIMIT {limit}", key.join(", ")));
        query
    }

    /// Reads up to `limit` rows after `after` (the last key of the previous chunk; `None`
    /// for the first), in key order, keeping at most about `max_bytes` of encoded rows (at
    /// least one row): past it the chunk is [`Chunk::cut`]. The connection must be set up
    /// with [`prepare_connection`].
    pub async fn read_chunk(
        &self,
        conn: &mut Conn,
        after: Option<&[Value]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Chunk, SourceError> {
        let query_error = |source| SourceError::Query {
            what: "reading a snapshot chunk",
            source,
        };
        let query = self.chunk_query(after.is_some(), limit);
        let params: Vec<Value> = after.map(<[Value]>::to_vec).unwrap_or_default();
        let mut result = conn.exec_iter(query, params).await.map_err(query_error)?;
        let mut chunk = Chunk::default();
        let mut bytes = 0;
        // Kept from row to row: where each value is in the row's JSON, and the row's key.
        let mut spans = Vec::new();
        let mut key: Vec<Value> = Vec::with_capacity(self.chunk_key.len());
        while let Some(row) = result.next().await.map_err(query_error)? {
            if bytes >= max_bytes {
                // The rest is read and dropped by the driver; the next chunk starts after
                // the last row kept.
                chunk.cut = true;
                continue;
            }
            let values = row.unwrap();
            key.clear();
            key.extend(self.chunk_key.iter().map(|&i| values[i].clone()));
            let encoded = self.encode(values, &mut spans)?;
            bytes += encoded.after.len() + encoded.primary_key.len();
            chunk.rows.push(encoded);
        }
        if !chunk.rows.is_empty() {
            chunk.last_key = Some(key);
        }
        Ok(chunk)
    }

    /// Reads a chunk as [`Self::read_chunk`] does, inside its own consistent read (MariaDB's
    /// `START TRANSACTION WITH CONSISTENT SNAPSHOT`), and returns with it the binlog position
    /// that read saw: every transaction that ends at or before it is in the rows, none after
    /// it. Placed at that position in the stream, the chunk's rows come after the changes they
    /// include and before those they do not. No lock is taken; the transaction is read-only
    /// and lasts one chunk.
    pub async fn read_chunk_consistent(
        &self,
        conn: &mut Conn,
        after: Option<&[Value]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(BinlogPosition, Chunk), SourceError> {
        let query_error = |source| SourceError::Query {
            what: "reading a snapshot chunk in a consistent read",
            source,
        };
        let result = async {
            let at = open_consistent_read(conn).await?;
            let chunk = self.read_chunk(conn, after, limit, max_bytes).await?;
            Ok::<_, SourceError>((at, chunk))
        }
        .await;
        // Read-only: ending it cannot lose anything, whatever happened above.
        let ended = conn.query_drop("COMMIT").await.map_err(query_error);
        let read = result?;
        ended?;
        Ok(read)
    }

    /// One row's primary key and after-image, as the binlog path writes them.
    /// `spans` is scratch space, kept from row to row.
    fn encode(
        &self,
        values: Vec<Value>,
        spans: &mut Vec<(usize, usize)>,
    ) -> Result<SnapshotRow, SnapshotError> {
        let schema = &self.schema;
        // Room for names and typical values at once: growing the buffer value by value was
        // a tenth of the snapshot's time (reallocations and copies).
        let mut after = Vec::with_capacity(16 + schema.columns.len() * 32);
        // Where each value is in `after`, for the key.
        spans.clear();
        after.push(b'{');
        let columns = schema.columns.iter().zip(&self.fetch).zip(&self.direct);
        let mut written = 0;
        for (index, (((column, how), direct), value)) in columns.zip(values).enumerate() {
            let action = schema.codecs[index].action();
            if matches!(action, ColumnAction::Exclude) {
                // Selected as NULL: nothing of it left the server.
                spans.push((after.len(), after.len()));
                continue;
            }
            if written > 0 {
                after.push(b',');
            }
            written += 1;
            after.extend_from_slice(schema.codecs[index].key());
            let start = after.len();
            if let ColumnAction::Mask(mask) = action {
                match value {
                    Value::NULL => after.extend_from_slice(b"null"),
                    _ => after.extend_from_slice(mask),
                }
            } else if let Some(value) = direct.write(&mut after, value) {
                let converted =
                    snapshot_json(column, *how, value).map_err(|source| SnapshotError::Value {
                        table: schema.name.clone(),
                        column: column.name.clone(),
                        source,
                    })?;
                write_json(&mut after, &converted);
            }
            if let ColumnAction::Hash(key) = action {
                if &after[start..] != b"null" {
                    key.hash_in_place(&mut after, start);
                }
            }
            spans.push((start, after.len()));
        }
        after.push(b'}');
        let mut primary_key = Vec::new();
        if !schema.primary_key.is_empty() {
            primary_key.push(b'{');
            for (n, &index) in schema.primary_key.iter().enumerate() {
                if n > 0 {
                    primary_key.push(b',');
                }
                primary_key.extend_from_slice(schema.codecs[index].key());
                let (start, end) = spans[index];
                primary_key.extend_from_slice(&after[start..end]);
            }
            primary_key.push(b'}');
        }
        let unique_key = match self.unique_key() {
            Some(names) => {
                let values: Vec<Json> = self
                    .chunk_key
                    .iter()
                    .map(|&i| serde_json::from_slice(&after[spans[i].0..spans[i].1]))
                    .collect::<Result<_, _>>()
                    .unwrap_or_default();
                unique_key_bytes(names.iter().map(String::as_str).zip(values.iter()))
            }
            None => Vec::new(),
        };
        Ok(SnapshotRow {
            // Empty for a table without one (its lines say `null`).
            primary_key,
            unique_key,
            after,
        })
    }

    /// The event line of `row`, placed at `position` as row number `index` of its chunk,
    /// read at `ts_ms`: an insert line of the same row with `"op":"read"`, no GTID, no XID.
    pub fn line(
        &self,
        row: &SnapshotRow,
        index: u32,
        position: &BinlogPosition,
        ts_ms: u64,
    ) -> EventLine {
        let schema = &self.schema;
        let prefix = line_prefix(Op::Read, &schema.database, &schema.table, ts_ms, position);
        EventLine::build(
            &prefix,
            index,
            &gtid_json(None),
            row.key(),
            None,
            Some(&row.after),
        )
    }
}

/// What the select list reads for a column read as `how`.
fn select_expression(name: &str, how: Fetch) -> String {
    let quoted = quote(name);
    match how {
        Fetch::UnixTimestamp => format!("UNIX_TIMESTAMP({quoted})"),
        Fetch::EnumIndex | Fetch::SetBits => format!("{quoted}+0"),
        Fetch::Plain | Fetch::Year => quoted,
    }
}

/// The rows of one chunk.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The rows, in key order.
    pub rows: Vec<SnapshotRow>,
    /// The last row's key values (`None` for an empty chunk: the table is done).
    pub last_key: Option<Vec<Value>>,
    /// The chunk stopped at the byte budget before its row limit: more rows may follow
    /// even though it has fewer rows than asked.
    pub cut: bool,
}

/// One row, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// The primary key as a JSON object; empty for a table without one.
    pub primary_key: Vec<u8>,
    /// For a table chunked by a unique key: that key, as `unique_key_bytes` writes it
    /// (what the placement matches the table's changes by); empty otherwise.
    pub unique_key: Vec<u8>,
    /// The row as a JSON object.
    pub after: Vec<u8>,
}

impl SnapshotRow {
    /// The primary key, as the line's `primary_key` (`None`: the table has none).
    pub fn key(&self) -> Option<&[u8]> {
        (!self.primary_key.is_empty()).then_some(self.primary_key.as_slice())
    }

    /// What the placement knows the row by: its primary key, or its unique key.
    pub(crate) fn place_key(&self) -> &[u8] {
        if self.primary_key.is_empty() {
            &self.unique_key
        } else {
            &self.primary_key
        }
    }
}

/// The server's estimate of a table's rows and data bytes (`information_schema.TABLES`;
/// for InnoDB a statistic, not a count).
pub(crate) async fn estimate(
    conn: &mut Conn,
    table: &TableName,
) -> Result<(u64, u64), SourceError> {
    let (database, name) = TableName::split(table.as_str()).unwrap_or_default();
    let size: Option<(Option<u64>, Option<u64>)> = conn
        .exec_first(
            "SELECT TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (database, name),
        )
        .await
        .map_err(|source| SourceError::Query {
            what: "reading a table's size estimate from information_schema",
            source,
        })?;
    let (rows, bytes) = size.unwrap_or_default();
    Ok((rows.unwrap_or(0), bytes.unwrap_or(0)))
}

/// Sets up a connection for snapshot reads: text in the bytes stored (`SET NAMES binary`).
pub async fn prepare_connection(conn: &mut Conn) -> Result<(), SourceError> {
    conn.query_drop("SET NAMES binary")
        .await
        .map_err(|source| SourceError::Query {
            what: "setting up a snapshot connection",
            source,
        })
}

/// `name` as a quoted identifier.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use mysql_common::constants::ColumnType;

    use super::*;

    fn table(key: Vec<usize>) -> SnapshotTable {
        let columns: Vec<ColumnSchema> = ["id", "re`gion", "v"]
            .iter()
            .map(|name| ColumnSchema {
                name: (*name).into(),
                column_type: ColumnType::MYSQL_TYPE_LONG,
                meta: Vec::new(),
                unsigned: false,
                collation: 63,
                labels: None,
            })
            .collect();
        SnapshotTable {
            chunk_key: key.clone(),
            schema: Arc::new(TableSchema::from_columns("shop", "orders", columns, key)),
            fetch: vec![Fetch::Plain; 3],
            direct: vec![Direct::No; 3],
            select: "`id`, `re``gion`, `v`".into(),
        }
    }

    #[test]
    fn chunks_page_by_the_whole_key_in_key_order() {
        let single = table(vec![0]);
        assert_eq!(
            single.chunk_query(false, 1000),
            "SELECT `id`, `re``gion`, `v` FROM `shop`.`orders` ORDER BY `id` LIMIT 1000"
        );
        assert_eq!(
            single.chunk_query(true, 10),
            "SELECT `id`, `re``gion`, `v` FROM `shop`.`orders` WHERE (`id`) > (?) ORDER BY `id` LIMIT 10"
        );
        let composite = table(vec![1, 0]);
        assert_eq!(
            composite.chunk_query(true, 10),
            "SELECT `id`, `re``gion`, `v` FROM `shop`.`orders` WHERE (`re``gion`, `id`) > (?, ?) ORDER BY `re``gion`, `id` LIMIT 10"
        );
    }
}
