//! The catalog: every metric's name, unit, kind and meaning, as CloudWatch, Prometheus and the
//! README name them. The README table is checked against it by a test.

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only grows; CloudWatch gets the increase per interval (`Sum`).
    Counter,
    /// A value at the moment of publishing.
    Gauge,
    /// A distribution of samples: CloudWatch gets a statistic set per interval.
    Distribution,
}

/// A CloudWatch unit, with its Prometheus scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A count of things.
    Count,
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
    /// Milliseconds (Prometheus gets seconds).
    Milliseconds,
}

impl Unit {
    /// The CloudWatch unit name.
    pub(crate) fn cloudwatch(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Seconds => "Seconds",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One entry of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The CloudWatch metric name.
    pub name: &'static str,
    /// The Prometheus metric name.
    pub(crate) prometheus: &'static str,
    /// Counter, gauge or distribution.
    pub(crate) kind: Kind,
    /// The unit.
    pub(crate) unit: Unit,
    /// What it means, for people and for the Prometheus `# HELP` line.
    pub(crate) help: &'static str,
}

/// Gauge, seconds: now minus the binlog timestamp of the last event read; 0 after a heartbeat
/// (the server had nothing newer). Not published until the first event or heartbeat.
pub(crate) const REPLICATION_LAG: Metric = Metric {
    name: "ReplicationLag",
    prometheus: "binlog_kinesis_replication_lag_seconds",
    kind: Kind::Gauge,
    unit: Unit::Seconds,
    help: "Now minus the binlog timestamp of the last event read (0 when caught up, as heartbeats show).",
};

/// Gauge, seconds: how long changes that were read have waited for the checkpoint; 0 while
/// everything read is checkpointed (an idle database does not look stuck).
pub(crate) const SECONDS_SINCE_CHECKPOINT: Metric = Metric {
    name: "SecondsSinceCheckpoint",
    prometheus: "binlog_kinesis_seconds_since_checkpoint",
    kind: Kind::Gauge,
    unit: Unit::Seconds,
    help: "Seconds since the last checkpoint write while read changes wait for one; 0 when everything read is checkpointed.",
};

/// Gauge, seconds: a lower bound on how long until the server's binlog retention removes the
/// file the checkpoint points into. Published only when the server expires binlogs.
pub(crate) const BINLOG_RETENTION_HEADROOM: Metric = Metric {
    name: "BinlogRetentionHeadroom",
    prometheus: "binlog_kinesis_binlog_retention_headroom_seconds",
    kind: Kind::Gauge,
    unit: Unit::Seconds,
    help: "Seconds until binlog retention could remove the checkpoint's file (retention minus the checkpoint's age); negative means a restart may find it purged.",
};

/// Gauge, count: 1 while this instance holds the lock and replicates, 0 otherwise (standby,
/// starting, draining). Alarm on its absence or on a maximum below 1.
pub(crate) const REPLICATING: Metric = Metric {
    name: "Replicating",
    prometheus: "binlog_kinesis_replicating",
    kind: Kind::Gauge,
    unit: Unit::Count,
    help: "1 while this instance is the active replicator, 0 while standby, starting or draining.",
};

/// Counter: row changes read from the binlog for captured tables (one JSON event each).
pub(crate) const ROW_EVENTS_READ: Metric = Metric {
    name: "RowEventsRead",
    prometheus: "binlog_kinesis_row_events_read_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Row changes read from the binlog for captured tables (one JSON event each).",
};

/// Counter: events Kinesis acknowledged.
pub(crate) const EVENTS_PUT: Metric = Metric {
    name: "EventsPut",
    prometheus: "binlog_kinesis_events_put_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Events acknowledged by Kinesis.",
};

/// Counter: records Kinesis acknowledged (a record holds one or more events of one table).
pub(crate) const RECORDS_PUT: Metric = Metric {
    name: "RecordsPut",
    prometheus: "binlog_kinesis_records_put_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Records acknowledged by Kinesis (each holds one or more events of one table).",
};

/// Counter, bytes: record data plus partition keys acknowledged by Kinesis.
pub(crate) const BYTES_PUT: Metric = Metric {
    name: "BytesPut",
    prometheus: "binlog_kinesis_put_bytes_total",
    kind: Kind::Counter,
    unit: Unit::Bytes,
    help: "Record data and partition key bytes acknowledged by Kinesis.",
};

/// Distribution, milliseconds: duration of each PutRecords call, successful or not.
pub(crate) const PUT_LATENCY: Metric = Metric {
    name: "PutLatency",
    prometheus: "binlog_kinesis_put_latency_seconds",
    kind: Kind::Distribution,
    unit: Unit::Milliseconds,
    help: "Duration of PutRecords calls.",
};

/// Counter: records refused with `ProvisionedThroughputExceededException` (then retried).
pub(crate) const THROTTLED_RECORDS: Metric = Metric {
    name: "ThrottledRecords",
    prometheus: "binlog_kinesis_throttled_records_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Records Kinesis throttled (retried before anything after them on their key).",
};

/// Counter: record attempts that failed for any other reason (a per-record error or a failed
/// call); retried unless the error is permanent.
pub(crate) const FAILED_RECORDS: Metric = Metric {
    name: "FailedRecords",
    prometheus: "binlog_kinesis_failed_records_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Record attempts that failed other than by throttling (5xx, network, per-record errors).",
};

/// Counter: record attempts retried after a failure (throttled or failed).
pub(crate) const RETRIES: Metric = Metric {
    name: "Retries",
    prometheus: "binlog_kinesis_retries_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Record attempts retried after throttling or a failure.",
};

/// Counter: events larger than a record may be, skipped under `kinesis.oversize = "skip"`.
pub(crate) const OVERSIZE_SKIPPED: Metric = Metric {
    name: "OversizeEventsSkipped",
    prometheus: "binlog_kinesis_oversize_events_skipped_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Events larger than the maximum record size, skipped (kinesis.oversize = \"skip\").",
};

/// Counter: row changes read but not sent because their table's `[changes]` rule leaves out
/// their operation (`ops`).
pub(crate) const EVENTS_FILTERED_BY_OP: Metric = Metric {
    name: "EventsFilteredByOp",
    prometheus: "binlog_kinesis_events_filtered_by_op_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Row changes not sent: their operation is not in their table's [changes] ops.",
};

/// Counter: updates read but not sent because they changed none of the columns their
/// table's `[changes]` rule watches (`emit_update_when_changed`).
pub(crate) const EVENTS_FILTERED_UNCHANGED: Metric = Metric {
    name: "EventsFilteredUnchanged",
    prometheus: "binlog_kinesis_events_filtered_unchanged_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Updates not sent: they changed none of their table's [changes] emit_update_when_changed columns.",
};

/// Counter: replication connections lost and reopened (one per incident, however many
/// attempts it took).
pub(crate) const RECONNECTS: Metric = Metric {
    name: "Reconnects",
    prometheus: "binlog_kinesis_reconnects_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help:
        "Replication connections lost (one per incident, however many attempts the reconnect took).",
};

/// Counter: checkpoints written.
pub(crate) const CHECKPOINTS_WRITTEN: Metric = Metric {
    name: "CheckpointsWritten",
    prometheus: "binlog_kinesis_checkpoints_written_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Checkpoints written to the store.",
};

/// Counter: PutMetricData calls that failed (logged, never fatal); visible in Prometheus and
/// in CloudWatch once publishing works again.
pub(crate) const PUBLISH_FAILURES: Metric = Metric {
    name: "MetricsPublishFailures",
    prometheus: "binlog_kinesis_metrics_publish_failures_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "CloudWatch PutMetricData calls that failed.",
};

/// Counter, per table (only with `[metrics] per_table = true`): events acknowledged.
pub(crate) const TABLE_EVENTS_PUT: Metric = Metric {
    name: "TableEventsPut",
    prometheus: "binlog_kinesis_table_events_put_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Events acknowledged by Kinesis, per table (opt-in).",
};

/// Counter: rows a snapshot read and emitted (`"op":"read"` events).
pub(crate) const SNAPSHOT_ROWS_READ: Metric = Metric {
    name: "SnapshotRowsRead",
    prometheus: "binlog_kinesis_snapshot_rows_read_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Rows read by snapshots and emitted as read events.",
};

/// Gauge: tables a snapshot still has to read, the one being read included. Published once
/// the source started, 0 when no snapshot runs.
pub(crate) const SNAPSHOT_TABLES_PENDING: Metric = Metric {
    name: "SnapshotTablesPending",
    prometheus: "binlog_kinesis_snapshot_tables_pending",
    kind: Kind::Gauge,
    unit: Unit::Count,
    help: "Tables a snapshot still has to read (0 when none runs).",
};

/// Counter: starts that found the checkpoint's position purged and, with
/// `snapshot.mode = "when_needed"`, snapshotted every table again instead of stopping.
pub(crate) const SNAPSHOTS_AFTER_PURGE: Metric = Metric {
    name: "SnapshotsAfterPurge",
    prometheus: "binlog_kinesis_snapshots_after_purge_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Starts that found the checkpoint's binlog purged and snapshotted everything again (snapshot.mode = \"when_needed\").",
};

/// Gauge, seconds: how long the last snapshot chunk took to read (its consistent read, the
/// query and the encoding). Published once a chunk was read.
pub(crate) const SNAPSHOT_CHUNK_SECONDS: Metric = Metric {
    name: "SnapshotChunkSeconds",
    prometheus: "binlog_kinesis_snapshot_chunk_seconds",
    kind: Kind::Gauge,
    unit: Unit::Seconds,
    help: "Seconds the last snapshot chunk took to read.",
};

/// Every metric, in the order they are exported.
pub const CATALOG: &[Metric] = &[
    REPLICATION_LAG,
    SECONDS_SINCE_CHECKPOINT,
    BINLOG_RETENTION_HEADROOM,
    REPLICATING,
    ROW_EVENTS_READ,
    EVENTS_PUT,
    RECORDS_PUT,
    BYTES_PUT,
    PUT_LATENCY,
    THROTTLED_RECORDS,
    FAILED_RECORDS,
    RETRIES,
    OVERSIZE_SKIPPED,
    EVENTS_FILTERED_BY_OP,
    EVENTS_FILTERED_UNCHANGED,
    RECONNECTS,
    CHECKPOINTS_WRITTEN,
    PUBLISH_FAILURES,
    SNAPSHOT_ROWS_READ,
    SNAPSHOT_TABLES_PENDING,
    SNAPSHOT_CHUNK_SECONDS,
    SNAPSHOTS_AFTER_PURGE,
    TABLE_EVENTS_PUT,
];
