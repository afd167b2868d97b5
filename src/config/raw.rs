//! The raw configuration, as serde reads it from TOML and the environment, with its defaults;
//! [`FileConfig::load`] layers the file and the environment.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    environment::{apply_env, env_overrides, redacted_toml_error},
    ConfigError, Oversize, PartitionBy, ENV_PREFIX, FIREHOSE_MAX_EVENTS_PER_RECORD,
    FIREHOSE_MAX_RECORD_BYTES, SECRET_KEYS,
};

/// The raw configuration, as read from TOML and the environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[mysql]`
    pub(crate) mysql: RawMysql,
    /// `[filter]`
    pub(crate) filter: RawFilter,
    /// `[kinesis]`
    pub(crate) kinesis: RawKinesis,
    /// `[checkpoint]`
    pub(crate) checkpoint: RawCheckpoint,
    /// `[shutdown]`
    pub(crate) shutdown: RawShutdown,
    /// `[metrics]`
    pub(crate) metrics: RawMetrics,
    /// `[http]`
    pub(crate) http: RawHttp,
    /// `[log]`
    pub(crate) log: RawLog,
    /// `[sink]`
    pub(crate) sink: RawSink,
    /// `[snapshot]`
    pub(crate) snapshot: RawSnapshot,
    /// `[columns]`
    pub(crate) columns: RawColumns,
    /// `[changes]`
    pub(crate) changes: RawChanges,
    /// `[output]`
    pub(crate) output: RawOutput,
}

/// A secret as read (a TOML string): `Debug` prints `<redacted>`, so a raw configuration
/// printed whole shows no secret.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct RawSecret(pub(crate) String);

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[output]`: optional kinds of events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawOutput {
    /// `ddl` events for DDL statements on tables in scope.
    pub(crate) ddl: bool,
}

/// `[changes]`: which row changes are sent (see `config::changes`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawChanges {
    /// `[[changes.rules]]`.
    pub(crate) rules: Vec<RawChangeRule>,
}

/// One `[[changes.rules]]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawChangeRule {
    /// `db.table` patterns, as in `[filter]`.
    pub(crate) tables: Vec<String>,
    /// Columns whose change makes an update worth sending; empty: every update.
    pub(crate) emit_update_when_changed: Vec<String>,
    /// Operations sent (`insert`, `update`, `delete`, `truncate`); empty: all.
    pub(crate) ops: Vec<String>,
}

/// `[columns]`: rules for what columns show of themselves (see `config::columns`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawColumns {
    /// The HMAC-SHA256 key of `hash` columns: a secret, set from the environment.
    pub(crate) hash_key: RawSecret,
    /// What `mask` columns become.
    pub(crate) mask_with: String,
    /// `[[columns.rules]]`.
    pub(crate) rules: Vec<RawColumnRule>,
}

impl Default for RawColumns {
    fn default() -> Self {
        Self {
            hash_key: RawSecret::default(),
            mask_with: "***".into(),
            rules: Vec::new(),
        }
    }
}

/// One `[[columns.rules]]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawColumnRule {
    /// `db.table` patterns, as in `[filter]`.
    pub(crate) tables: Vec<String>,
    /// Columns never written.
    pub(crate) exclude: Vec<String>,
    /// Columns written as a keyed hash.
    pub(crate) hash: Vec<String>,
    /// Columns written as `mask_with`.
    pub(crate) mask: Vec<String>,
}

/// `[mysql]`: the source server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMysql {
    /// Host name or address.
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: i64,
    /// Replication user.
    pub(crate) user: String,
    /// Password; normally from `BINLOG_KINESIS__MYSQL__PASSWORD`.
    pub(crate) password: RawSecret,
    /// This replica's server id, unique among the server's replicas.
    pub(crate) server_id: i64,
    /// Heartbeat period asked of the server; a connection silent for 3 periods is dead.
    pub(crate) heartbeat_ms: i64,
    /// Bytes of one transaction's events held back to stamp them with its XID.
    pub(crate) transaction_lookahead_bytes: i64,
    /// Largest binlog event accepted; the driver holds a whole event while reading it.
    pub(crate) max_event_bytes: i64,
    /// Threads that encode rows beside the reader; -1: one fewer than the CPUs, at most 3.
    pub(crate) encode_threads: i64,
    /// `disabled`, `preferred`, `required`, `verify-ca` or `verify-identity`.
    pub(crate) tls_mode: String,
    /// PEM file of the CA certificates to trust (for example the RDS CA bundle).
    pub(crate) tls_ca_file: String,
}

