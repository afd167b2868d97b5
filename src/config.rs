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

use std::{
    fmt,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// The environment prefix of per-key overrides.
pub const ENV_PREFIX: &str = "BINLOG_KINESIS__";

/// The largest Kinesis record that Firehose accepts (1,000 KiB); the default record cap.
pub const FIREHOSE_MAX_RECORD_BYTES: usize = 1_024_000;

/// Kinesis's own per-record cap (1 MiB, partition key included) on a stream with default
/// settings.
pub const KINESIS_MAX_RECORD_BYTES: usize = 1_048_576;

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

/// The raw configuration, as read from TOML and the environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[mysql]`
    pub mysql: RawMysql,
    /// `[filter]`
    pub filter: RawFilter,
    /// `[kinesis]`
    pub kinesis: RawKinesis,
    /// `[checkpoint]`
    pub checkpoint: RawCheckpoint,
    /// `[shutdown]`
    pub shutdown: RawShutdown,
    /// `[metrics]`
    pub metrics: RawMetrics,
    /// `[http]`
    pub http: RawHttp,
    /// `[log]`
    pub log: RawLog,
    /// `[sink]`
    pub sink: RawSink,
}

/// `[mysql]`: the source server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMysql {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: i64,
    /// Replication user.
    pub user: String,
    /// Password; normally from `BINLOG_KINESIS__MYSQL__PASSWORD`.
    pub password: String,
    /// This replica's server id, unique among the server's replicas.
    pub server_id: i64,
    /// Heartbeat period asked of the server; a connection silent for 3 periods is dead.
    pub heartbeat_ms: i64,
    /// Bytes of one transaction's events held back to stamp them with its XID.
    pub transaction_lookahead_bytes: i64,
    /// Largest binlog event accepted; the driver holds a whole event while reading it.
    pub max_event_bytes: i64,
    /// `disabled`, `preferred`, `required`, `verify-ca` or `verify-identity`.
    pub tls_mode: String,
    /// PEM file of the CA certificates to trust (for example the RDS CA bundle).
    pub tls_ca_file: String,
}

impl Default for RawMysql {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3306,
            user: "cdc".into(),
            password: String::new(),
            server_id: 4242,
            heartbeat_ms: 5_000,
            transaction_lookahead_bytes: 8 << 20,
            max_event_bytes: 1 << 30,
            tls_mode: "preferred".into(),
            tls_ca_file: String::new(),
        }
    }
}

/// `[filter]`: which tables are captured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFilter {
    /// `db.table` patterns with `*` wildcards; empty means every table.
    pub include: Vec<String>,
    /// Patterns removed from what `include` selects.
    pub exclude: Vec<String>,
}

/// `[kinesis]`: the destination stream and the producer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKinesis {
    /// Stream name.
    pub stream: String,
    /// AWS region; empty means the default chain.
    pub region: String,
    /// Endpoint override (an emulator or a VPC endpoint); empty means the AWS default.
    pub endpoint_url: String,
    /// Largest record, data plus partition key.
    pub max_record_bytes: i64,
    /// How long a partly filled record waits for more events of its key.
    pub linger_ms: i64,
    /// The longest one PutRecords call may take before it is abandoned and retried.
    pub call_timeout_ms: i64,
    /// Cap on event bytes held by the producer (queued or in flight).
    pub max_buffered_bytes: i64,
    /// What to do with an event larger than a record may be: `fail` or `skip`.
    pub oversize: String,
    /// Most events in one record; 0 for no limit but the size.
    pub max_events_per_record: i64,
    /// `table` (per-table order) or `primary_key` (per-row order, spread over shards).
    pub partition_by: String,
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
            oversize: "fail".into(),
            max_events_per_record: 0,
            partition_by: "table".into(),
        }
    }
}

