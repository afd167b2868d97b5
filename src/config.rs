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
    /// Cap on event bytes held by the producer (queued or in flight).
    pub max_buffered_bytes: i64,
}

impl Default for RawKinesis {
    fn default() -> Self {
        Self {
            stream: "cdc-events".into(),
            region: String::new(),
            endpoint_url: String::new(),
            max_record_bytes: FIREHOSE_MAX_RECORD_BYTES as i64,
            linger_ms: 50,
            max_buffered_bytes: 64 << 20,
        }
    }
}

/// `[checkpoint]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCheckpoint {
    /// Checkpoint file.
    pub path: String,
    /// How often the committed position is written.
    pub interval_ms: i64,
}

impl Default for RawCheckpoint {
    fn default() -> Self {
        Self {
            path: "/var/lib/binlog-kinesis/checkpoint.json".into(),
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

impl FileConfig {
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
                let table: toml::Table =
                    text.parse()
                        .map_err(|error: toml::de::Error| ConfigError::Parse {
                            path: path.to_owned(),
                            message: error.to_string(),
                        })?;
                // Type-check the file on its own first, so its errors name the file.
                Self::deserialize(toml::Value::Table(table.clone())).map_err(|error| {
                    ConfigError::Parse {
                        path: path.to_owned(),
                        message: error.to_string(),
                    }
                })?;
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
            max_buffered_bytes,
        };
        let checkpoint = CheckpointConfig {
            path: PathBuf::from(non_empty("checkpoint", "path", checkpoint.path)?),
            interval: positive_ms("checkpoint", "interval_ms", checkpoint.interval_ms)?,
        };
        let shutdown = ShutdownConfig {
            drain_timeout: positive_ms("shutdown", "drain_timeout_ms", shutdown.drain_timeout_ms)?,
        };
        Ok(Config {
            mysql,
            filter,
            kinesis,
            checkpoint,
            shutdown,
        })
    }
}

/// Sets one `BINLOG_KINESIS__SECTION__KEY` override in the raw table, converting the text to
/// the key's type, which is read off the defaults.
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
    /// Cap on event bytes the producer holds.
    pub max_buffered_bytes: usize,
}

/// `[checkpoint]`, validated.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// The checkpoint file.
    pub path: PathBuf,
    /// Write interval.
    pub interval: Duration,
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
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TableFilter {
    /// Validates the patterns: each is `db.table`, each part non-empty.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, ConfigError> {
        let check = |key: &'static str, patterns: &[String]| -> Result<Vec<String>, ConfigError> {
            patterns
                .iter()
                .map(|pattern| {
                    let pattern = pattern.trim();
                    match pattern.split_once('.') {
                        Some((db, table)) if !db.is_empty() && !table.is_empty() => {
                            Ok(pattern.to_owned())
                        }
                        _ => Err(ConfigError::Invalid {
                            section: "filter",
                            key,
                            message: format!(
                                "pattern {pattern:?} must be DATABASE.TABLE, with * as a wildcard (for example \"shop.*\")"
                            ),
                        }),
                    }
                })
                .collect()
        };
        Ok(Self {
            include: check("include", include)?,
            exclude: check("exclude", exclude)?,
        })
    }

    /// Whether changes to `database.table` are captured.
    pub fn matches(&self, database: &str, table: &str) -> bool {
        let name = format!("{database}.{table}");
        let included = self.include.is_empty() || self.include.iter().any(|p| glob(p, &name));
        included && !self.exclude.iter().any(|p| glob(p, &name))
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
            ("BINLOG_KINESIS__KINESIS__STREAM", "bad stream!", "stream"),
            ("BINLOG_KINESIS__FILTER__INCLUDE", "nodot", "include"),
            (
                "BINLOG_KINESIS__KINESIS__MAX_RECORD_BYTES",
                "20000000",
                "max_record_bytes",
            ),
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
