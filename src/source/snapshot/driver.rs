//! A snapshot reader's connection: it reads the chunk the binlog reader asks for, one at a
//! time, each in its own consistent read, and hands it back with the binlog position that read
//! saw. A run has `snapshot.parallel_tables` of them, each reading one table at a time (the
//! binlog reader decides which).
//!
//! # Invariants
//!
//! - Nothing is read without an ask, and one ask is one chunk: the driver holds at most one
//!   chunk, the binlog reader at most one more per driver, so memory is two chunks' budget
//!   per driver whatever the table.
//! - The asker owns the progress (which table, after which key): the driver keeps nothing
//!   between chunks but the connection and the row limit, so a chunk read again (after a
//!   TRUNCATE or a DDL, see `placement`) is just the same ask again.
//! - Every chunk is read with the table's definition of that moment. The definition is read
//!   from `information_schema` once per table and again whenever the reader has read a DDL
//!   statement since (each ask carries the reader's count of them, `ddl_epoch`); a DDL the
//!   reader reads after asking makes the placement read the chunk again (see `placement`),
//!   with the new count. A read the server refuses because the definition changed under it
//!   (`ER_TABLE_DEF_CHANGED`, a dropped column or table) is described and read again too.
//! - A lost connection is reopened with backoff, never skipped; a refusal (no SELECT
//!   privilege, a type snapshots cannot read) goes to the asker, which stops the run.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mysql_async::{prelude::Queryable, Conn, Value};
use tokio::sync::mpsc;

use super::{consistent_position, prepare_connection, Chunk, SnapshotError, SnapshotTable};
use crate::{
    backoff::Backoff,
    config::MysqlConfig,
    event::TableName,
    position::BinlogPosition,
    source::{connect, SourceError},
};

/// What the binlog reader asks for: the chunk of `table` after `after` (`None`: its first).
#[derive(Debug)]
pub struct Ask {
    /// The table.
    pub table: TableName,
    /// The last key of the previous chunk, as the server returned it.
    pub after: Option<Vec<Value>>,
    /// How many DDL statements the binlog reader had read when it asked: a description
    /// cached at another count is read again.
    pub ddl_epoch: u64,
}

/// A chunk read, with where it belongs.
#[derive(Debug)]
pub struct Arrival {
    /// The table.
    pub table: TableName,
    /// The binlog position its consistent read saw.
    pub at: BinlogPosition,
    /// Its rows.
    pub chunk: Chunk,
    /// The table has no rows after these.
    pub done: bool,
    /// A piece of a table without a primary key, read in one consistent read: its rows
    /// belong exactly at `at`, and the binlog reader must not pass it until the last piece.
    pub keyless: bool,
    /// For a table without a primary key chunked by a unique key: its column names (the
    /// reader matches the table's changes to the chunk's rows by them).
    pub unique_key: Option<Vec<String>>,
    /// The server's estimate of the table's rows, for the progress log (read when the table
    /// is described).
    pub estimated_rows: u64,
    /// With the watermark method: the id its low and high watermarks carry. Its place is
    /// then where the reader reads them, not `at` (which is only the end of binlog after
    /// the high one).
    pub watermark: Option<String>,
    /// When it was read, in milliseconds since the Unix epoch (the `ts_ms` of its lines).
    pub read_at_ms: u64,
    /// How long the read took.
    pub took: Duration,
}

/// How the driver reads.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The server.
    pub mysql: MysqlConfig,
    /// Most rows in one chunk.
    pub chunk_rows: usize,
    /// Most bytes of encoded rows in one chunk (at least one row is always read).
    pub chunk_bytes: usize,
    /// With the watermark method: the table the watermarks go into, and the id of this
    /// daemon's watermark row; `None` with MariaDB's consistent-snapshot position.
    pub watermark: Option<(TableName, String)>,
    /// Tables read at once: one driver, and one connection, each.
    pub parallel_tables: usize,
    /// `[columns]`: what each column shows of itself.
    pub(crate) columns: crate::config::ColumnRules,
}

