//! Configuration: a TOML file, environment overrides, then validation into types that cannot be
//! wrong.
//!
//! # Layers
//!
//! Defaults < file < environment < command line. Every file key `[section] key` can be set by
//! the environment variable `BINLOG_KINESIS__SECTION__KEY` (upper case, double underscores);
//! that is how secrets such as `BINLOG_KINESIS__MYSQL__PASSWORD` arrive on ECS. An environment
//! value is read as the type the key has: numbers and booleans are parsed, lists are either a
//! TOML array (`["shop.*","crm.users"]`) or comma separated (`shop.*,crm.users`).
//!
//! Unknown sections and keys, in the file or in the environment, are errors: a typo must not
//! silently fall back to a default.
//!
//! # Raw and validated
//!
//! [`FileConfig`] is what serde reads; [`Config`] is what the daemon runs with, produced by
//! [`FileConfig::validate`]. Every stage gets its own section by value.

mod aws;
mod changes;
mod columns;
mod environment;
mod filter;
mod raw;
mod validate;

use std::{fmt, num::NonZeroU32, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use self::validate::invalid;

pub(crate) use self::{
    aws::aws_sdk_config,
    changes::{ChangeRules, Ops},
    columns::{ColumnAction, ColumnRules},
    environment::SECRET_KEYS,
    filter::TableFilter,
};
pub use self::{aws::https_client, raw::*};

/// The environment prefix of per-key overrides.
pub(crate) const ENV_PREFIX: &str = "BINLOG_KINESIS__";

/// Most tables a snapshot reads at once (`snapshot.parallel_tables`): each holds a
/// connection to the server and two chunks of memory.
pub(crate) const MAX_PARALLEL_TABLES: usize = 16;

/// The largest Kinesis record that Firehose accepts (1,000 KiB); the default record cap.
pub(crate) const FIREHOSE_MAX_RECORD_BYTES: usize = 1_024_000;

/// The most events Firehose deaggregates from one record (multi-record deaggregation, which
/// dynamic partitioning of aggregated records needs); the default `max_events_per_record`.
pub(crate) const FIREHOSE_MAX_EVENTS_PER_RECORD: usize = 500;

/// A configuration problem: always exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path:?}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path:?}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, including the key and line.
        message: String,
    },
    /// An environment override names a key that does not exist or has a malformed value.
    #[error("invalid environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid setting [{section}] {key}: {message}")]
    Invalid {
        /// The section.
        section: &'static str,
        /// The key.
        key: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The source server.
    pub mysql: MysqlConfig,
    /// Which tables are captured.
    pub(crate) filter: TableFilter,
    /// What columns show of themselves.
    pub(crate) columns: ColumnRules,
    /// Which row changes are sent.
    pub(crate) changes: ChangeRules,
    /// `output.ddl`: DDL statements on tables in scope become `ddl` events.
    pub(crate) ddl_events: bool,
    /// The destination.
    pub kinesis: KinesisConfig,
    /// Where progress is saved.
    pub checkpoint: CheckpointConfig,
    /// Drain bounds.
    pub shutdown: ShutdownConfig,
    /// CloudWatch publishing.
    pub(crate) metrics: MetricsConfig,
    /// The `/metrics` and `/health` listener.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// Where records go.
    pub sink: SinkKind,
    /// Snapshots.
    pub snapshot: SnapshotConfig,
}

impl Config {
    /// Settings that work but may not be what the user meant, to log once at startup and print
    /// in `check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let per_record = self.kinesis.max_events_per_record;
        if self.sink == SinkKind::Kinesis && per_record > FIREHOSE_MAX_EVENTS_PER_RECORD {
            let setting = match per_record {
                usize::MAX => "0 (no limit)".to_owned(),
                n => n.to_string(),
            };
            warnings.push(format!(
                "kinesis.max_events_per_record is {setting}: a record may hold more events than \
                 Firehose's multi-record deaggregation takes from one record \
                 ({FIREHOSE_MAX_EVENTS_PER_RECORD}), which its dynamic partitioning needs; if a \
                 Firehose stream reads this stream, set it to {FIREHOSE_MAX_EVENTS_PER_RECORD} or \
                 less (see the README's \"which setting for which consumer\")"
            ));
        }
        warnings
    }
}

