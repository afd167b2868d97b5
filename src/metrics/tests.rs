//! The gauges' arithmetic and the Prometheus rendering, at fixed moments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn gauge(snapshot: &Snapshot, metric: Metric) -> Option<f64> {
    snapshot
        .gauges
        .iter()
        .find(|(m, _)| *m == metric)
        .map(|(_, v)| *v)
}

fn position(offset: u64) -> BinlogPosition {
    BinlogPosition::new("bin.000001", offset).unwrap()
}

#[test]
fn names_are_unique_and_follow_the_naming_rule() {
    let mut names = std::collections::HashSet::new();
    for metric in CATALOG {
        assert!(names.insert(metric.name), "{} twice", metric.name);
        assert!(metric.name.chars().next().unwrap().is_ascii_uppercase());
        assert!(metric.prometheus.starts_with("binlog_kinesis_"));
        assert_eq!(
            metric.kind == Kind::Counter,
            metric.prometheus.ends_with("_total"),
            "{}",
            metric.prometheus
        );
    }
}

#[test]
fn lag_is_the_age_of_the_last_event_read_and_zero_after_a_heartbeat() {
    let metrics = Metrics::default();
    metrics.set_state(State::Replicating);
    assert_eq!(gauge(&metrics.snapshot(at(1_000)), REPLICATION_LAG), None);
    metrics.event_read(900);
    assert_eq!(
        gauge(&metrics.snapshot(at(1_000)), REPLICATION_LAG),
        Some(100.0)
    );
    // A timestamp-less event (a rotate at connection start) changes nothing.
    metrics.event_read(0);
    assert_eq!(
        gauge(&metrics.snapshot(at(1_000)), REPLICATION_LAG),
        Some(100.0)
    );
    metrics.heartbeat();
    let lag = gauge(&metrics.snapshot(SystemTime::now()), REPLICATION_LAG).unwrap();
    assert!(lag < 1.0, "{lag}");
}

#[test]
fn a_standby_reports_no_lag_and_is_not_replicating() {
    let metrics = Metrics::default();
    metrics.event_read(900);
    metrics.set_state(State::Standby);
    let snapshot = metrics.snapshot(at(1_000));
    assert_eq!(gauge(&snapshot, REPLICATION_LAG), None);
    assert_eq!(gauge(&snapshot, SECONDS_SINCE_CHECKPOINT), None);
    assert_eq!(gauge(&snapshot, REPLICATING), Some(0.0));
    assert!(State::Standby.is_healthy());
    assert!(!State::Starting.is_healthy());
    assert!(!State::Stopped.is_healthy());
}

#[test]
fn checkpoint_wait_is_zero_when_everything_read_is_checkpointed() {
    let metrics = Metrics::default();
    metrics.set_state(State::Replicating);
    let now = SystemTime::now();
    assert_eq!(
        gauge(&metrics.snapshot(now), SECONDS_SINCE_CHECKPOINT),
        Some(0.0)
    );
    metrics.boundary_read(&position(100));
    let later = now + Duration::from_secs(30);
    let waited = gauge(&metrics.snapshot(later), SECONDS_SINCE_CHECKPOINT).unwrap();
    assert!((29.0..=31.0).contains(&waited), "{waited}");
    // Written, but the source has read further: the wait restarts from the write.
    metrics.boundary_read(&position(200));
    metrics.checkpoint_written(&position(100), 0);
    let waited = gauge(&metrics.snapshot(later), SECONDS_SINCE_CHECKPOINT).unwrap();
    assert!(waited <= 31.0, "{waited}");
    metrics.checkpoint_written(&position(200), 0);
    assert_eq!(
        gauge(&metrics.snapshot(later), SECONDS_SINCE_CHECKPOINT),
        Some(0.0)
    );
    assert_eq!(metrics.checkpoints_written.get(), 2);
}

#[test]
fn retention_headroom_counts_from_the_checkpointed_event() {
    let metrics = Metrics::default();
    metrics.set_state(State::Replicating);
    // A server that never expires binlogs: nothing to warn about.
    assert_eq!(
        gauge(
            &metrics.snapshot(SystemTime::now()),
            BINLOG_RETENTION_HEADROOM
        ),
        None
    );
    metrics.set_retention(Some(Duration::from_secs(3_600)));
    // Caught up: the checkpoint is at the live end of the log.
    assert_eq!(
        gauge(
            &metrics.snapshot(SystemTime::now()),
            BINLOG_RETENTION_HEADROOM
        ),
        Some(3_600.0)
    );
    let now = SystemTime::now();
    let now_s = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as u32;
    metrics.boundary_read(&position(100));
    metrics.boundary_read(&position(200));
    metrics.checkpoint_written(&position(100), now_s - 600);
    let headroom = gauge(&metrics.snapshot(now), BINLOG_RETENTION_HEADROOM).unwrap();
    assert!((2_999.0..=3_001.0).contains(&headroom), "{headroom}");
    // RDS with NULL retention hours keeps nothing: the headroom is already gone.
    metrics.set_retention(Some(Duration::ZERO));
    assert!(gauge(&metrics.snapshot(now), BINLOG_RETENTION_HEADROOM).unwrap() < 0.0);
}

#[test]
fn latency_window_is_taken_and_restored() {
    let metrics = Metrics::default();
    metrics.put_call(Duration::from_millis(10));
    metrics.put_call(Duration::from_millis(30));
    let taken = metrics.take_latency_window();
    assert_eq!((taken.count, taken.min, taken.max), (2, 10.0, 30.0));
    assert_eq!(metrics.take_latency_window().count, 0);
    metrics.put_call(Duration::from_millis(5));
    metrics.restore_latency_window(taken);
    let window = metrics.take_latency_window();
    assert_eq!(
        (window.count, window.sum, window.min, window.max),
        (3, 45.0, 5.0, 30.0)
    );
    // The cumulative series for Prometheus is not affected.
    assert_eq!(metrics.snapshot(SystemTime::now()).put_latency.count, 3);
}

#[test]
fn prometheus_text_has_help_type_and_labels() {
    let metrics = Metrics::new(true);
    metrics.set_state(State::Replicating);
    metrics.events_put.add(7);
    metrics.put_call(Duration::from_millis(250));
    metrics.table_events_put(&TableName::new("shop", "orders"), 7);
    let text = metrics
        .snapshot(SystemTime::now())
        .prometheus(&[("stream", "cdc"), ("source", "db\"1")]);
    assert!(text.contains("# TYPE binlog_kinesis_events_put_total counter\n"));
    assert!(text.contains("binlog_kinesis_events_put_total{stream=\"cdc\",source=\"db\\\"1\"} 7\n"));
    assert!(text.contains("binlog_kinesis_replicating{stream=\"cdc\",source=\"db\\\"1\"} 1\n"));
    assert!(text.contains(
        "binlog_kinesis_put_latency_seconds_sum{stream=\"cdc\",source=\"db\\\"1\"} 0.25\n"
    ));
    assert!(text.contains(
        "binlog_kinesis_table_events_put_total{stream=\"cdc\",source=\"db\\\"1\",table=\"shop.orders\"} 7\n"
    ));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}