/// `[checkpoint]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCheckpoint {
    /// Checkpoint file.
    pub path: String,
    /// Where the checkpoint lives as a URL: `s3://bucket/key`, `file:///path` or a plain
    /// path; when set, it replaces `path`.
    pub url: String,
    /// Endpoint override for the S3 store (an emulator or a VPC endpoint).
    pub endpoint_url: String,
    /// How often the committed position is written.
    pub interval_ms: i64,
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
pub struct RawShutdown {
    /// Upper bound on the drain after SIGTERM.
    pub drain_timeout_ms: i64,
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
pub struct RawMetrics {
    /// Publish to CloudWatch.
    pub cloudwatch: bool,
    /// CloudWatch namespace.
    pub namespace: String,
    /// Publishing interval.
    pub interval_ms: i64,
    /// The `Source` dimension; empty means the MySQL host name.
    pub source: String,
    /// Also publish per-table series (one billed metric per table).
    pub per_table: bool,
    /// AWS region for CloudWatch; empty means `[kinesis] region`.
    pub region: String,
    /// Endpoint override for CloudWatch.
    pub endpoint_url: String,
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
pub struct RawHttp {
    /// `host:port` to listen on; empty turns the listener off.
    pub listen: String,
    /// `/health` reports `degraded` (503) after this long without a Kinesis acknowledgement
    /// while events wait; 0 never.
    pub degraded_after_ms: i64,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9187".into(),
            degraded_after_ms: 300_000,
        }
    }
}

/// `[sink]`: where records go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSink {
    /// `kinesis`, `stdout` or `file`.
    pub kind: String,
    /// The file, for `kind = "file"`.
    pub path: String,
}