/// `[snapshot]`, validated, and the tables `run --snapshot` names.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// When tables are snapshotted without being asked.
    pub(crate) mode: SnapshotMode,
    /// Most rows in one chunk.
    pub(crate) chunk_rows: usize,
    /// Most bytes of encoded rows in one chunk.
    pub(crate) chunk_bytes: usize,
    /// Tables read at once, each over its own connection (1 to [`MAX_PARALLEL_TABLES`]).
    pub(crate) parallel_tables: usize,
    /// `run --snapshot`: tables to snapshot again on this start (not a file key: a one-off
    /// request must not repeat at every restart).
    pub(crate) again: Vec<crate::event::TableName>,
    /// The `[filter]` patterns, as the checkpoint records what the stream covers.
    pub(crate) filter_patterns: (Vec<String>, Vec<String>),
    /// `snapshot.signal_table`: inserts into it ask for snapshots while running.
    pub(crate) signal_table: Option<crate::event::TableName>,
    /// `snapshot.method`.
    pub(crate) method: SnapshotMethod,
}

impl SnapshotConfig {
    /// Asks for `tables` (`database.table`) to be snapshotted again on this start.
    pub fn snapshot_again(&mut self, tables: &[String]) -> Result<(), ConfigError> {
        for text in tables {
            let (database, table) =
                crate::event::TableName::split(text.trim()).ok_or_else(|| {
                    ConfigError::Invalid {
                        section: "run",
                        key: "--snapshot",
                        message: format!("{text:?} is not a database.table name"),
                    }
                })?;
            self.again
                .push(crate::event::TableName::new(&database, &table));
        }
        Ok(())
    }
}

/// `[sink] kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// The Kinesis stream of `[kinesis]`.
    Kinesis,
    /// Standard output, one event per line (logs stay on standard error).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// A string that never prints: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the MySQL connections use TLS (the MySQL client's `--ssl-mode` values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// Plain TCP.
    Disabled,
    /// TLS when the server offers it, without verifying its certificate; plain otherwise.
    Preferred,
    /// TLS, without verifying the certificate: encrypted, not authenticated.
    Required,
    /// TLS, the certificate chain verified against the CA file (or the built-in roots).
    VerifyCa(Option<PathBuf>),
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyIdentity(Option<PathBuf>),
}

/// `[mysql]`, validated.
#[derive(Debug, Clone)]
pub struct MysqlConfig {
    /// Host name or address.
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
    /// Replication user.
    pub(crate) user: String,
    /// Password.
    pub(crate) password: Secret,
    /// This replica's server id.
    pub(crate) server_id: NonZeroU32,
    /// Heartbeat period asked of the server.
    pub(crate) heartbeat: Duration,
    /// Bytes of one transaction held back to stamp its events with the XID.
    pub(crate) transaction_lookahead_bytes: usize,
    /// Largest binlog event (packet) accepted from the server: what caps the memory the
    /// driver needs for one huge row.
    pub(crate) max_event_bytes: usize,
    /// Threads that encode rows beside the reader; `None`: one fewer than the CPUs, at most 3.
    pub(crate) encode_threads: Option<usize>,
    /// TLS for every connection to the server.
    pub(crate) tls: TlsMode,
}