impl DriverConfig {
    /// The driver's settings from the configuration, on a MariaDB server or not.
    pub fn new(config: &crate::config::Config, is_mariadb: bool) -> Self {
        use crate::config::SnapshotMethod;
        let snapshot = &config.snapshot;
        let watermark = match (snapshot.method, &snapshot.signal_table) {
            (SnapshotMethod::Watermark, Some(table)) => Some(table.clone()),
            (SnapshotMethod::Auto, Some(table)) if !is_mariadb => Some(table.clone()),
            _ => None,
        };
        Self {
            mysql: config.mysql.clone(),
            chunk_rows: snapshot.chunk_rows,
            chunk_bytes: snapshot.chunk_bytes,
            parallel_tables: snapshot.parallel_tables,
            columns: config.columns.clone(),
            watermark: watermark
                .map(|table| (table, format!("watermark:{}", config.kinesis.stream))),
        }
    }
}

/// Backoff between attempts after a lost connection: 250 ms doubling up to 30 s.
const RETRY_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(30),
};

/// Serves `asks` until the channel closes; each answer goes to `arrivals`. Ends with the
/// first permanent error, after sending it. `index` tells the drivers of one run apart (their
/// watermark ids).
pub async fn serve(
    config: DriverConfig,
    index: usize,
    mut asks: mpsc::Receiver<Ask>,
    arrivals: mpsc::Sender<Result<Arrival, SourceError>>,
) {
    let mut driver = Driver {
        config,
        conn: None,
        limit: 0,
        arrivals: arrivals.clone(),
        streamed: false,
        described: None,
        estimated_rows: 0,
        watermarks: (0, format!("{}-{index}", unix_ms())),
    };
    driver.limit = driver.config.chunk_rows.max(1);
    while let Some(ask) = asks.recv().await {
        let answer = driver.answer(&ask).await;
        let failed = answer.is_err();
        if arrivals.send(answer).await.is_err() || failed {
            return;
        }
    }
}

struct Driver {
    config: DriverConfig,
    conn: Option<Conn>,
    /// The row limit of the next chunk: `chunk_rows`, less after a chunk cut at the byte
    /// budget (wide rows), growing back after chunks that were not.
    limit: usize,
    /// Where the pieces of a table without a primary key go as they are read.
    arrivals: mpsc::Sender<Result<Arrival, SourceError>>,
    /// Pieces of the current answer were sent already: it cannot be tried again.
    streamed: bool,
    /// The last table described, at which DDL count, and its estimated rows.
    described: Option<(TableName, u64, Arc<SnapshotTable>)>,
    estimated_rows: u64,
    /// Watermarks written so far, and this driver's prefix of their ids: the run's start in
    /// milliseconds and the driver's index (watermark ids are `ms-index-n`).
    watermarks: (u64, String),
}

impl Driver {
    /// Reads the chunk `ask` names, trying again after a lost connection or a change of the
    /// table's definition.
    async fn answer(&mut self, ask: &Ask) -> Result<Arrival, SourceError> {
        let mut attempts: u32 = 0;
        let mut changes: u32 = 0;
        self.streamed = false;
        loop {
            let error = match self.try_read(ask).await {
                Ok(Some(arrival)) => return Ok(arrival),
                // The definition changed under the read: again at once, then with a pause
                // if DDL keeps coming.
                Ok(None) => {
                    changes += 1;
                    if changes > 3 {
                        tokio::time::sleep(RETRY_BACKOFF.delay(changes - 3)).await;
                    }
                    continue;
                }
                Err(error) => error,
            };
            if !retryable(&error) || self.streamed {
                return Err(permanent(&ask.table, error));
            }
            self.conn = None;
            attempts += 1;
            if attempts == 1 || attempts.is_power_of_two() {
                tracing::warn!(table = %ask.table, error = %crate::report::error_chain(&error), attempts, "snapshot read failed; trying again");
            }
            tokio::time::sleep(RETRY_BACKOFF.delay(attempts)).await;
        }
    }

