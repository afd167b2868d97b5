//! The reader's side of snapshots: it owns the progress (which tables, after which key),
//! hands each table being read to a slot with its own driver (`snapshot::serve`, one
//! connection each, `snapshot.parallel_tables` of them), asks each driver for one chunk at a
//! time, records the changes of the tables being read, and places each chunk in the stream
//! between two transactions, where `snapshot::placement` says, followed by a boundary that
//! carries the new progress.
//!
//! # Invariants
//!
//! - Chunks are emitted only between transactions, never during a catch-up of prepared XA
//!   transactions, and always with a boundary right after them at the same position: the
//!   checkpoint moves past a chunk only once Kinesis has acknowledged its rows, and then it
//!   records the chunk's last key, so a restart after SIGTERM repeats no row and a restart
//!   after `kill -9` repeats at most the chunks not yet acknowledged.
//! - A table is read by one slot at a time, and the tables being read are the first of
//!   `pending` (a slot takes the first table no slot reads, and only a table read to its end
//!   leaves `pending`): each keeps its own progress there, so a restart resumes each where
//!   its rows were acknowledged, whatever slot reads it then.
//! - Slots are independent: each has its own placement (the changes of its table), its own
//!   chunk waiting and its own hold; the reader waits when any slot holds it. Memory is two
//!   chunks per slot.
//! - A change is recorded when the reader sends it, with the position read by then: a change
//!   that was not sent (an XA transaction rolled back) never drops a row, and an XA
//!   transaction committed after a chunk's read counts as after it, wherever it was prepared.
//! - Line identity: a snapshot line's `position` is the boundary it is placed at; its `row`
//!   counts the table's snapshot from 0 (`snapshot_start`), rows from 1, `snapshot_end` last.
//!   Database, table, position and row identify a line; the same row placed again after a
//!   crash carries the same `row` and a later position.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};

use mysql_async::Value;
use tokio::sync::mpsc;

