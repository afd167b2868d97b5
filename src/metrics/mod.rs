//! Metrics: the catalog (every metric the daemon exports, with its unit and meaning), the
//! shared registry the stages update, and its two outlets: `cloudwatch` (PutMetricData on an
//! interval) and [`http`] (`GET /metrics` in Prometheus text, `GET /health`).
//!
//! # Naming
//!
//! CloudWatch names are PascalCase with an explicit unit, in the namespace
//! `[metrics] namespace`, with the dimensions `Stream` and `Source` on every datum (and `Table`
//! only on the per-table series, when `[metrics] per_table` opts in: each is a billed metric).
//! Prometheus names are `binlog_kinesis_<snake_case>`, counters ending in `_total` and values
//! in base units (seconds, bytes).
//!
//! # Invariants
//!
//! Updating a metric never blocks a stage: counters are atomics, the few compound values sit
//! behind short, uncontended mutexes that are never held across an await. Counters only grow;
//! the CloudWatch publisher sends their increase since its last successful call.

mod catalog;
pub(crate) mod cloudwatch;
pub mod http;
mod prometheus;

pub use self::catalog::*;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering},
        Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{event::TableName, position::BinlogPosition};

/// What the daemon is doing, for `/health` and the `Replicating` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Checking the stream, taking the lock, connecting.
    Starting = 0,
    /// Waiting for the active instance to let go of the lock.
    Standby = 1,
    /// Holding the lock and reading the binlog.
    Replicating = 2,
    /// Holding the lock, the replication connection lost: reconnecting with backoff.
    Reconnecting = 3,
    /// Stopping: draining what was read.
    Draining = 4,
    /// Stopped (cleanly or not).
    Stopped = 5,
}

impl State {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => State::Standby,
            2 => State::Replicating,
            3 => State::Reconnecting,
            4 => State::Draining,
            5 => State::Stopped,
            _ => State::Starting,
        }
    }

    /// The name `/health` reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Standby => "standby",
            State::Replicating => "replicating",
            State::Reconnecting => "reconnecting",
            State::Draining => "draining",
            State::Stopped => "stopped",
        }
    }

    /// Whether an orchestrator should keep this task: replicating, reconnecting on its own,
    /// draining, or a standby waiting its turn. Starting is not yet healthy (ECS's
    /// `startPeriod` covers it) and stopped never is.
    pub(crate) fn is_healthy(self) -> bool {
        matches!(
            self,
            State::Standby | State::Replicating | State::Reconnecting | State::Draining
        )
    }
}

/// A monotonic counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Samples of a distribution: count, sum, min and max, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Stats {
    /// Samples.
    pub(crate) count: u64,
    /// Their sum.
    pub(crate) sum: f64,
    /// The smallest.
    pub(crate) min: f64,
    /// The largest.
    pub(crate) max: f64,
}

impl Stats {
    fn record(&mut self, value: f64) {
        if self.count == 0 || value < self.min {
            self.min = value;
        }
        if self.count == 0 || value > self.max {
            self.max = value;
        }
        self.count += 1;
        self.sum += value;
    }
}

/// Checkpoint progress, for the two checkpoint gauges.
#[derive(Debug, Default)]
struct Progress {
    /// The last boundary the source read.
    read: Option<BinlogPosition>,
    /// The last boundary written, and its binlog timestamp (seconds).
    committed: Option<(BinlogPosition, u32)>,
    /// When read boundaries started waiting for a checkpoint; `None` when none waits.
    waiting_since: Option<SystemTime>,
}