/// `[kinesis]`, validated.
#[derive(Debug, Clone)]
pub struct KinesisConfig {
    /// Stream name.
    pub stream: String,
    /// Region; `None` for the default chain.
    pub(crate) region: Option<String>,
    /// Endpoint override.
    pub(crate) endpoint_url: Option<String>,
    /// Largest record, data plus partition key.
    pub(crate) max_record_bytes: usize,
    /// How long a partly filled record waits.
    pub(crate) linger: Duration,
    /// The longest one PutRecords call (or checkpoint write) may take.
    pub(crate) call_timeout: Duration,
    /// Cap on event bytes the producer holds.
    pub(crate) max_buffered_bytes: usize,
    /// What happens to an event larger than a record may be.
    pub(crate) oversize: Oversize,
    /// Most events in one record (`usize::MAX`: no limit but the size).
    pub(crate) max_events_per_record: usize,
    /// How events map to partition keys.
    pub(crate) partition_by: PartitionBy,
}

/// `kinesis.partition_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PartitionBy {
    /// `database.table`: every table in binlog order.
    Table,
    /// `database.table/<primary key values>`: every row in binlog order, a table spread over
    /// shards (tables without a primary key fall back to the table).
    PrimaryKey,
}

/// `kinesis.oversize`: an event larger than the record size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Oversize {
    /// Stop with a message naming the table and position; the checkpoint stays before it.
    Fail,
    /// Skip it: counted in a metric and logged with table, position and primary key.
    Skip,
}

/// `[checkpoint]`, validated.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Where the checkpoint lives.
    pub location: CheckpointLocation,
    /// Endpoint override for S3.
    pub(crate) endpoint_url: Option<String>,
    /// The AWS region (`[kinesis] region`) for S3.
    pub(crate) region: Option<String>,
    /// Write interval.
    pub(crate) interval: Duration,
}

/// Where the checkpoint is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointLocation {
    /// A local file (on ECS: an EFS volume, since a Fargate task's disk dies with it).
    File(PathBuf),
    /// An S3 object.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
}

impl CheckpointLocation {
    /// Parses `s3://bucket/key`, `file:///path` or a plain path.
    pub(crate) fn parse(url: &str) -> Result<Self, ConfigError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key))
                    if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') =>
                {
                    Ok(CheckpointLocation::S3 {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    })
                }
                _ => Err(invalid(
                    "checkpoint",
                    "url",
                    "an S3 location must be s3://BUCKET/KEY, with a key that names an object",
                )),
            };
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    "checkpoint",
                    "url",
                    "a file URL must be file:///absolute/path",
                ));
            }
            return Ok(CheckpointLocation::File(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(invalid(
                "checkpoint",
                "url",
                "must be s3://BUCKET/KEY, file:///PATH or a plain path",
            ));
        }
        Ok(CheckpointLocation::File(PathBuf::from(url)))
    }
}

impl fmt::Display for CheckpointLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointLocation::File(path) => write!(f, "{}", path.display()),
            CheckpointLocation::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// `[metrics]`, validated.
#[derive(Debug, Clone)]
pub(crate) struct MetricsConfig {
    /// Publish to CloudWatch.
    pub(crate) cloudwatch: bool,
    /// CloudWatch namespace.
    pub(crate) namespace: String,
    /// Publishing interval.
    pub(crate) interval: Duration,
    /// The `Source` dimension.
    pub(crate) source: String,
    /// Per-table series.
    pub(crate) per_table: bool,
    /// Region for CloudWatch.
    pub(crate) region: Option<String>,
    /// Endpoint override.
    pub(crate) endpoint_url: Option<String>,
}

/// `[http]`, validated.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address; `None` when off.
    pub listen: Option<String>,
    /// How long events may wait without a Kinesis acknowledgement before `/health` says
    /// `degraded`; `None` never.
    pub(crate) degraded_after: Option<Duration>,
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// The filter when `RUST_LOG` is not set.
    pub level: String,
}

/// `[shutdown]`, validated.
#[derive(Debug, Clone)]
pub struct ShutdownConfig {
    /// Upper bound on the drain.
    pub drain_timeout: Duration,
}

#[cfg(test)]
mod tests;