impl Default for RawMysql {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3306,
            user: "cdc".into(),
            password: RawSecret::default(),
            server_id: 4242,
            heartbeat_ms: 5_000,
            transaction_lookahead_bytes: 8 << 20,
            max_event_bytes: 1 << 30,
            encode_threads: -1,
            tls_mode: "preferred".into(),
            tls_ca_file: String::new(),
        }
    }
}

/// `[filter]`: which tables are captured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawFilter {
    /// `db.table` patterns with `*` wildcards; empty means every table.
    pub(crate) include: Vec<String>,
    /// Patterns removed from what `include` selects.
    pub(crate) exclude: Vec<String>,
}

/// `[kinesis]`: the destination stream and the producer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawKinesis {
    /// Stream name.
    pub(crate) stream: String,
    /// AWS region; empty means the default chain.
    pub(crate) region: String,
    /// Endpoint override (an emulator or a VPC endpoint); empty means the AWS default.
    pub(crate) endpoint_url: String,
    /// Largest record, data plus partition key.
    pub(crate) max_record_bytes: i64,
    /// How long a partly filled record waits for more events of its key.
    pub(crate) linger_ms: i64,
    /// The longest one PutRecords call may take before it is abandoned and retried.
    pub(crate) call_timeout_ms: i64,
    /// Cap on event bytes held by the producer (queued or in flight).
    pub(crate) max_buffered_bytes: i64,
    /// What to do with an event larger than a record may be: `fail` or `skip`.
    pub(crate) oversize: Oversize,
    /// Most events in one record; 0 for no limit but the size. The default is the most
    /// Firehose deaggregates from one record ([`FIREHOSE_MAX_EVENTS_PER_RECORD`]).
    pub(crate) max_events_per_record: i64,
    /// `table` (per-table order) or `primary_key` (per-row order, spread over shards).
    pub(crate) partition_by: PartitionBy,
}

impl Default for RawKinesis {
    fn default() -> Self {
        Self {
            stream: "cdc-events".into(),
            region: String::new(),
            endpoint_url: String::new(),
            max_record_bytes: FIREHOSE_MAX_RECORD_BYTES as i64,
            linger_ms: 50,
            call_timeout_ms: crate::fence::CALL_TIMEOUT.as_millis() as i64,
            max_buffered_bytes: 32 << 20,
            oversize: Oversize::Fail,
            max_events_per_record: FIREHOSE_MAX_EVENTS_PER_RECORD as i64,
            partition_by: PartitionBy::Table,
        }
    }
}

/// `[checkpoint]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCheckpoint {
    /// Checkpoint file.
    pub(crate) path: String,
    /// Where the checkpoint lives as a URL: `s3://bucket/key`, `file:///path` or a plain
    /// path; when set, it replaces `path`.
    pub(crate) url: String,
    /// Endpoint override for the S3 store (an emulator or a VPC endpoint).
    pub(crate) endpoint_url: String,
    /// How often the committed position is written.
    pub(crate) interval_ms: i64,
}

impl Default for RawCheckpoint {
    fn default() -> Self {
        Self {
            path: "/var/lib/binlog-kinesis/checkpoint.json".into(),
            url: String::new(),
            endpoint_url: String::new(),
            interval_ms: 5_000,
        }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawShutdown {
    /// Upper bound on the drain after SIGTERM.
    pub(crate) drain_timeout_ms: i64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 25_000,
        }
    }
}

/// `[metrics]`: CloudWatch publishing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMetrics {
    /// Publish to CloudWatch.
    pub(crate) cloudwatch: bool,
    /// CloudWatch namespace.
    pub(crate) namespace: String,
    /// Publishing interval.
    pub(crate) interval_ms: i64,
    /// The `Source` dimension; empty means the MySQL host name.
    pub(crate) source: String,
    /// Also publish per-table series (one billed metric per table).
    pub(crate) per_table: bool,
    /// AWS region for CloudWatch; empty means `[kinesis] region`.
    pub(crate) region: String,
    /// Endpoint override for CloudWatch.
    pub(crate) endpoint_url: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            cloudwatch: true,
            namespace: "BinlogKinesis".into(),
            interval_ms: 60_000,
            source: String::new(),
            per_table: false,
            region: String::new(),
            endpoint_url: String::new(),
        }
    }
}

/// `[http]`: the `/metrics` and `/health` listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHttp {
    /// `host:port` to listen on; empty turns the listener off.
    pub(crate) listen: String,
    /// `/health` reports `degraded` (503) after this long without a Kinesis acknowledgement
    /// while events wait; 0 never.
    pub(crate) degraded_after_ms: i64,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9187".into(),
            degraded_after_ms: 300_000,
        }
    }
}