/// The registry: every stage holds an `Arc<Metrics>` and updates it as it works.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// See [`ROW_EVENTS_READ`].
    pub(crate) row_events_read: Counter,
    /// See [`EVENTS_PUT`].
    pub(crate) events_put: Counter,
    /// See [`RECORDS_PUT`].
    pub(crate) records_put: Counter,
    /// See [`BYTES_PUT`].
    pub(crate) bytes_put: Counter,
    /// See [`THROTTLED_RECORDS`].
    pub(crate) throttled_records: Counter,
    /// See [`FAILED_RECORDS`].
    pub(crate) failed_records: Counter,
    /// See [`RETRIES`].
    pub(crate) retries: Counter,
    /// See [`OVERSIZE_SKIPPED`].
    pub(crate) oversize_skipped: Counter,
    /// See [`EVENTS_FILTERED_BY_OP`].
    pub(crate) events_filtered_op: Counter,
    /// See [`EVENTS_FILTERED_UNCHANGED`].
    pub(crate) events_filtered_unchanged: Counter,
    /// See [`RECONNECTS`].
    pub(crate) reconnects: Counter,
    /// See [`CHECKPOINTS_WRITTEN`].
    pub(crate) checkpoints_written: Counter,
    /// See [`PUBLISH_FAILURES`].
    pub(crate) publish_failures: Counter,
    /// See [`SNAPSHOT_ROWS_READ`].
    pub(crate) snapshot_rows_read: Counter,
    /// See [`SNAPSHOTS_AFTER_PURGE`].
    pub(crate) snapshots_after_purge: Counter,
    /// See [`SNAPSHOT_TABLES_PENDING`]; -1 before the source set it.
    snapshot_tables_pending: AtomicI64,
    /// See [`SNAPSHOT_CHUNK_SECONDS`], in microseconds; `u64::MAX` before the first chunk.
    snapshot_chunk_us: AtomicU64,
    put_latency: Mutex<Stats>,
    /// Put latency samples not yet sent to CloudWatch.
    put_latency_window: Mutex<Stats>,
    /// Unix milliseconds the source last knew itself current to (an event's binlog time, or
    /// the moment of a heartbeat); 0 before the first.
    read_time_ms: AtomicU64,
    progress: Mutex<Progress>,
    /// The server's binlog retention, in seconds; -1 when it never expires binlogs or is
    /// unknown (RDS with NULL retention hours keeps none: 0).
    retention_seconds: AtomicI64,
    state: AtomicU8,
    per_table: Option<Mutex<BTreeMap<TableName, u64>>>,
    /// Unix milliseconds since which events have waited in the producer without Kinesis
    /// acknowledging any; 0 while nothing waits.
    unacknowledged_since_ms: AtomicU64,
    /// After how long of that `/health` says `degraded`; 0 never.
    degraded_after_ms: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

/// The values of every metric at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// Counters and their totals, in catalog order.
    pub(crate) counters: Vec<(Metric, u64)>,
    /// Gauges with a value now (a gauge with nothing to say yet is left out).
    pub(crate) gauges: Vec<(Metric, f64)>,
    /// Put latency samples so far, in milliseconds.
    pub(crate) put_latency: Stats,
    /// Per-table event totals, when enabled.
    pub(crate) per_table: Vec<(TableName, u64)>,
    /// The daemon's state.
    pub(crate) state: State,
}

impl Metrics {
    /// An empty registry; `per_table` keeps the per-table series.
    pub(crate) fn new(per_table: bool) -> Self {
        Self {
            row_events_read: Counter::default(),
            events_put: Counter::default(),
            records_put: Counter::default(),
            bytes_put: Counter::default(),
            throttled_records: Counter::default(),
            failed_records: Counter::default(),
            retries: Counter::default(),
            oversize_skipped: Counter::default(),
            events_filtered_op: Counter::default(),
            events_filtered_unchanged: Counter::default(),
            reconnects: Counter::default(),
            checkpoints_written: Counter::default(),
            publish_failures: Counter::default(),
            snapshot_rows_read: Counter::default(),
            snapshots_after_purge: Counter::default(),
            snapshot_tables_pending: AtomicI64::new(-1),
            snapshot_chunk_us: AtomicU64::new(u64::MAX),
            put_latency: Mutex::new(Stats::default()),
            put_latency_window: Mutex::new(Stats::default()),
            read_time_ms: AtomicU64::new(0),
            progress: Mutex::new(Progress::default()),
            retention_seconds: AtomicI64::new(-1),
            state: AtomicU8::new(State::Starting as u8),
            per_table: per_table.then(|| Mutex::new(BTreeMap::new())),
            unacknowledged_since_ms: AtomicU64::new(0),
            degraded_after_ms: AtomicU64::new(0),
        }
    }

    /// Sets the daemon's state.
    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// The daemon's state.
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// `/health` says `degraded` once events have waited this long without a Kinesis
    /// acknowledgement (`None`: never).
    pub(crate) fn set_degraded_after(&self, after: Option<Duration>) {
        let ms = after.map_or(0, |d| d.as_millis().max(1) as u64);
        self.degraded_after_ms.store(ms, Ordering::Relaxed);
    }