use super::Reader;
use crate::{
    event::{gtid_json, line_prefix, EventLine, Op, TableName},
    position::BinlogPosition,
    source::{
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

/// Watermarks remembered: each driver has at most one chunk between watermarks, so only ids
/// of attempts that failed (a lost connection between the two) are ever forgotten here.
const WATERMARKS_KEPT: usize = 64;

/// A driver's answers: a chunk, or why none comes.
type Arrivals = mpsc::Receiver<Result<Arrival, SourceError>>;

/// A chunk whose rows wait in the placement: what else came with it.
struct Waiting {
    last_key: Option<Vec<Value>>,
    done: bool,
    read_at_ms: u64,
    keyless: bool,
    /// Read between watermarks with this id: placed once the high one is read.
    watermark: Option<String>,
}

/// Whether the binlog reader waits for a slot.
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

/// One table being read, over one driver.
struct Slot {
    /// The table; `None`: the slot is free.
    table: Option<TableName>,
    placement: Placement,
    asks: mpsc::Sender<Ask>,
    arrivals: Arrivals,
    /// A chunk was asked for and has not arrived.
    asked: bool,
    waiting: Option<Waiting>,
    hold: Hold,
    /// A watermarked chunk's rows that arrived before its low watermark was read.
    parked: Option<Vec<SnapshotRow>>,
    /// The table's unique key columns, when it is chunked by one (no primary key).
    unique_key: Option<Vec<String>>,
    /// The server's estimate of the table's rows.
    estimated_rows: u64,
    /// Rows of a table without a primary key emitted so far (its progress is recorded only
    /// when it is done: a restart reads it again from its start).
    keyless_rows: u64,
    /// Rows emitted since the last progress log, and when it was.
    logged: (u64, Instant),
}

/// The reader's snapshot state; see the module docs.
pub(in crate::source) struct Snapshots {
    /// The progress as of the last boundary emitted.
    state: SnapshotState,
    /// `state`, shared with the boundaries that carry it.
    shared: Arc<SnapshotState>,
    slots: Vec<Slot>,
    /// DDL statements read so far (see `Ask::ddl_epoch`).
    ddl_epoch: u64,
    /// Low watermarks read whose chunk has not arrived (id, where the event ends), and the
    /// ids of high watermarks read.
    lows: VecDeque<(String, BinlogPosition)>,
    highs: VecDeque<String>,
    by_primary_key: bool,
}

impl Slot {
    fn new(asks: mpsc::Sender<Ask>, arrivals: Arrivals) -> Self {
        Self {
            table: None,
            placement: Placement::default(),
            asks,
            arrivals,
            asked: false,
            waiting: None,
            hold: Hold::No,
            parked: None,
            unique_key: None,
            estimated_rows: 0,
            keyless_rows: 0,
            logged: (0, Instant::now()),
        }
    }

    /// Whether a chunk is on its way from the driver (and can be taken now).
    fn awaiting_arrival(&self) -> bool {
        self.asked && self.waiting.is_none()
    }

    /// Asks the driver for a chunk at `now`: changes of the table are recorded from here.
    async fn ask(&mut self, ask: Ask, now: &BinlogPosition) -> Result<(), SourceError> {
        self.placement.asked(now);
        let table = ask.table.clone();
        if self.asks.send(ask).await.is_err() {
            return Err(stopped(table));
        }
        self.asked = true;
        Ok(())
    }

    /// Every [`PROGRESS_LOG_INTERVAL`]: the table, its rows so far and estimated, the rate,
    /// the table's estimated time left, the tables left.
    fn log_progress(&mut self, table: &TableName, rows: u64, tables_left: usize) {
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
            tracing::info!(table = %table, rows = rows, estimated_rows = self.estimated_rows, rows_per_s = rate as u64, table_eta_s = eta_s, tables_left, "snapshot progress");
            self.logged = (0, Instant::now());
        }
    }

    /// The table is read to its end: the slot is free.
    fn free(&mut self) {
        self.table = None;
        self.hold = Hold::No;
        self.placement.clear();
        self.unique_key = None;
        self.parked = None;
    }
}

/// The driver stopped without saying why (it ended with the run).
fn stopped(table: TableName) -> SourceError {
    SnapshotError::Read {
        table,
        message: "the snapshot reader stopped".into(),
    }
    .into()
}

impl Snapshots {
    /// Snapshots starting from `state`, reading through the drivers at the other end of
    /// `drivers` (asks and arrivals): one table at a time each.
    pub(in crate::source) fn new(
        state: SnapshotState,
        drivers: Vec<(mpsc::Sender<Ask>, Arrivals)>,
        by_primary_key: bool,
    ) -> Self {
        Self {
            shared: Arc::new(state.clone()),
            state,
            slots: drivers
                .into_iter()
                .map(|(asks, arrivals)| Slot::new(asks, arrivals))
                .collect(),
            ddl_epoch: 0,
            lows: VecDeque::new(),
            highs: VecDeque::new(),
            by_primary_key,
        }
    }

    /// The slot reading `table`.
    fn slot_of(&self, table: &TableName) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| slot.table.as_ref() == Some(table))
    }

    /// Gives slot `index`, when free, the first pending table no slot reads: whether it has
    /// a table now.
    fn assign(&mut self, index: usize) -> bool {
        if self.slots[index].table.is_some() {
            return true;
        }
        let next = self
            .state
            .pending
            .iter()
            .find(|p| self.slot_of(&p.table).is_none())
            .map(|p| p.table.clone());
        self.slots[index].table = next;
        self.slots[index].table.is_some()
    }

    /// Adds `table` to the tables to read, unless it is there already: the tables pending
    /// then.
    pub(super) fn request(&mut self, table: PendingTable) -> Option<usize> {
        if self.state.pending.iter().any(|p| p.table == table.table) {
            return None;
        }
        self.state.pending.push(table);
        self.shared = Arc::new(self.state.clone());
        Some(self.state.pending.len())
    }

    /// Whether a chunk is on its way from a driver (and can be taken now).
    pub(in crate::source) fn awaiting_arrival(&self) -> bool {
        self.slots.iter().any(Slot::awaiting_arrival)
    }

    /// Whether the binlog reader must wait (read no event) at `read_end`.
    pub(in crate::source) fn holds_reader(&self, read_end: &BinlogPosition) -> bool {
        self.slots.iter().any(|slot| match &slot.hold {
            Hold::No => false,
            Hold::FirstChunk => true,
            Hold::Keyless(at) => read_end.try_cmp(at) != Some(std::cmp::Ordering::Less),
        })
    }

    /// The next answer of a driver that was asked, with its slot.
    pub(in crate::source) async fn next_arrival(
        &mut self,
    ) -> (usize, Option<Result<Arrival, SourceError>>) {
        poll_fn(|cx| {
            for (index, slot) in self.slots.iter_mut().enumerate() {
                if slot.awaiting_arrival() {
                    if let Poll::Ready(arrival) = slot.arrivals.poll_recv(cx) {
                        return Poll::Ready((index, arrival));
                    }
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The progress of slot `index`'s table after a chunk (`done`: its last): the tables left.
    fn progress(&mut self, index: usize, pending: PendingTable, done: bool) -> usize {
        let table = pending.table.clone();
        let at = self
            .state
            .pending
            .iter()
            .position(|p| p.table == table)
            .expect("a table read is pending");
        let rows = pending.rows;
        if done {
            tracing::info!(table = %table, rows, id = %pending.id, "snapshot of the table done");
            self.state.pending.remove(at);
            self.slots[index].free();
        } else {
            self.state.pending[at] = pending;
        }
        self.shared = Arc::new(self.state.clone());
        let left = self.state.pending.len();
        self.slots[index].log_progress(&table, rows, left);
        left
    }

    /// A watermark a driver wrote, read at `read_end` (see `placement`, "Watermarks").
    fn watermark(&mut self, low: bool, id: String, read_end: &BinlogPosition) {
        if !low {
            if self.highs.len() == WATERMARKS_KEPT {
                self.highs.pop_front();
            }
            self.highs.push_back(id);
            return;
        }
        let parked = self.slots.iter_mut().find(|slot| {
            slot.parked.is_some()
                && slot.waiting.as_ref().and_then(|w| w.watermark.as_ref()) == Some(&id)
        });
        if let Some(slot) = parked {
            let rows = slot.parked.take().expect("parked rows");
            slot.placement.arrived(read_end.clone(), rows);
            return;
        }
        if self.lows.len() == WATERMARKS_KEPT {
            self.lows.pop_front();
        }
        self.lows.push_back((id, read_end.clone()));
    }
}

impl Reader {
    /// The snapshot progress for a boundary here.
    pub(super) fn snapshot_state(&self) -> Option<Arc<SnapshotState>> {
        self.snapshots.as_ref().map(|s| Arc::clone(&s.shared))
    }

    /// An event is being sent: a change of a table being read is recorded, with the position
    /// read by now.
    pub(super) fn snapshot_sent(&mut self, event: &OutboundEvent) {
        let Some(snapshots) = &mut self.snapshots else {
            return;
        };
        let Some(index) = snapshots.slot_of(&event.table) else {
            return;
        };
        let slot = &mut snapshots.slots[index];
        if let Some(names) = &slot.unique_key {
            match unique_keys(names, &event.line.to_vec()) {
                Some(keys) => {
                    let keys = keys.iter().map(Vec::as_slice);
                    slot.placement.changed(&self.read_end, keys);
                }
                None => slot.placement.reset(&self.read_end),
            }
            return;
        }
        match event.line.primary_key() {
            Some(key) => {
                let moved = event.moved_from.as_deref();
                let keys = std::iter::once(key.as_bytes()).chain(moved);
                slot.placement.changed(&self.read_end, keys);
            }
            // A TRUNCATE (no key): every row changed.
            None => slot.placement.reset(&self.read_end),
        }
    }

    /// A DDL statement was read: it may have changed a table being read, whose chunk is then
    /// read again, described anew.
    pub(super) fn snapshot_ddl(&mut self) {
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.ddl_epoch += 1;
            for slot in &mut snapshots.slots {
                // A table without a primary key is described just before its one read, which
                // stays open while its pieces are emitted: it is never read again.
                if !matches!(slot.hold, Hold::Keyless(_)) {
                    slot.placement.ddl();
                }
            }
        }
    }

    /// A watermark a driver wrote was read (a row of the signal table).
    pub(super) fn snapshot_watermark(&mut self, low: bool, id: String) {
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.watermark(low, id, &self.read_end);
        }
    }

    /// The driver of slot `index` answered.
    pub(super) async fn snapshot_arrived(
        &mut self,
        (index, arrival): (usize, Option<Result<Arrival, SourceError>>),
    ) -> Result<(), SourceError> {
        let Some(snapshots) = &mut self.snapshots else {
            return Ok(());
        };
        let slot = &mut snapshots.slots[index];
        slot.asked = false;
        let arrival = match arrival {
            Some(arrival) => arrival?,
            None => {
                let table = slot.table.clone();
                return Err(stopped(table.unwrap_or_else(|| TableName::new("", ""))));
            }
        };
        let passed = |at: &BinlogPosition, read_end| at.try_cmp(read_end);
        match passed(&arrival.at, &self.read_end) {
            None => return Err(SnapshotError::Read {
                table: arrival.table,
                message: format!(
                    "its consistent read is at {}, which cannot be ordered with the stream's position {} (another binlog file name)",
                    arrival.at, self.read_end
                ),
            }
            .into()),
            Some(std::cmp::Ordering::Less) if arrival.keyless => return Err(SnapshotError::Read {
                table: arrival.table,
                message: format!("the binlog reader passed the position of the table's consistent read ({} before {}); its rows cannot be placed", arrival.at, self.read_end),
            }
            .into()),
            _ => {}
        }
        self.metrics.snapshot_chunk_read(arrival.took);
        slot.hold = if arrival.keyless {
            Hold::Keyless(arrival.at.clone())
        } else {
            Hold::No
        };
        slot.unique_key = arrival.unique_key.clone();
        slot.estimated_rows = arrival.estimated_rows;
        // More pieces of a table without a primary key follow without an ask.
        slot.asked = arrival.keyless && !arrival.done;
        slot.waiting = Some(Waiting {
            last_key: arrival.chunk.last_key,
            done: arrival.done,
            read_at_ms: arrival.read_at_ms,
            keyless: arrival.keyless,
            watermark: arrival.watermark.clone(),
        });
        match arrival.watermark {
            // Its place starts where its low watermark ends, once that is read.
            Some(id) => match snapshots.lows.iter().position(|(low, _)| *low == id) {
                Some(found) => {
                    let (_, at) = snapshots.lows.remove(found).expect("found");
                    snapshots.slots[index]
                        .placement
                        .arrived(at, arrival.chunk.rows);
                }
                None => snapshots.slots[index].parked = Some(arrival.chunk.rows),
            },
            None => slot.placement.arrived(arrival.at, arrival.chunk.rows),
        }
        if self.open.current.is_none() {
            self.place_snapshots().await?;
        }
        Ok(())
    }

    /// Between two transactions: emits each slot's waiting chunk if its place has come, and
    /// asks for the next one when none is on its way.
    pub(super) async fn place_snapshots(&mut self) -> Result<(), SourceError> {
        if self.catch_up.is_some() || self.open.current.is_some() || !self.pending.is_empty() {
            return Ok(());
        }
        let slots = self.snapshots.as_ref().map_or(0, |s| s.slots.len());
        for index in 0..slots {
            self.place_slot(index).await?;
        }
        Ok(())
    }

    /// [`Self::place_snapshots`] for one slot; a slot whose table is done takes the next.
    async fn place_slot(&mut self, index: usize) -> Result<(), SourceError> {
        loop {
            let snapshots = self.snapshots.as_mut().expect("snapshots are on");
            if !snapshots.assign(index) {
                return Ok(());
            }
            let Snapshots {
                state,
                slots,
                ddl_epoch,
                highs,
                ..
            } = snapshots;
            let slot = &mut slots[index];
            let table = slot.table.clone().expect("assigned");
            if !slot.asked && slot.waiting.is_none() {
                let pending = pending(state, &table);
                let ask = Ask {
                    table,
                    after: pending
                        .after
                        .clone()
                        .map(|key| key.into_iter().map(Value::from).collect()),
                    ddl_epoch: *ddl_epoch,
                };
                if !pending.started() {
                    slot.hold = Hold::FirstChunk;
                    slot.keyless_rows = 0;
                }
                return slot.ask(ask, &self.read_end).await;
            }
            let Some(waiting) = &slot.waiting else {
                // Asked, not arrived.
                return Ok(());
            };
            // Changes between the watermarks are known only once the high one is read.
            let high = match &waiting.watermark {
                None => None,
                Some(id) => match highs.iter().position(|high| high == id) {
                    None => return Ok(()),
                    found => found,
                },
            };
            let due = slot.placement.due(&self.read_end);
            if let (Some(_), Some(high)) = (&due, high) {
                highs.remove(high);
            }
            let rows = match due {
                None => return Ok(()),
                Some(Due::Again) => {
                    tracing::info!(table = %table, "the table changed as a whole (TRUNCATE or DDL) after its chunk was read; reading the chunk again");
                    slot.waiting = None;
                    continue;
                }
                Some(Due::Rows(rows)) => rows,
            };
            let waiting = slot.waiting.take().expect("a placed chunk waited");
            if !waiting.done && !waiting.keyless {
                // The next chunk is read while this one is emitted (its read starts after
                // this point, so the placement's record starts here).
                let ask = Ask {
                    table,
                    after: waiting.last_key.clone(),
                    ddl_epoch: *ddl_epoch,
                };
                slot.ask(ask, &self.read_end).await?;
            }
            self.emit_chunk(index, rows, waiting).await?;
        }
    }

    /// Sends a chunk's rows (with the table's markers where they fall) at the last boundary,
    /// then a boundary with the progress that includes them.
    async fn emit_chunk(
        &mut self,
        index: usize,
        rows: Vec<SnapshotRow>,
        waiting: Waiting,
    ) -> Result<(), SourceError> {
        let snapshots = self.snapshots.as_mut().expect("snapshots are on");
        let position = self.boundary.clone();
        let slot = &mut snapshots.slots[index];
        let table = slot
            .table
            .clone()
            .expect("a slot with a chunk reads a table");
        let mut pending = pending(&snapshots.state, &table).clone();
        if waiting.keyless {
            // Numbered from its start, progress kept only once it is done.
            pending.rows = slot.keyless_rows;
        }
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
            let key = slot.unique_key.as_ref().map(|names| {
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
        slot.logged.0 += emitted;
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
        let slot = &mut snapshots.slots[index];
        if waiting.keyless && !waiting.done {
            // No boundary until the table is whole: a restart reads it again.
            slot.keyless_rows = pending.rows;
            return Ok(());
        }
        let tables_left = snapshots.progress(index, pending, waiting.done);
        self.metrics.set_snapshot_tables_pending(tables_left);
        self.send_boundary(position).await
    }
}

/// The progress of `table`, which a slot reads: it is pending until read to its end.
fn pending<'a>(state: &'a SnapshotState, table: &TableName) -> &'a PendingTable {
    state
        .pending
        .iter()
        .find(|p| &p.table == table)
        .expect("a table a slot reads is pending")
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

#[cfg(test)]
mod tests {
    use super::unique_keys;

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
}