    /// One attempt: `None` when the table's definition changed during it.
    async fn try_read(&mut self, ask: &Ask) -> Result<Option<Arrival>, SourceError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let mut conn = connect::connect(&self.config.mysql).await?;
                prepare_connection(&mut conn).await?;
                self.conn.insert(conn)
            }
        };
        let (database, table) =
            TableName::split(ask.table.as_str()).ok_or_else(|| SnapshotError::NoTable {
                table: ask.table.clone(),
            })?;
        let started = Instant::now();
        let cached = self
            .described
            .as_ref()
            .filter(|(name, epoch, _)| name == &ask.table && *epoch == ask.ddl_epoch)
            .map(|(_, _, table)| Arc::clone(table));
        let described = match cached {
            Some(table) => table,
            None => match SnapshotTable::describe(conn, &database, &table).await {
                Err(SourceError::Snapshot(error))
                    if matches!(*error, SnapshotError::NoTable { .. }) =>
                {
                    // Dropped since it was planned: at this position it has no rows.
                    tracing::warn!(table = %ask.table, "the table no longer exists; its snapshot ends empty");
                    let at = consistent_position(conn).await?;
                    return Ok(Some(self.arrival(ask, at, Chunk::default(), true, started)));
                }
                other => {
                    let table = other?
                        .with_rules(&self.config.columns)
                        .map_err(|error| SourceError::Snapshot(Box::new(error)))?;
                    let table = Arc::new(table);
                    self.described = Some((ask.table.clone(), ask.ddl_epoch, Arc::clone(&table)));
                    self.estimated_rows = super::estimate(conn, &ask.table).await?.0;
                    table
                }
            },
        };
        if described.is_keyless() {
            if self.config.watermark.is_some() {
                return Err(SnapshotError::KeylessWithWatermark {
                    table: ask.table.clone(),
                }
                .into());
            }
            return self.read_keyless(ask, &described, started).await.map(Some);
        }
        if self.config.watermark.is_some() {
            return self.read_watermarked(ask, &described, started).await;
        }
        let conn = self.conn.as_mut().expect("connected above");
        let limit = self.limit;
        let read = described
            .read_chunk_consistent(conn, ask.after.as_deref(), limit, self.config.chunk_bytes)
            .await;
        let (at, chunk) = match read {
            Err(SourceError::Query { source, .. }) if definition_changed(&source) => {
                self.described = None;
                return Ok(None);
            }
            other => other?,
        };
        let done = !chunk.cut && chunk.rows.len() < limit;
        self.limit = if chunk.cut {
            chunk.rows.len().max(1)
        } else {
            (limit * 2).min(self.config.chunk_rows.max(1))
        };
        let mut arrival = self.arrival(ask, at, chunk, done, started);
        arrival.unique_key = described.unique_key();
        Ok(Some(arrival))
    }

    /// A chunk between a low and a high watermark (see `placement`, "Watermarks"): `None`
    /// when the table's definition changed under the read.
    async fn read_watermarked(
        &mut self,
        ask: &Ask,
        table: &SnapshotTable,
        started: Instant,
    ) -> Result<Option<Arrival>, SourceError> {
        let (signals, row) = self.config.watermark.clone().expect("the watermark method");
        self.watermarks.0 += 1;
        let id = format!("{}-{}", self.watermarks.1, self.watermarks.0);
        let conn = self.conn.as_mut().expect("connected");
        write_watermark(conn, &signals, &row, "watermark-low", &id).await?;
        let limit = self.limit;
        let read = table
            .read_chunk(conn, ask.after.as_deref(), limit, self.config.chunk_bytes)
            .await;
        let chunk = match read {
            Err(SourceError::Query { source, .. }) if definition_changed(&source) => {
                self.described = None;
                return Ok(None);
            }
            other => other?,
        };
        write_watermark(conn, &signals, &row, "watermark-high", &id).await?;
        let at = connect::current_position(conn).await?;
        let done = !chunk.cut && chunk.rows.len() < limit;
        self.limit = if chunk.cut {
            chunk.rows.len().max(1)
        } else {
            (limit * 2).min(self.config.chunk_rows.max(1))
        };
        let mut arrival = self.arrival(ask, at, chunk, done, started);
        arrival.watermark = Some(id);
        arrival.unique_key = table.unique_key();
        Ok(Some(arrival))
    }

    /// A table without a primary key, in one consistent read: every piece but the last is
    /// sent from here as it is read (the read stays open meanwhile, and the binlog reader
    /// waits at its position); the last one is returned.
    async fn read_keyless(
        &mut self,
        ask: &Ask,
        table: &SnapshotTable,
        started: Instant,
    ) -> Result<Arrival, SourceError> {
        tracing::info!(table = %ask.table, "the table has no primary key: reading it in one consistent read, while the binlog reader waits at its position");
        let conn = self.conn.as_mut().expect("connected");
        let at = super::open_consistent_read(conn).await;
        let mut last = None;
        let read = match at {
            Ok(at) => {
                let (limit, bytes) = (self.config.chunk_rows, self.config.chunk_bytes);
                let arrivals = self.arrivals.clone();
                let streamed = &mut self.streamed;
                let last = &mut last;
                table
                    .read_whole(conn, limit, bytes, |chunk, done| {
                        let arrival = Arrival {
                            table: ask.table.clone(),
                            at: at.clone(),
                            chunk,
                            done,
                            keyless: true,
                            unique_key: None,
                            estimated_rows: 0,
                            watermark: None,
                            read_at_ms: unix_ms(),
                            took: started.elapsed(),
                        };
                        let arrivals = arrivals.clone();
                        let sent = if done {
                            *last = Some(arrival);
                            None
                        } else {
                            *streamed = true;
                            Some(arrival)
                        };
                        async move {
                            match sent {
                                Some(arrival) => arrivals.send(Ok(arrival)).await.is_ok(),
                                None => true,
                            }
                        }
                    })
                    .await
            }
            Err(error) => Err(error),
        };
        let ended = super::end_consistent_read(conn).await;
        read?;
        ended?;
        last.ok_or_else(|| {
            SnapshotError::Read {
                table: ask.table.clone(),
                message: "the snapshot reader stopped".into(),
            }
            .into()
        })
    }

    fn arrival(
        &self,
        ask: &Ask,
        at: BinlogPosition,
        chunk: Chunk,
        done: bool,
        started: Instant,
    ) -> Arrival {
        Arrival {
            table: ask.table.clone(),
            at,
            chunk,
            done,
            keyless: false,
            unique_key: None,
            estimated_rows: self.estimated_rows,
            watermark: None,
            read_at_ms: unix_ms(),
            took: started.elapsed(),
        }
    }
}