    /// The producer holds events (`waiting`) or not; called as it works.
    pub(crate) fn producer_waiting(&self, waiting: bool) {
        if !waiting {
            self.unacknowledged_since_ms.store(0, Ordering::Relaxed);
        } else if self.unacknowledged_since_ms.load(Ordering::Relaxed) == 0 {
            self.unacknowledged_since_ms
                .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
        }
    }

    /// Kinesis acknowledged a record: whatever still waits, waits from now.
    pub(crate) fn producer_acknowledged(&self) {
        if self.unacknowledged_since_ms.load(Ordering::Relaxed) != 0 {
            self.unacknowledged_since_ms
                .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
        }
    }

    /// What `/health` says at `now`: the state's name and whether an orchestrator should keep
    /// the task, or `degraded` when events have waited past `http.degraded_after_ms` without
    /// an acknowledgement (Kinesis accepts nothing).
    pub(crate) fn health(&self, now: SystemTime) -> (&'static str, bool) {
        let state = self.state();
        let after = self.degraded_after_ms.load(Ordering::Relaxed);
        let since = self.unacknowledged_since_ms.load(Ordering::Relaxed);
        let stuck = after != 0 && since != 0 && unix_ms(now).saturating_sub(since) >= after;
        if stuck && matches!(state, State::Replicating | State::Reconnecting) {
            ("degraded", false)
        } else {
            (state.name(), state.is_healthy())
        }
    }

    /// The server's binlog retention; `None` when binlogs never expire.
    pub(crate) fn set_retention(&self, retention: Option<Duration>) {
        self.retention_seconds.store(
            retention.map_or(-1, |r| r.as_secs().min(i64::MAX as u64) as i64),
            Ordering::Relaxed,
        );
    }

    /// The source read an event written at `binlog_ts` (Unix seconds; 0 = no timestamp).
    pub(crate) fn event_read(&self, binlog_ts: u32) {
        if binlog_ts != 0 {
            self.read_time_ms
                .store(u64::from(binlog_ts) * 1000, Ordering::Relaxed);
        }
    }

