//! The configuration's layers, validation and filters.

use std::path::Path;

use super::{filter::glob, *};

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
            ("BINLOG_KINESIS__MYSQL__ENCODE_THREADS", "2"),
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
    assert_eq!(config.mysql.encode_threads, Some(2));
    let defaults = FileConfig::default().validate().unwrap();
    assert_eq!(
        defaults.mysql.encode_threads, None,
        "-1: as many as the CPUs allow"
    );
    assert!(config.filter.matches("crm", "users"));
    assert!(!config.filter.matches("shop", "tmp_1"));
    assert!(config.filter.matches("shop", "orders"));
    assert!(
        !format!("{config:?}").contains("12345"),
        "the password leaked into Debug"
    );
    // The raw configuration too, hash key included.
    let raw = FileConfig::load(
        Some(&path),
        env(&[("BINLOG_KINESIS__COLUMNS__HASH_KEY", "a-hash-key-0123456789")]),
    )
    .unwrap();
    let printed = format!("{raw:?}");
    assert!(
        !printed.contains("\"file\"") && !printed.contains("a-hash-key"),
        "{printed}"
    );
}

#[test]
fn unknown_keys_are_errors_in_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[mysql]\nprot = 3307\n").unwrap();
    let error = FileConfig::load(Some(&path), Vec::new()).unwrap_err();
    assert!(error.to_string().contains("prot"), "{error}");
    let error = FileConfig::load(None, env(&[("BINLOG_KINESIS__MYSQL__PROT", "1")])).unwrap_err();
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
            "BINLOG_KINESIS__MYSQL__ENCODE_THREADS",
            "9",
            "encode_threads",
        ),
        (
            "BINLOG_KINESIS__MYSQL__ENCODE_THREADS",
            "-2",
            "encode_threads",
        ),
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
        (
            "BINLOG_KINESIS__SNAPSHOT__PARALLEL_TABLES",
            "0",
            "parallel_tables",
        ),
        (
            "BINLOG_KINESIS__SNAPSHOT__PARALLEL_TABLES",
            "17",
            "parallel_tables",
        ),
    ] {
        let error = FileConfig::load(None, env(&[(name, value)]))
            .and_then(FileConfig::validate)
            .unwrap_err();
        assert!(error.to_string().contains(key), "{name}={value}: {error}");
    }
    let error = FileConfig::load(None, env(&[("BINLOG_KINESIS__MYSQL__PORT", "abc")])).unwrap_err();
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

#[test]
fn records_default_to_what_firehose_deaggregates_and_more_warns_once() {
    let load = |pairs: &[(&str, &str)]| {
        FileConfig::load(None, env(pairs))
            .unwrap()
            .validate()
            .unwrap()
    };
    let default = load(&[]);
    assert_eq!(default.kinesis.max_events_per_record, 500);
    assert!(default.warnings().is_empty(), "{:?}", default.warnings());
    assert!(
        load(&[("BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD", "1")])
            .warnings()
            .is_empty()
    );
    for (value, shown) in [("501", "is 501"), ("0", "is 0 (no limit)")] {
        let warnings =
            load(&[("BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD", value)]).warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(shown), "{}", warnings[0]);
        assert!(warnings[0].contains("Firehose"), "{}", warnings[0]);
        assert!(warnings[0].contains("(500)"), "{}", warnings[0]);
    }
    // Without Kinesis no Firehose reads the lines.
    let stdout = load(&[
        ("BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD", "0"),
        ("BINLOG_KINESIS__SINK__KIND", "stdout"),
    ]);
    assert!(stdout.warnings().is_empty());
}
