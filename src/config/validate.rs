//! Validation: the raw configuration into the types the daemon runs with, one function per
//! section, each value checked with a message that says what is allowed.

use std::{num::NonZeroU32, path::PathBuf};

use super::{environment::check_log_level, *};

impl FileConfig {
    /// Checks every value and returns the configuration the daemon runs with.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mysql = mysql(self.mysql)?;
        let kinesis = kinesis(self.kinesis)?;
        Ok(Config {
            snapshot: snapshot(self.snapshot, &self.filter)?,
            filter: TableFilter::new(&self.filter.include, &self.filter.exclude)?,
            columns: ColumnRules::new(&self.columns)?,
            changes: ChangeRules::new(&self.changes)?,
            ddl_events: self.output.ddl,
            checkpoint: checkpoint(self.checkpoint, kinesis.region.clone())?,
            shutdown: ShutdownConfig {
                drain_timeout: positive_ms(
                    "shutdown",
                    "drain_timeout_ms",
                    self.shutdown.drain_timeout_ms,
                )?,
            },
            metrics: metrics(self.metrics, &mysql.host, kinesis.region.clone())?,
            http: HttpConfig {
                listen: optional(&self.http.listen),
                degraded_after: match self.http.degraded_after_ms {
                    0 => None,
                    ms => Some(positive_ms("http", "degraded_after_ms", ms)?),
                },
            },
            log: log_config(self.log)?,
            sink: sink(self.sink)?,
            mysql,
            kinesis,
        })
    }
}

fn mysql(mysql: RawMysql) -> Result<MysqlConfig, ConfigError> {
    Ok(MysqlConfig {
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
        encode_threads: match mysql.encode_threads {
            -1 => None,
            n @ 0..=8 => Some(n as usize),
            _ => {
                return Err(invalid(
                    "mysql",
                    "encode_threads",
                    "must be -1 (one fewer than the CPUs, at most 3) or 0 to 8",
                ))
            }
        },
        tls: tls(&mysql.tls_mode, &mysql.tls_ca_file)?,
        host: non_empty("mysql", "host", mysql.host)?,
        user: non_empty("mysql", "user", mysql.user)?,
        password: Secret(mysql.password.0),
    })
}

fn kinesis(kinesis: RawKinesis) -> Result<KinesisConfig, ConfigError> {
    let max_record_bytes = positive("kinesis", "max_record_bytes", kinesis.max_record_bytes)?;
    if !(1024..=10 << 20).contains(&max_record_bytes) {
        return Err(invalid(
            "kinesis",
            "max_record_bytes",
            "must be between 1024 and 10485760 (Kinesis's largest record)",
        ));
    }
    let max_buffered_bytes = positive("kinesis", "max_buffered_bytes", kinesis.max_buffered_bytes)?;
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
    Ok(KinesisConfig {
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
        partition_by: kinesis.partition_by,
        oversize: kinesis.oversize,
    })
}

fn checkpoint(
    checkpoint: RawCheckpoint,
    region: Option<String>,
) -> Result<CheckpointConfig, ConfigError> {
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
    Ok(CheckpointConfig {
        location,
        endpoint_url: optional(&checkpoint.endpoint_url),
        region,
        interval: positive_ms("checkpoint", "interval_ms", checkpoint.interval_ms)?,
    })
}

fn metrics(
    metrics: RawMetrics,
    host: &str,
    region: Option<String>,
) -> Result<MetricsConfig, ConfigError> {
    let namespace = metrics.namespace.trim().to_owned();
    if namespace.is_empty() || namespace.len() > 255 || namespace.starts_with(':') {
        return Err(invalid(
            "metrics",
            "namespace",
            "must be 1 to 255 characters and not start with ':'",
        ));
    }
    Ok(MetricsConfig {
        cloudwatch: metrics.cloudwatch,
        namespace,
        interval: positive_ms("metrics", "interval_ms", metrics.interval_ms)?,
        source: Some(metrics.source.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| host.to_owned()),
        per_table: metrics.per_table,
        region: optional(&metrics.region).or(region),
        endpoint_url: optional(&metrics.endpoint_url),
    })
}

fn log_config(log: RawLog) -> Result<LogConfig, ConfigError> {
    Ok(LogConfig {
        json: log.format == LogFormat::Json,
        level: {
            let level = non_empty("log", "level", log.level)?;
            check_log_level(&level)?;
            level
        },
    })
}

fn snapshot(snapshot: RawSnapshot, filter: &RawFilter) -> Result<SnapshotConfig, ConfigError> {
    if snapshot.method == SnapshotMethod::Watermark && optional(&snapshot.signal_table).is_none() {
        return Err(invalid(
            "snapshot",
            "method",
            "\"watermark\" writes its watermarks into snapshot.signal_table: set it (for example cdc.signals)",
        ));
    }
    Ok(SnapshotConfig {
        method: snapshot.method,
        mode: snapshot.mode,
        chunk_rows: positive("snapshot", "chunk_rows", snapshot.chunk_rows)?,
        chunk_bytes: positive("snapshot", "chunk_bytes", snapshot.chunk_bytes)?,
        parallel_tables: positive("snapshot", "parallel_tables", snapshot.parallel_tables)
            .ok()
            .filter(|n| *n <= super::MAX_PARALLEL_TABLES)
            .ok_or_else(|| {
                invalid(
                    "snapshot",
                    "parallel_tables",
                    "must be between 1 and 16 (each table read at once holds a connection)",
                )
            })?,
        again: Vec::new(),
        filter_patterns: (filter.include.clone(), filter.exclude.clone()),
        signal_table: match optional(&snapshot.signal_table) {
            None => None,
            Some(text) => {
                let (database, table) = crate::event::TableName::split(&text).ok_or_else(|| {
                    invalid(
                        "snapshot",
                        "signal_table",
                        "must be database.table (for example cdc.signals)",
                    )
                })?;
                Some(crate::event::TableName::new(&database, &table))
            }
        },
    })
}

fn sink(sink: RawSink) -> Result<SinkKind, ConfigError> {
    Ok(match (sink.kind, optional(&sink.path)) {
        (SinkName::Kinesis, _) => SinkKind::Kinesis,
        (SinkName::Stdout, _) => SinkKind::Stdout,
        (SinkName::File, Some(path)) => SinkKind::File(PathBuf::from(path)),
        (SinkName::File, None) => {
            return Err(invalid(
                "sink",
                "path",
                "must name the file when kind = \"file\"",
            ))
        }
    })
}

pub(super) fn optional(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(super) fn invalid(section: &'static str, key: &'static str, message: &str) -> ConfigError {
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
