//! The reader's side of snapshots: it owns the progress (which table, after which key), asks
//! the driver (`snapshot::serve`) for one chunk at a time, records the changes of the table
//! being read, and places each chunk in the stream between two transactions, where
//! `snapshot::placement` says, followed by a boundary that carries the new progress.
//!
//! # Invariants
//!
//! - Chunks are emitted only between transactions, never during a catch-up of prepared XA
//!   transactions, and always with a boundary right after them at the same position: the
//!   checkpoint moves past a chunk only once Kinesis has acknowledged its rows, and then it
//!   records the chunk's last key, so a restart after SIGTERM repeats no row and a restart
//!   after `kill -9` repeats at most the chunks not yet acknowledged.
//! - A change is recorded when the reader sends it, with the position read by then: a change
//!   that was not sent (an XA transaction rolled back) never drops a row, and an XA
//!   transaction committed after a chunk's read counts as after it, wherever it was prepared.
//! - Line identity: a snapshot line's `position` is the boundary it is placed at; its `row`
//!   counts the table's snapshot from 0 (`snapshot_start`), rows from 1, `snapshot_end` last.
//!   Database, table, position and row identify a line; the same row placed again after a
//!   crash carries the same `row` and a later position.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mysql_async::Value;
use tokio::sync::mpsc;

use super::Reader;
use crate::{
    event::{gtid_json, line_prefix, EventLine, Op, TableName},
    position::BinlogPosition,
    source::{
        decode,
        snapshot::{
            placement::{Due, Placement},
            unique_key_bytes, Arrival, Ask, SnapshotError, SnapshotRow,
        },
        SourceError,
    },
    stream::{partition_key, KeyValue, Message, OutboundEvent, PendingTable, SnapshotState},
};

/// How often progress is logged while a snapshot runs.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A chunk whose rows wait in the placement: what else came with it.
struct Waiting {
    last_key: Option<Vec<Value>>,
    done: bool,
    read_at_ms: u64,
    keyless: bool,
    /// Read between watermarks with this id: placed once the high one is read.
    watermark: Option<String>,
}

/// Whether the binlog reader waits for the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hold {
    /// It reads on.
    No,
    /// The first chunk of a table was asked for: the reader waits where it is until it
    /// arrives, so that a table without a primary key (read in one consistent read, at a
    /// position the reader must not pass) is never passed by.
    FirstChunk,
    /// A table without a primary key is being read at `at`: the reader reads up to `at`,
    /// then waits there until the last piece is emitted.
    Keyless(BinlogPosition),
}

/// The reader's snapshot state; see the module docs.
pub(in crate::source) struct Snapshots {
    /// The progress as of the last boundary emitted.
    state: SnapshotState,
    /// `state`, shared with the boundaries that carry it.
    shared: Arc<SnapshotState>,
    placement: Placement,
    asks: mpsc::Sender<Ask>,
    arrivals: mpsc::Receiver<Result<Arrival, SourceError>>,
    /// A chunk was asked for and has not arrived.
    asked: bool,
    waiting: Option<Waiting>,
    hold: Hold,
    /// DDL statements read so far (see `Ask::ddl_epoch`).
    ddl_epoch: u64,
    /// The last low watermark read (its id, and where its event ends), the last high one,
    /// and a watermarked chunk's rows that arrived before its low watermark was read.
    watermarks: (Option<(String, BinlogPosition)>, Option<String>),
    parked: Option<Vec<SnapshotRow>>,
    /// The current table's unique key columns, when it is chunked by one (no primary key).
    unique_key: Option<Vec<String>>,
    /// The server's estimate of the current table's rows.
    estimated_rows: u64,
    /// Rows of the table without a primary key emitted so far (its progress is recorded only
    /// when it is done: a restart reads it again from its start).
    keyless_rows: u64,
    by_primary_key: bool,
    /// Rows emitted since the last progress log, and when it was.
    logged: (u64, Instant),
}