/// A refusal, as the asker reports it: it stops the run, so it must not look like a passing
/// connection error there.
fn permanent(table: &TableName, error: SourceError) -> SourceError {
    let denied = |code| matches!(code, 1142 | 1143 | 1044 | 1045 | 1227);
    match error {
        SourceError::Snapshot(_) => error,
        SourceError::Query {
            source: mysql_async::Error::Server(e),
            ..
        } if denied(e.code) => SnapshotError::Denied {
            table: table.clone(),
            message: e.message,
        }
        .into(),
        other => SnapshotError::Read {
            table: table.clone(),
            message: crate::report::error_chain(&other),
        }
        .into(),
    }
}

/// Writes this daemon's watermark row (`id` `row`, `type` `kind`, `data` `value`) into the
/// signal table, as a committed transaction of its own.
async fn write_watermark(
    conn: &mut Conn,
    signals: &TableName,
    row: &str,
    kind: &str,
    value: &str,
) -> Result<(), SourceError> {
    let (database, table) = TableName::split(signals.as_str()).unwrap_or_default();
    let quoted = |n: &str| format!("`{}`", n.replace('`', "``"));
    let statement = format!(
        "INSERT INTO {}.{} (id, type, data) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE type = VALUES(type), data = VALUES(data)",
        quoted(&database),
        quoted(&table)
    );
    conn.exec_drop(statement, (row, kind, value))
        .await
        .map_err(|source| match &source {
            mysql_async::Error::Server(e) if matches!(e.code, 1142 | 1146 | 1054) => {
                SnapshotError::Watermark {
                    table: signals.clone(),
                    message: e.message.clone(),
                }
                .into()
            }
            _ => SourceError::Query {
                what: "writing a snapshot watermark",
                source,
            },
        })
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Server errors that mean the table changed under the read: `ER_TABLE_DEF_CHANGED` (1412),
/// `ER_BAD_FIELD_ERROR` (1054, a column dropped after it was described),
/// `ER_NO_SUCH_TABLE` (1146, dropped after it was described).
fn definition_changed(error: &mysql_async::Error) -> bool {
    matches!(error, mysql_async::Error::Server(e) if matches!(e.code, 1412 | 1054 | 1146))
}

/// Whether trying the read again can succeed: a lost connection, or a server error that
/// passes (a deadlock, a lock wait timeout, too many connections). A refused privilege or a
/// syntax error cannot.
fn retryable(error: &SourceError) -> bool {
    match error {
        SourceError::Query {
            source: mysql_async::Error::Server(e),
            ..
        } => matches!(e.code, 1205 | 1213 | 1040 | 1053 | 1927),
        other => other.is_transient(),
    }
}