impl Default for RawSink {
    fn default() -> Self {
        Self {
            kind: "kinesis".into(),
            path: String::new(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `text` or `json` (one object per line).
    pub format: String,
    /// `error`, `warn`, `info`, `debug` or `trace`, or a full filter (`info,binlog_kinesis=debug`);
    /// `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
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

    /// Checks every value and returns the configuration the daemon runs with.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let FileConfig {
            mysql,
            filter,
            kinesis,
            checkpoint,
            shutdown,
            metrics,
            http,
            log,
            sink,
        } = self;
        let mysql = MysqlConfig {
            port: u16::try_from(mysql.port)
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| invalid("mysql", "port", "must be between 1 and 65535"))?,
            server_id: u32::try_from(mysql.server_id)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| {
                    invalid(
                        "mysql",
                        "server_id",
                        "must be between 1 and 4294967295 and unique among the server's replicas",
                    )
                })?,
            heartbeat: positive_ms("mysql", "heartbeat_ms", mysql.heartbeat_ms)?,
            transaction_lookahead_bytes: positive(
                "mysql",
                "transaction_lookahead_bytes",
                mysql.transaction_lookahead_bytes,
            )?,
            max_event_bytes: positive("mysql", "max_event_bytes", mysql.max_event_bytes)
                .ok()
                .filter(|n| (MIN_EVENT_BYTES..=MAX_EVENT_BYTES).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "mysql",
                        "max_event_bytes",
                        "must be between 1048576 (1 MiB) and 1073741824 (1 GiB), and at least the server's max_allowed_packet",
                    )
                })?,
            tls: tls(&mysql.tls_mode, &mysql.tls_ca_file)?,
            host: non_empty("mysql", "host", mysql.host)?,
            user: non_empty("mysql", "user", mysql.user)?,
            password: Secret(mysql.password),
        };
        let filter = TableFilter::new(&filter.include, &filter.exclude)?;
        let max_record_bytes = positive("kinesis", "max_record_bytes", kinesis.max_record_bytes)?;
        if !(1024..=10 << 20).contains(&max_record_bytes) {
            return Err(invalid(
                "kinesis",
                "max_record_bytes",
                "must be between 1024 and 10485760 (Kinesis's largest record)",
            ));
        }
        let max_buffered_bytes =
            positive("kinesis", "max_buffered_bytes", kinesis.max_buffered_bytes)?;
        if max_buffered_bytes < max_record_bytes {
            return Err(invalid(
                "kinesis",
                "max_buffered_bytes",
                "must be at least max_record_bytes",
            ));
        }
        let stream = kinesis.stream.trim().to_owned();
        if stream.is_empty()
            || stream.len() > 128
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(invalid(
                "kinesis",
                "stream",
                "must be 1 to 128 characters of a-z, A-Z, 0-9, '_', '.', '-'",
            ));
        }
        let kinesis = KinesisConfig {
            stream,
            region: Some(kinesis.region.trim().to_owned()).filter(|r| !r.is_empty()),
            endpoint_url: Some(kinesis.endpoint_url.trim().to_owned()).filter(|u| !u.is_empty()),
            max_record_bytes,
            linger: non_negative_ms("kinesis", "linger_ms", kinesis.linger_ms)?,
            call_timeout: positive_ms("kinesis", "call_timeout_ms", kinesis.call_timeout_ms)?,
            max_buffered_bytes,
            max_events_per_record: match kinesis.max_events_per_record {
                0 => usize::MAX,
                n => usize::try_from(n).map_err(|_| {
                    invalid(
                        "kinesis",
                        "max_events_per_record",
                        "must be 0 (no limit) or a positive number",
                    )
                })?,
            },
            partition_by: match kinesis.partition_by.trim() {
                "table" => PartitionBy::Table,
                "primary_key" => PartitionBy::PrimaryKey,
                _ => {
                    return Err(invalid(
                        "kinesis",
                        "partition_by",
                        "must be \"table\" or \"primary_key\"",
                    ))
                }
            },
            oversize: match kinesis.oversize.trim() {
                "fail" => Oversize::Fail,
                "skip" => Oversize::Skip,
                _ => {
                    return Err(invalid(
                        "kinesis",
                        "oversize",
                        "must be \"fail\" or \"skip\"",
                    ))
                }
            },
        };
        let url = checkpoint.url.trim();
        let location = if url.is_empty() {
            CheckpointLocation::File(PathBuf::from(non_empty(
                "checkpoint",
                "path",
                checkpoint.path,
            )?))
        } else {
            CheckpointLocation::parse(url)?
        };
        let checkpoint = CheckpointConfig {
            location,
            endpoint_url: optional(&checkpoint.endpoint_url),
            region: kinesis.region.clone(),
            interval: positive_ms("checkpoint", "interval_ms", checkpoint.interval_ms)?,
        };
        let shutdown = ShutdownConfig {
            drain_timeout: positive_ms("shutdown", "drain_timeout_ms", shutdown.drain_timeout_ms)?,
        };
        let namespace = metrics.namespace.trim().to_owned();
        if namespace.is_empty() || namespace.len() > 255 || namespace.starts_with(':') {
            return Err(invalid(
                "metrics",
                "namespace",
                "must be 1 to 255 characters and not start with ':'",
            ));
        }
        let metrics = MetricsConfig {
            cloudwatch: metrics.cloudwatch,
            namespace,
            interval: positive_ms("metrics", "interval_ms", metrics.interval_ms)?,
            source: Some(metrics.source.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| mysql.host.clone()),
            per_table: metrics.per_table,
            region: optional(&metrics.region).or_else(|| kinesis.region.clone()),
            endpoint_url: optional(&metrics.endpoint_url),
        };
        let http = HttpConfig {
            listen: optional(&http.listen),
            degraded_after: match http.degraded_after_ms {
                0 => None,
                ms => Some(positive_ms("http", "degraded_after_ms", ms)?),
            },
        };
        let log = LogConfig {
            json: match log.format.trim() {
                "text" => false,
                "json" => true,
                _ => return Err(invalid("log", "format", "must be \"text\" or \"json\"")),
            },
            level: {
                let level = non_empty("log", "level", log.level)?;
                check_log_level(&level)?;
                level
            },
        };
        let sink = match (sink.kind.trim(), optional(&sink.path)) {
            ("kinesis", _) => SinkKind::Kinesis,
            ("stdout", _) => SinkKind::Stdout,
            ("file", Some(path)) => SinkKind::File(PathBuf::from(path)),
            ("file", None) => {
                return Err(invalid(
                    "sink",
                    "path",
                    "must name the file when kind = \"file\"",
                ))
            }
            _ => {
                return Err(invalid(
                    "sink",
                    "kind",
                    "must be \"kinesis\", \"stdout\" or \"file\"",
                ))
            }
        };
        Ok(Config {
            mysql,
            filter,
            kinesis,
            checkpoint,
            shutdown,
            metrics,
            http,
            log,
            sink,
        })
    }
}