impl Snapshots {
    /// Snapshots starting from `state`, reading through the driver at the other end of
    /// `asks` and `arrivals`.
    pub(in crate::source) fn new(
        state: SnapshotState,
        asks: mpsc::Sender<Ask>,
        arrivals: mpsc::Receiver<Result<Arrival, SourceError>>,
        by_primary_key: bool,
    ) -> Self {
        Self {
            shared: Arc::new(state.clone()),
            state,
            placement: Placement::default(),
            asks,
            arrivals,
            asked: false,
            waiting: None,
            hold: Hold::No,
            ddl_epoch: 0,
            watermarks: (None, None),
            parked: None,
            unique_key: None,
            estimated_rows: 0,
            keyless_rows: 0,
            by_primary_key,
            logged: (0, Instant::now()),
        }
    }

    /// The table being read.
    fn current(&self) -> Option<&TableName> {
        self.state.pending.first().map(|p| &p.table)
    }

    /// Every [`PROGRESS_LOG_INTERVAL`]: the table, its rows so far and estimated, the rate,
    /// the table's estimated time left, the tables left.
    fn log_progress(&mut self, table: &TableName, rows: u64) {
        if self.logged.1.elapsed() >= PROGRESS_LOG_INTERVAL {
            let seconds = self.logged.1.elapsed().as_secs_f64();
            let rate = self.logged.0 as f64 / seconds;
            // The estimate is InnoDB's statistic: it can be below the rows already read.
            let left = self.estimated_rows.saturating_sub(rows);
            let eta_s = if rate > 0.0 {
                (left as f64 / rate) as u64
            } else {
                0
            };
            tracing::info!(table = %table, rows = rows, estimated_rows = self.estimated_rows, rows_per_s = rate as u64, table_eta_s = eta_s, tables_left = self.state.pending.len(), "snapshot progress");
            self.logged = (0, Instant::now());
        }
    }

    /// Asks the driver for a chunk at `now`: changes of the table are recorded from here.
    async fn ask(&mut self, ask: Ask, now: &BinlogPosition) -> Result<(), SourceError> {
        self.placement.asked(now);
        let table = ask.table.clone();
        if self.asks.send(ask).await.is_err() {
            return Err(SnapshotError::Read {
                table,
                message: "the snapshot reader stopped".into(),
            }
            .into());
        }
        self.asked = true;
        Ok(())
    }

    /// Whether a chunk is on its way from the driver (and can be taken now).
    pub(in crate::source) fn awaiting_arrival(&self) -> bool {
        self.asked && self.waiting.is_none()
    }

    /// Whether the binlog reader must wait (read no event) at `read_end`.
    pub(in crate::source) fn holds_reader(&self, read_end: &BinlogPosition) -> bool {
        match &self.hold {
            Hold::No => false,
            Hold::FirstChunk => true,
            Hold::Keyless(at) => read_end.try_cmp(at) != Some(std::cmp::Ordering::Less),
        }
    }

    /// The next answer of the driver.
    pub(in crate::source) async fn next_arrival(&mut self) -> Option<Result<Arrival, SourceError>> {
        self.arrivals.recv().await
    }
}

impl Reader {
    /// The snapshot progress for a boundary here.
    pub(super) fn snapshot_state(&self) -> Option<Arc<SnapshotState>> {
        self.snapshots.as_ref().map(|s| Arc::clone(&s.shared))
    }

    /// An event is being sent: a change of the table being read is recorded, with the
    /// position read by now.
    pub(super) fn snapshot_sent(&mut self, event: &OutboundEvent) {
        let Some(snapshots) = &mut self.snapshots else {
            return;
        };
        if snapshots.current() != Some(&event.table) {
            return;
        }
        if let Some(names) = &snapshots.unique_key {
            match unique_keys(names, &event.line.to_vec()) {
                Some(keys) => {
                    let keys = keys.iter().map(Vec::as_slice);
                    snapshots.placement.changed(&self.read_end, keys);
                }
                None => snapshots.placement.reset(&self.read_end),
            }
            return;
        }
        match event.line.primary_key() {
            Some(key) => {
                let moved = event.moved_from.as_deref();
                let keys = std::iter::once(key.as_bytes()).chain(moved);
                snapshots.placement.changed(&self.read_end, keys);
            }
            // A TRUNCATE (no key): every row changed.
            None => snapshots.placement.reset(&self.read_end),
        }
    }