    /// The source got a heartbeat: the server had nothing newer, so the reader is current.
    pub(crate) fn heartbeat(&self) {
        self.read_time_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// The source read a transaction boundary.
    pub(crate) fn boundary_read(&self, position: &BinlogPosition) {
        let mut progress = lock(&self.progress);
        progress.read = Some(position.clone());
        if progress.waiting_since.is_none() {
            progress.waiting_since = Some(SystemTime::now());
        }
    }

    /// The checkpoint task wrote `position`, whose event has binlog timestamp `binlog_ts`.
    pub(crate) fn checkpoint_written(&self, position: &BinlogPosition, binlog_ts: u32) {
        self.checkpoints_written.add(1);
        let mut progress = lock(&self.progress);
        let caught_up = progress.read.as_ref() == Some(position);
        progress.waiting_since = (!caught_up).then(SystemTime::now);
        progress.committed = Some((position.clone(), binlog_ts));
    }

    /// One PutRecords call took `elapsed`.
    pub(crate) fn put_call(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        lock(&self.put_latency).record(ms);
        lock(&self.put_latency_window).record(ms);
    }

    /// The put latency samples since the last call (for CloudWatch's statistic set).
    pub(crate) fn take_latency_window(&self) -> Stats {
        std::mem::take(&mut *lock(&self.put_latency_window))
    }

    /// Puts samples taken by [`Self::take_latency_window`] back, after a failed publish.
    pub(crate) fn restore_latency_window(&self, taken: Stats) {
        let mut window = lock(&self.put_latency_window);
        if taken.count == 0 {
            return;
        }
        if window.count == 0 {
            *window = taken;
            return;
        }
        window.count += taken.count;
        window.sum += taken.sum;
        window.min = window.min.min(taken.min);
        window.max = window.max.max(taken.max);
    }

    /// Kinesis acknowledged `events` events of `table`.
    pub(crate) fn table_events_put(&self, table: &TableName, events: u64) {
        if let Some(per_table) = &self.per_table {
            *lock(per_table).entry(table.clone()).or_default() += events;
        }
    }

    /// Tables a snapshot still has to read.
    pub(crate) fn set_snapshot_tables_pending(&self, tables: usize) {
        self.snapshot_tables_pending
            .store(tables.min(i64::MAX as usize) as i64, Ordering::Relaxed);
    }

    /// A snapshot chunk took `took` to read.
    pub(crate) fn snapshot_chunk_read(&self, took: Duration) {
        self.snapshot_chunk_us.store(
            took.as_micros().min(u128::from(u64::MAX - 1)) as u64,
            Ordering::Relaxed,
        );
    }

    /// Every metric's value at `now`.
    pub(crate) fn snapshot(&self, now: SystemTime) -> Snapshot {
        let now_ms = unix_ms(now);
        let state = self.state();
        let counters = vec![
            (ROW_EVENTS_READ, self.row_events_read.get()),
            (EVENTS_PUT, self.events_put.get()),
            (RECORDS_PUT, self.records_put.get()),
            (BYTES_PUT, self.bytes_put.get()),
            (THROTTLED_RECORDS, self.throttled_records.get()),
            (FAILED_RECORDS, self.failed_records.get()),
            (RETRIES, self.retries.get()),
            (OVERSIZE_SKIPPED, self.oversize_skipped.get()),
            (EVENTS_FILTERED_BY_OP, self.events_filtered_op.get()),
            (
                EVENTS_FILTERED_UNCHANGED,
                self.events_filtered_unchanged.get(),
            ),
            (RECONNECTS, self.reconnects.get()),
            (CHECKPOINTS_WRITTEN, self.checkpoints_written.get()),
            (PUBLISH_FAILURES, self.publish_failures.get()),
            (SNAPSHOT_ROWS_READ, self.snapshot_rows_read.get()),
            (SNAPSHOTS_AFTER_PURGE, self.snapshots_after_purge.get()),
        ];
        let mut gauges = vec![(
            REPLICATING,
            if state == State::Replicating || state == State::Reconnecting {
                1.0
            } else {
                0.0
            },
        )];
        // Only the active instance knows these; a standby says nothing rather than zero.
        let active = matches!(
            state,
            State::Replicating | State::Reconnecting | State::Draining
        );
        let read_ms = self.read_time_ms.load(Ordering::Relaxed);
        if active && read_ms != 0 {
            gauges.push((REPLICATION_LAG, seconds_between(read_ms, now_ms)));
        }
        let pending = self.snapshot_tables_pending.load(Ordering::Relaxed);
        if active && pending >= 0 {
            gauges.push((SNAPSHOT_TABLES_PENDING, pending as f64));
        }
        let chunk_us = self.snapshot_chunk_us.load(Ordering::Relaxed);
        if active && chunk_us != u64::MAX {
            gauges.push((SNAPSHOT_CHUNK_SECONDS, chunk_us as f64 / 1e6));
        }
        if active {
            let progress = lock(&self.progress);
            let waited = progress
                .waiting_since
                .map_or(0.0, |since| seconds_between(unix_ms(since), now_ms));
            gauges.push((SECONDS_SINCE_CHECKPOINT, waited));
            let retention = self.retention_seconds.load(Ordering::Relaxed);
            if retention >= 0 {
                // The checkpoint's file was last written no earlier than the checkpoint's own
                // event, so retention counted from that event is a lower bound on the time
                // left. With nothing waiting, the checkpoint is at the live end of the log,
                // which is never purged.
                let age = match (&progress.waiting_since, &progress.committed) {
                    (None, _) => 0.0,
                    (Some(_), Some((_, ts))) if *ts != 0 => {
                        seconds_between(u64::from(*ts) * 1000, now_ms)
                    }
                    (Some(since), _) => seconds_between(unix_ms(*since), now_ms),
                };
                gauges.push((BINLOG_RETENTION_HEADROOM, retention as f64 - age));
            }
        }
        let per_table = self
            .per_table
            .as_ref()
            .map(|m| lock(m).iter().map(|(t, n)| (t.clone(), *n)).collect())
            .unwrap_or_default();
        Snapshot {
            counters,
            gauges,
            put_latency: *lock(&self.put_latency),
            per_table,
            state,
        }
    }
}

/// Locks a metrics mutex; a panic elsewhere while it was held leaves plain numbers behind,
/// which are still worth reading.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds from `from_ms` to `to_ms`, never negative (clocks of two hosts disagree a little).
fn seconds_between(from_ms: u64, to_ms: u64) -> f64 {
    to_ms.saturating_sub(from_ms) as f64 / 1000.0
}

#[cfg(test)]
mod tests;