/// Sets one `BINLOG_KINESIS__SECTION__KEY` override in the raw table, converting the text to
/// the key's type, which is read off the defaults.
/// Settings whose values never appear in a message, as `(section, key)`. A new secret setting
/// is added here.
pub const SECRET_KEYS: &[(&str, &str)] = &[("mysql", "password")];

/// The daemon's own variables among `vars`, as text. Other variables are skipped unread: a
/// non-UTF-8 value elsewhere in the environment is none of the daemon's business.
pub fn env_overrides(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut ours = Vec::new();
    for (name, value) in vars {
        let name = name.to_string_lossy();
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::Env {
            name: name.clone().into_owned(),
            message: "the value is not valid UTF-8".into(),
        })?;
        ours.push((name.into_owned(), value));
    }
    Ok(ours)
}

/// A TOML error for the file `text`, as `line L, column C: message`, with the offending line
/// quoted unless it sets a secret ([`SECRET_KEYS`]): the parser's own rendering quotes the
/// line whole, password included.
fn redacted_toml_error(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span.filter(|span| span.start <= text.len()) else {
        return message.to_owned();
    };
    let before = &text[..span.start];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..span.start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    // The section the line is in: the last `[header]` above it.
    let section = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
        .unwrap_or_default();
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let (key_section, key_name) = match key.rsplit_once('.') {
        Some((s, k)) => (s.trim().to_owned(), k.trim()),
        None => (section, key),
    };
    let secret = SECRET_KEYS
        .iter()
        .any(|(s, k)| key_section == *s && key_name == *k);
    if secret {
        format!("line {line_no}: the value of [{key_section}] {key_name} is not a valid TOML string (the line is not shown: it holds a secret); quote it, and write a backslash as \\\\ or use single quotes")
    } else {
        format!("line {line_no}, column {column}: {message}\n  | {line}")
    }
}

/// Checks a `log.level`: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a
/// comma-separated list of directives `target=level`. `EnvFilter` itself would take an unknown
/// word such as `warning` as a target name and silence every other line.
fn check_log_level(level: &str) -> Result<(), ConfigError> {
    const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];
    let known = |word: &str| LEVELS.iter().any(|l| word.trim().eq_ignore_ascii_case(l));
    let valid = level.split(',').all(|directive| {
        let directive = directive.trim();
        match directive.rsplit_once('=') {
            Some((target, level)) => !target.trim().is_empty() && known(level),
            None => known(directive),
        }
    }) && tracing_subscriber::EnvFilter::try_new(level).is_ok();
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "log",
            "level",
            "must be error, warn, info, debug, trace, off, or directives like \"info,binlog_kinesis=debug\"",
        ))
    }
}

fn apply_env(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let env_error = |message: String| ConfigError::Env {
        name: name.to_owned(),
        message,
    };
    let path = &name[ENV_PREFIX.len()..];
    let Some((section, key)) = path.split_once("__") else {
        return Err(env_error(
            "expected BINLOG_KINESIS__<SECTION>__<KEY>".into(),
        ));
    };
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    let defaults = toml::Table::try_from(FileConfig::default())
        .expect("the default configuration serializes to TOML");
    let Some(default) = defaults
        .get(&section)
        .and_then(|s| s.as_table())
        .and_then(|s| s.get(&key))
    else {
        return Err(env_error(format!("unknown setting [{section}] {key}")));
    };
    let typed = match default {
        toml::Value::String(_) => toml::Value::String(value.to_owned()),
        toml::Value::Integer(_) => toml::Value::Integer(
            value
                .trim()
                .parse()
                .map_err(|_| env_error(format!("{value:?} is not an integer")))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            value
                .trim()
                .parse()
                .map_err(|_| env_error(format!("{value:?} is not true or false")))?,
        ),
        toml::Value::Array(_) => parse_list(value).map_err(env_error)?,
        other => {
            return Err(env_error(format!(
                "cannot override a {} setting",
                other.type_str()
            )))
        }
    };
    table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| env_error("the file's section is not a table".into()))?
        .insert(key, typed);
    Ok(())
}