    /// A DDL statement was read: it may have changed the table being read, whose chunk is
    /// then read again, described anew.
    pub(super) fn snapshot_ddl(&mut self) {
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.ddl_epoch += 1;
            // A table without a primary key is described just before its one read, which
            // stays open while its pieces are emitted: it is never read again.
            if !matches!(snapshots.hold, Hold::Keyless(_)) {
                snapshots.placement.ddl();
            }
        }
    }

    /// The driver answered.
    pub(super) async fn snapshot_arrived(
        &mut self,
        arrival: Option<Result<Arrival, SourceError>>,
    ) -> Result<(), SourceError> {
        let Some(snapshots) = &mut self.snapshots else {
            return Ok(());
        };
        snapshots.asked = false;
        let arrival = match arrival {
            Some(arrival) => arrival?,
            None => {
                return Err(SnapshotError::Read {
                    table: snapshots
                        .current()
                        .cloned()
                        .unwrap_or_else(|| TableName::new("", "")),
                    message: "the snapshot reader stopped".into(),
                }
                .into())
            }
        };
        if arrival.at.try_cmp(&self.read_end).is_none() {
            return Err(SnapshotError::Read {
                table: arrival.table,
                message: format!(
                    "its consistent read is at {}, which cannot be ordered with the stream's position {} (another binlog file name)",
                    arrival.at, self.read_end
                ),
            }
            .into());
        }
        self.metrics.snapshot_chunk_read(arrival.took);
        snapshots.hold = if arrival.keyless {
            Hold::Keyless(arrival.at.clone())
        } else {
            Hold::No
        };
        if arrival.keyless && arrival.at.try_cmp(&self.read_end) == Some(std::cmp::Ordering::Less) {
            return Err(SnapshotError::Read {
                table: arrival.table,
                message: format!("the binlog reader passed the position of the table's consistent read ({} before {}); its rows cannot be placed", arrival.at, self.read_end),
            }
            .into());
        }
        snapshots.unique_key = arrival.unique_key.clone();
        snapshots.estimated_rows = arrival.estimated_rows;
        // More pieces of a table without a primary key follow without an ask.
        snapshots.asked = arrival.keyless && !arrival.done;
        snapshots.waiting = Some(Waiting {
            last_key: arrival.chunk.last_key,
            done: arrival.done,
            read_at_ms: arrival.read_at_ms,
            keyless: arrival.keyless,
            watermark: arrival.watermark.clone(),
        });
        match arrival.watermark {
            // Its place starts where its low watermark ends, once that is read.
            Some(id) => match &snapshots.watermarks.0 {
                Some((low, at)) if *low == id => {
                    let at = at.clone();
                    snapshots.placement.arrived(at, arrival.chunk.rows);
                }
                _ => snapshots.parked = Some(arrival.chunk.rows),
            },
            None => snapshots.placement.arrived(arrival.at, arrival.chunk.rows),
        }
        if self.open.current.is_none() {
            self.place_snapshots().await?;
        }
        Ok(())
    }

    /// Between two transactions: emits the waiting chunk if its place has come, and asks for
    /// the next one when none is on its way.
    pub(super) async fn place_snapshots(&mut self) -> Result<(), SourceError> {
        if self.catch_up.is_some() || self.open.current.is_some() {
            return Ok(());
        }
        loop {
            let Some(snapshots) = &mut self.snapshots else {
                return Ok(());
            };
            let Some(pending) = snapshots.state.pending.first() else {
                return Ok(());
            };
            if !snapshots.asked && snapshots.waiting.is_none() {
                let ask = Ask {
                    table: pending.table.clone(),
                    after: pending
                        .after
                        .clone()
                        .map(|key| key.into_iter().map(Value::from).collect()),
                    ddl_epoch: snapshots.ddl_epoch,
                };
                if !pending.started() {
                    snapshots.hold = Hold::FirstChunk;
                    snapshots.keyless_rows = 0;
                }
                return snapshots.ask(ask, &self.read_end).await;
            }
            let watermark = snapshots
                .waiting
                .as_ref()
                .and_then(|w| w.watermark.as_ref());
            if watermark.is_some() && watermark != snapshots.watermarks.1.as_ref() {
                // Changes between the watermarks are known only once the high one is read.
                return Ok(());
            }
            let rows = match snapshots.placement.due(&self.read_end) {
                None => return Ok(()),
                Some(Due::Again) => {
                    tracing::info!(table = %pending.table, "the table changed as a whole (TRUNCATE or DDL) after its chunk was read; reading the chunk again");
                    snapshots.waiting = None;
                    continue;
                }
                Some(Due::Rows(rows)) => rows,
            };
            let waiting = snapshots.waiting.take().expect("a placed chunk waited");
            if !waiting.done && !waiting.keyless {
                // The next chunk is read while this one is emitted (its read starts after
                // this point, so the placement's record starts here).
                let ask = Ask {
                    table: pending.table.clone(),
                    after: waiting.last_key.clone(),
                    ddl_epoch: snapshots.ddl_epoch,
                };
                snapshots.ask(ask, &self.read_end).await?;
            }
            self.emit_chunk(rows, waiting).await?;
        }
    }

    /// Sends a chunk's rows (with the table's markers where they fall) at the last boundary,
    /// then a boundary with the progress that includes them.
    async fn emit_chunk(
        &mut self,
        rows: Vec<SnapshotRow>,
        waiting: Waiting,
    ) -> Result<(), SourceError> {
        let snapshots = self.snapshots.as_mut().expect("snapshots are on");
        let position = self.boundary.clone();
        let mut pending = snapshots.state.pending[0].clone();
        if waiting.keyless {
            // Numbered from its start, progress kept only once it is done.
            pending.rows = snapshots.keyless_rows;
        }
        let table = pending.table.clone();
        let (database, name) = TableName::split(table.as_str()).unwrap_or_default();
        let by_primary_key = snapshots.by_primary_key;
        let mut lines = Vec::with_capacity(rows.len() + 2);
        let marker = |op: Op, row: u64, after: Option<&[u8]>| {
            let prefix = line_prefix(op, &database, &name, waiting.read_at_ms, &position);
            EventLine::build(&prefix, row as u32, &gtid_json(None), None, None, after)
        };
        if !pending.started() {
            tracing::info!(table = %table, id = %pending.id, "snapshot of the table started");
            // A table chunked by a unique key says which: its `read` rows are upserts on it.
            let key = snapshots.unique_key.as_ref().map(|names| {
                let mut out = br#"{"unique_key":"#.to_vec();
                crate::event::write_json(&mut out, names);
                out.push(b'}');
                out
            });
            lines.push((table.shared(), marker(Op::SnapshotStart, 0, key.as_deref())));
        }
        let prefix = line_prefix(Op::Read, &database, &name, waiting.read_at_ms, &position);
        let emitted = rows.len() as u64;
        for (n, row) in rows.iter().enumerate() {
            let number = pending.rows + 1 + n as u64;
            let line = EventLine::build(
                &prefix,
                number as u32,
                &gtid_json(None),
                row.key(),
                None,
                Some(&row.after),
            );
            let key = partition_key(&table, row.key(), by_primary_key);
            lines.push((key, line));
        }
        drop(rows);
        pending.rows += emitted;
        if let Some(last) = waiting.last_key {
            pending.after = Some(last.into_iter().map(KeyValue::from).collect());
        }
        if waiting.done {
            let count = format!("{{\"rows\":{}}}", pending.rows);
            lines.push((
                table.shared(),
                marker(Op::SnapshotEnd, pending.rows + 1, Some(count.as_bytes())),
            ));
        }
        snapshots.logged.0 += emitted;
        self.metrics.snapshot_rows_read.add(emitted);
        for (key, line) in lines {
            let event = OutboundEvent {
                table: table.clone(),
                key,
                position: position.clone(),
                line,
                moved_from: None,
            };
            self.forward(Message::Event(event)).await?;
        }
        let snapshots = self.snapshots.as_mut().expect("snapshots are on");
        if waiting.keyless && !waiting.done {
            // No boundary until the table is whole: a restart reads it again.
            snapshots.keyless_rows = pending.rows;
            return Ok(());
        }
        if waiting.done {
            snapshots.hold = Hold::No;
            tracing::info!(table = %table, rows = pending.rows, id = %pending.id, "snapshot of the table done");
            snapshots.state.pending.remove(0);
            snapshots.placement.clear();
            snapshots.unique_key = None;
        } else {
            snapshots.state.pending[0] = pending.clone();
        }
        snapshots.shared = Arc::new(snapshots.state.clone());
        self.metrics
            .set_snapshot_tables_pending(snapshots.state.pending.len());
        snapshots.log_progress(&table, pending.rows);
        self.send_boundary(position).await
    }
}

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

    /// A watermark the driver wrote (see `placement`, "Watermarks").
    fn snapshot_watermark(&mut self, low: bool, id: String) {
        let Some(snapshots) = &mut self.snapshots else {
            return;
        };
        if !low {
            snapshots.watermarks.1 = Some(id);
            return;
        }
        let waiting = snapshots
            .waiting
            .as_ref()
            .and_then(|w| w.watermark.as_ref());
        if waiting == Some(&id) {
            if let Some(rows) = snapshots.parked.take() {
                snapshots.placement.arrived(self.read_end.clone(), rows);
            }
        }
        snapshots.watermarks.0 = Some((id, self.read_end.clone()));
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
        if snapshots.state.pending.iter().any(|p| p.table == table) {
            tracing::info!(signal = %id, table = %table, "snapshot signal for a table already to be read");
            return;
        }
        tracing::info!(signal = %id, table = %table, position = %at, "snapshot asked for by a signal");
        let pending = PendingTable::new(table, &format!("signal-{id}"));
        snapshots.state.pending.push(pending);
        snapshots.shared = Arc::new(snapshots.state.clone());
        self.metrics
            .set_snapshot_tables_pending(snapshots.state.pending.len());
    }
}