/// `sink.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SinkName {
    /// The Kinesis stream.
    Kinesis,
    /// Standard output.
    Stdout,
    /// A file (`sink.path`).
    File,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[sink]`: where records go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSink {
    /// `kinesis`, `stdout` or `file`.
    pub(crate) kind: SinkName,
    /// The file, for `kind = "file"`.
    pub(crate) path: String,
}

impl Default for RawSink {
    fn default() -> Self {
        Self {
            kind: SinkName::Kinesis,
            path: String::new(),
        }
    }
}

/// `[snapshot]`: reading the rows tables already have.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSnapshot {
    /// `initial`, `when_needed` or `never`.
    pub(crate) mode: SnapshotMode,
    /// Most rows in one chunk.
    pub(crate) chunk_rows: i64,
    /// Most bytes of encoded rows in one chunk.
    pub(crate) chunk_bytes: i64,
    /// Tables read at once, each over its own connection.
    pub(crate) parallel_tables: i64,
    /// `database.table` whose inserts ask for snapshots; empty: none.
    pub(crate) signal_table: String,
    /// How a chunk finds its place: `auto`, `consistent_snapshot` or `watermark`.
    pub(crate) method: SnapshotMethod,
}

impl Default for RawSnapshot {
    fn default() -> Self {
        Self {
            mode: SnapshotMode::Initial,
            chunk_rows: 10_000,
            chunk_bytes: 16 << 20,
            parallel_tables: 2,
            signal_table: String::new(),
            method: SnapshotMethod::Auto,
        }
    }
}

/// `snapshot.method`: how a chunk's place in the stream is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SnapshotMethod {
    /// `consistent_snapshot` on MariaDB, `watermark` on MySQL.
    Auto,
    /// MariaDB's binlog position of a consistent read.
    ConsistentSnapshot,
    /// Low and high watermarks written into `snapshot.signal_table` around each chunk's read.
    Watermark,
}

/// `snapshot.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SnapshotMode {
    /// The first start without a checkpoint snapshots every included table; tables added to
    /// the filter later are snapshotted at the next start.
    Initial,
    /// As `Initial`, and when the checkpoint's position is no longer on the server: start
    /// at its end and snapshot everything again, instead of stopping (exit code 4).
    WhenNeeded,
    /// No automatic snapshot (`run --snapshot` still works).
    Never,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    /// `text` or `json` (one object per line).
    pub(crate) format: LogFormat,
    /// `error`, `warn`, `info`, `debug` or `trace`, or a full filter (`info,binlog_kinesis=debug`);
    /// `RUST_LOG` wins when set.
    pub(crate) level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl FileConfig {
    /// Reads `path` (if any), then applies the `BINLOG_KINESIS__*` variables of the process
    /// environment. Variables that are not ours are ignored whatever their bytes; one of ours
    /// whose value is not UTF-8 is an error naming it.
    pub fn load_from_environment(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load(path, env_overrides(std::env::vars_os())?)
    }

    /// Reads `path` (if any), then applies the `BINLOG_KINESIS__*` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let parse_error =
                    |message: String, span: Option<std::ops::Range<usize>>| ConfigError::Parse {
                        path: path.to_owned(),
                        message: redacted_toml_error(&text, &message, span),
                    };
                let table: toml::Table =
                    toml::from_str(&text).map_err(|error: toml::de::Error| {
                        parse_error(error.message().to_owned(), error.span())
                    })?;
                // A secret of the wrong type would be quoted by the type error below.
                for (section, key) in SECRET_KEYS {
                    let value = table.get(*section).and_then(|s| s.get(*key));
                    if value.is_some_and(|v| !v.is_str()) {
                        return Err(parse_error(
                            format!("[{section}] {key} must be a string (its value is not shown: it is a secret)"),
                            None,
                        ));
                    }
                }
                // Type-check the file on its own first, so its errors name the file.
                Self::deserialize(toml::Value::Table(table.clone()))
                    .map_err(|error| parse_error(error.to_string(), None))?;
                table
            }
            None => toml::Table::new(),
        };
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        // By name, stably: for a repeated name the last value wins, as in a shell.
        overrides.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in overrides {
            apply_env(&mut table, &name, &value)?;
        }
        Self::deserialize(toml::Value::Table(table)).map_err(|error| ConfigError::Env {
            name: ENV_PREFIX.trim_end_matches('_').to_owned() + "__*",
            message: error.to_string(),
        })
    }
}