/// A TOML array (`["a","b"]`) or a comma-separated list (`a,b`); empty text is the empty list.
fn parse_list(value: &str) -> Result<toml::Value, String> {
    let trimmed = value.trim();
    if trimmed.starts_with('[') {
        let wrapped: toml::Table = format!("v = {trimmed}")
            .parse()
            .map_err(|error| format!("{value:?} is not a TOML array: {error}"))?;
        return Ok(wrapped["v"].clone());
    }
    Ok(toml::Value::Array(
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| toml::Value::String(item.to_owned()))
            .collect(),
    ))
}

/// The AWS SDK settings every client starts from: the region and endpoint when configured,
/// otherwise the default chain (environment, profile, ECS task role), which also honours
/// `AWS_ENDPOINT_URL_<SERVICE>`.
pub async fn aws_sdk_config(
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The one HTTPS client every AWS client (and the credential providers) uses: hyper 1 with
/// rustls on ring, the crypto provider the MySQL driver uses too.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

fn optional(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

fn invalid(section: &'static str, key: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        section,
        key,
        message: message.to_owned(),
    }
}

fn non_empty(
    section: &'static str,
    key: &'static str,
    value: String,
) -> Result<String, ConfigError> {
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(invalid(section, key, "must not be empty"));
    }
    Ok(value)
}

/// Bounds of `mysql.max_event_bytes` (the driver's own limits on its packet size).
const MIN_EVENT_BYTES: usize = 1 << 20;
const MAX_EVENT_BYTES: usize = 1 << 30;

fn positive(section: &'static str, key: &'static str, value: i64) -> Result<usize, ConfigError> {
    usize::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| invalid(section, key, "must be a positive number"))
}

fn positive_ms(
    section: &'static str,
    key: &'static str,
    value: i64,
) -> Result<Duration, ConfigError> {
    positive(section, key, value).map(|ms| Duration::from_millis(ms as u64))
}

fn non_negative_ms(
    section: &'static str,
    key: &'static str,
    value: i64,
) -> Result<Duration, ConfigError> {
    u64::try_from(value)
        .map(Duration::from_millis)
        .map_err(|_| {
            invalid(
                section,
                key,
                "must be zero or a positive number of milliseconds",
            )
        })
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The source server.
    pub mysql: MysqlConfig,
    /// Which tables are captured.
    pub filter: TableFilter,
    /// The destination.
    pub kinesis: KinesisConfig,
    /// Where progress is saved.
    pub checkpoint: CheckpointConfig,
    /// Drain bounds.
    pub shutdown: ShutdownConfig,
    /// CloudWatch publishing.
    pub metrics: MetricsConfig,
    /// The `/metrics` and `/health` listener.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// Where records go.
    pub sink: SinkKind,
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
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
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
pub enum TlsMode {
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

fn tls(mode: &str, ca_file: &str) -> Result<TlsMode, ConfigError> {
    let ca = match ca_file.trim() {
        "" => None,
        path => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(invalid(
                    "mysql",
                    "tls_ca_file",
                    &format!("{} is not a readable file", path.display()),
                ));
            }
            Some(path)
        }
    };
    let mode = match mode.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "disabled" => TlsMode::Disabled,
        "preferred" => TlsMode::Preferred,
        "required" => TlsMode::Required,
        "verify-ca" => TlsMode::VerifyCa(ca.clone()),
        "verify-identity" => TlsMode::VerifyIdentity(ca.clone()),
        _ => {
            return Err(invalid(
                "mysql",
                "tls_mode",
                "must be disabled, preferred, required, verify-ca or verify-identity",
            ))
        }
    };
    if ca.is_some() && !matches!(mode, TlsMode::VerifyCa(_) | TlsMode::VerifyIdentity(_)) {
        return Err(invalid(
            "mysql",
            "tls_ca_file",
            "is only used with tls_mode verify-ca or verify-identity",
        ));
    }
    Ok(mode)
}