/// The unique keys (`names`) of a change's row images, from its line; `None` for a line
/// without images (a TRUNCATE: every row changed) or one that cannot be read.
fn unique_keys(names: &[String], line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let line: serde_json::Value = serde_json::from_slice(line).ok()?;
    let mut keys = Vec::new();
    for image in ["before", "after"] {
        if let Some(image) = line[image].as_object() {
            let values: Option<Vec<&serde_json::Value>> =
                names.iter().map(|n| image.get(n)).collect();
            let pairs = names.iter().map(String::as_str).zip(values?);
            keys.push(unique_key_bytes(pairs));
        }
    }
    (!keys.is_empty()).then_some(keys)
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
    use super::{signal_tables, unique_keys};

    #[test]
    fn a_change_is_matched_by_the_unique_key_of_both_its_images() {
        let names = ["code".to_owned(), "region".to_owned()];
        let line = br#"{"op":"update","before":{"code":"a","region":"eu","v":1},"after":{"code":"b","region":"eu","v":1}}"#;
        let keys = unique_keys(&names, line).unwrap();
        assert_eq!(
            keys,
            [
                br#"{"code":"a","region":"eu"}"#.to_vec(),
                br#"{"code":"b","region":"eu"}"#.to_vec()
            ]
        );
        let truncate = br#"{"op":"truncate","before":null,"after":null}"#;
        assert_eq!(unique_keys(&names, truncate), None);
    }

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