/// `[mysql]`, validated.
#[derive(Debug, Clone)]
pub struct MysqlConfig {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Replication user.
    pub user: String,
    /// Password.
    pub password: Secret,
    /// This replica's server id.
    pub server_id: NonZeroU32,
    /// Heartbeat period asked of the server.
    pub heartbeat: Duration,
    /// Bytes of one transaction held back to stamp its events with the XID.
    pub transaction_lookahead_bytes: usize,
    /// Largest binlog event (packet) accepted from the server: what caps the memory the
    /// driver needs for one huge row.
    pub max_event_bytes: usize,
    /// TLS for every connection to the server.
    pub tls: TlsMode,
}

/// `[kinesis]`, validated.
#[derive(Debug, Clone)]
pub struct KinesisConfig {
    /// Stream name.
    pub stream: String,
    /// Region; `None` for the default chain.
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
    /// Largest record, data plus partition key.
    pub max_record_bytes: usize,
    /// How long a partly filled record waits.
    pub linger: Duration,
    /// The longest one PutRecords call (or checkpoint write) may take.
    pub call_timeout: Duration,
    /// Cap on event bytes the producer holds.
    pub max_buffered_bytes: usize,
    /// What happens to an event larger than a record may be.
    pub oversize: Oversize,
    /// Most events in one record (`usize::MAX`: no limit but the size).
    pub max_events_per_record: usize,
    /// How events map to partition keys.
    pub partition_by: PartitionBy,
}

/// `kinesis.partition_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionBy {
    /// `database.table`: every table in binlog order.
    Table,
    /// `database.table/<primary key values>`: every row in binlog order, a table spread over
    /// shards (tables without a primary key fall back to the table).
    PrimaryKey,
}

/// `kinesis.oversize`: an event larger than the record size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
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
    pub endpoint_url: Option<String>,
    /// The AWS region (`[kinesis] region`) for S3.
    pub region: Option<String>,
    /// Write interval.
    pub interval: Duration,
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
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
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
pub struct MetricsConfig {
    /// Publish to CloudWatch.
    pub cloudwatch: bool,
    /// CloudWatch namespace.
    pub namespace: String,
    /// Publishing interval.
    pub interval: Duration,
    /// The `Source` dimension.
    pub source: String,
    /// Per-table series.
    pub per_table: bool,
    /// Region for CloudWatch.
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
}

/// `[http]`, validated.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address; `None` when off.
    pub listen: Option<String>,
    /// How long events may wait without a Kinesis acknowledgement before `/health` says
    /// `degraded`; `None` never.
    pub degraded_after: Option<Duration>,
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

/// Include/exclude patterns over `database.table`, `*` matching any run of characters.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    /// `(database, table)` patterns.
    include: Vec<(String, String)>,
    exclude: Vec<(String, String)>,
}

impl TableFilter {
    /// Validates the patterns: each is `DATABASE.TABLE`, split at the first dot outside
    /// backticks (`` `my.db`.* `` names the database `my.db`), each part non-empty.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, ConfigError> {
        let check = |key: &'static str,
                     patterns: &[String]|
         -> Result<Vec<(String, String)>, ConfigError> {
            patterns
                .iter()
                .map(|pattern| {
                    let pattern = pattern.trim();
                    crate::event::TableName::split(pattern).ok_or_else(|| ConfigError::Invalid {
                        section: "filter",
                        key,
                        message: format!(
                            "pattern {pattern:?} must be DATABASE.TABLE, with * as a wildcard (for example \"shop.*\"); a name with a dot in it goes in backticks (\"`my.db`.*\")"
                        ),
                    })
                })
                .collect()
        };
        Ok(Self {
            include: check("include", include)?,
            exclude: check("exclude", exclude)?,
        })
    }

    /// Whether changes to `database.table` are captured: the database matches a pattern's
    /// first part and the table its second.
    pub fn matches(&self, database: &str, table: &str) -> bool {
        let hit = |(db, t): &(String, String)| glob(db, database) && glob(t, table);
        let included = self.include.is_empty() || self.include.iter().any(hit);
        included && !self.exclude.iter().any(hit)
    }
}

/// Matches `text` against `pattern`, where `*` matches any run of characters (including none).
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // Classic greedy matcher with one backtrack point: linear in practice for these patterns.
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] != '*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_shipped_example_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/binlog-kinesis.toml");
        let config = FileConfig::load(Some(&path), Vec::new())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(config.mysql.port, 3306);
        assert_eq!(config.kinesis.stream, "cdc-events");
        assert_eq!(config.kinesis.max_record_bytes, FIREHOSE_MAX_RECORD_BYTES);
        assert!(config.filter.matches("shop", "orders"));
        assert!(!config.filter.matches("crm", "orders"));
    }

    #[test]
    fn environment_overrides_the_file_with_typed_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[mysql]\nport = 3307\npassword = \"file\"\n").unwrap();
        let config = FileConfig::load(
            Some(&path),
            env(&[
                ("BINLOG_KINESIS__MYSQL__PASSWORD", "12345"),
                ("BINLOG_KINESIS__MYSQL__PORT", "3310"),
                ("BINLOG_KINESIS__FILTER__INCLUDE", "shop.*, crm.users"),
                ("BINLOG_KINESIS__FILTER__EXCLUDE", r#"["shop.tmp_*"]"#),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(config.mysql.password.expose(), "12345");
        assert_eq!(config.mysql.port, 3310);
        assert!(config.filter.matches("crm", "users"));
        assert!(!config.filter.matches("shop", "tmp_1"));
        assert!(config.filter.matches("shop", "orders"));
        assert!(
            !format!("{config:?}").contains("12345"),
            "the password leaked into Debug"
        );
    }

    #[test]
    fn unknown_keys_are_errors_in_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[mysql]\nprot = 3307\n").unwrap();
        let error = FileConfig::load(Some(&path), Vec::new()).unwrap_err();
        assert!(error.to_string().contains("prot"), "{error}");
        let error =
            FileConfig::load(None, env(&[("BINLOG_KINESIS__MYSQL__PROT", "1")])).unwrap_err();
        assert!(
            error.to_string().contains("unknown setting [mysql] prot"),
            "{error}"
        );
        std::fs::write(&path, "[mysqll]\n").unwrap();
        assert!(FileConfig::load(Some(&path), Vec::new()).is_err());
    }

    #[test]
    fn impossible_values_are_rejected_with_the_key() {
        for (name, value, key) in [
            ("BINLOG_KINESIS__MYSQL__SERVER_ID", "0", "server_id"),
            (
                "BINLOG_KINESIS__CHECKPOINT__INTERVAL_MS",
                "-5",
                "interval_ms",
            ),
            ("BINLOG_KINESIS__MYSQL__PORT", "70000", "port"),
            (
                "BINLOG_KINESIS__MYSQL__MAX_EVENT_BYTES",
                "1000",
                "max_event_bytes",
            ),
            (
                "BINLOG_KINESIS__MYSQL__MAX_EVENT_BYTES",
                "2147483648",
                "max_event_bytes",
            ),
            ("BINLOG_KINESIS__KINESIS__STREAM", "bad stream!", "stream"),
            ("BINLOG_KINESIS__FILTER__INCLUDE", "nodot", "include"),
            (
                "BINLOG_KINESIS__KINESIS__MAX_RECORD_BYTES",
                "20000000",
                "max_record_bytes",
            ),
            ("BINLOG_KINESIS__KINESIS__OVERSIZE", "truncate", "oversize"),
            (
                "BINLOG_KINESIS__KINESIS__PARTITION_BY",
                "column",
                "partition_by",
            ),
            (
                "BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD",
                "-1",
                "max_events_per_record",
            ),
            ("BINLOG_KINESIS__CHECKPOINT__URL", "s3://bucket-only", "url"),
            ("BINLOG_KINESIS__CHECKPOINT__URL", "gs://b/k", "url"),
            ("BINLOG_KINESIS__CHECKPOINT__URL", "file://relative", "url"),
            ("BINLOG_KINESIS__METRICS__NAMESPACE", " ", "namespace"),
            ("BINLOG_KINESIS__METRICS__INTERVAL_MS", "0", "interval_ms"),
            ("BINLOG_KINESIS__LOG__FORMAT", "xml", "format"),
            ("BINLOG_KINESIS__SINK__KIND", "s3", "kind"),
            ("BINLOG_KINESIS__SINK__KIND", "file", "path"),
            ("BINLOG_KINESIS__LOG__LEVEL", "loud=[", "level"),
        ] {
            let error = FileConfig::load(None, env(&[(name, value)]))
                .and_then(FileConfig::validate)
                .unwrap_err();
            assert!(error.to_string().contains(key), "{name}={value}: {error}");
        }
        let error =
            FileConfig::load(None, env(&[("BINLOG_KINESIS__MYSQL__PORT", "abc")])).unwrap_err();
        assert!(error.to_string().contains("not an integer"), "{error}");
    }

    #[test]
    fn checkpoint_locations_and_outlets_are_read_from_their_keys() {
        let config = FileConfig::load(
            None,
            env(&[
                (
                    "BINLOG_KINESIS__CHECKPOINT__URL",
                    "s3://cdc-state/prod/orders.json",
                ),
                ("BINLOG_KINESIS__KINESIS__REGION", "eu-west-1"),
                ("BINLOG_KINESIS__MYSQL__HOST", "db.internal"),
                ("BINLOG_KINESIS__HTTP__LISTEN", ""),
                ("BINLOG_KINESIS__METRICS__PER_TABLE", "true"),
            ]),
        )
        .and_then(FileConfig::validate)
        .unwrap();
        assert_eq!(
            config.checkpoint.location,
            CheckpointLocation::S3 {
                bucket: "cdc-state".into(),
                key: "prod/orders.json".into()
            }
        );
        assert_eq!(config.checkpoint.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.metrics.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.metrics.source, "db.internal");
        assert!(config.metrics.per_table && config.metrics.cloudwatch);
        assert_eq!(config.http.listen, None);
        let defaults = FileConfig::default().validate().unwrap();
        assert_eq!(
            defaults.checkpoint.location,
            CheckpointLocation::File("/var/lib/binlog-kinesis/checkpoint.json".into())
        );
        assert_eq!(defaults.http.listen.as_deref(), Some("127.0.0.1:9187"));
        assert_eq!(defaults.kinesis.oversize, Oversize::Fail);
        assert_eq!(
            CheckpointLocation::parse("file:///data/c.json").unwrap(),
            CheckpointLocation::File("/data/c.json".into())
        );
    }

    /// Regression (issue 11, item 12): `my.db.*` matched both `my.db`.`t` and `my`.`db.t`.
    /// Patterns split at the first dot outside backticks; the database part and the table
    /// part are matched apart.
    #[test]
    fn a_dot_in_a_name_is_quoted_in_filters() {
        let filter = |pattern: &str| TableFilter::new(&[pattern.to_owned()], &[]).unwrap();
        let quoted = filter("`my.db`.*");
        assert!(quoted.matches("my.db", "t") && !quoted.matches("my", "db.t"));
        let plain = filter("my.db.*");
        assert!(plain.matches("my", "db.t") && !plain.matches("my.db", "t"));
        let all = filter("*.*");
        assert!(all.matches("my.db", "t") && all.matches("my", "db.t"));
        assert!(filter("shop.*").matches("shop", "orders"));
        assert!(TableFilter::new(&["`my.db*".to_owned()], &[]).is_err());
    }

    #[test]
    fn globs_match_like_shell_patterns() {
        assert!(glob("shop.*", "shop.orders"));
        assert!(glob("*.*", "a.b"));
        assert!(glob("shop.ord*s", "shop.orders"));
        assert!(!glob("shop.ord*s", "shop.order"));
        assert!(!glob("shop.*", "shopping.orders"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYbc"));
    }
}
