//! Operations: CloudWatch metrics read back from the emulator, the Prometheus and health
//! endpoints, publishing failures that must not matter, and the checkpoint in S3.

use crate::harness::{eventually, free_port, http_get, ids, prometheus_value, World};
use binlog_kinesis::app::StartFrom;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_cloudwatch_and_prometheus_with_their_values() {
    let world = World::new().await;
    world.create_shop_t().await;
    // A retention the headroom metric can count down from.
    world
        .db
        .admin(&["SET GLOBAL binlog_expire_logs_seconds = 86400"])
        .await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = world
        .running_daemon(&[
            ("BINLOG_KINESIS__METRICS__INTERVAL_MS", "300"),
            ("BINLOG_KINESIS__METRICS__PER_TABLE", "true"),
            ("BINLOG_KINESIS__HTTP__LISTEN", &listen),
        ])
        .await;
    world.insert_t(0..30, 10).await;
    assert_eq!(
        ids(&world.shop_events(30).await),
        (0..30).collect::<Vec<_>>()
    );

    // Prometheus, while running.
    let text = eventually(std::time::Duration::from_secs(30), async || {
        let (status, text) = http_get(port, "/metrics").await?;
        assert_eq!(status, 200);
        (prometheus_value(&text, "binlog_kinesis_events_put_total") == Some(30.0)).then_some(text)
    })
    .await;
    assert_eq!(
        prometheus_value(&text, "binlog_kinesis_row_events_read_total"),
        Some(30.0)
    );
    assert_eq!(
        prometheus_value(&text, "binlog_kinesis_replicating"),
        Some(1.0)
    );
    assert_eq!(
        prometheus_value(&text, "binlog_kinesis_reconnects_total"),
        Some(0.0)
    );
    assert!(prometheus_value(&text, "binlog_kinesis_put_bytes_total").unwrap() > 0.0);
    assert!(prometheus_value(&text, "binlog_kinesis_checkpoints_written_total").unwrap() >= 1.0);
    assert!(prometheus_value(&text, "binlog_kinesis_replication_lag_seconds").unwrap() >= 0.0);
    let headroom =
        prometheus_value(&text, "binlog_kinesis_binlog_retention_headroom_seconds").unwrap();
    assert!(headroom > 0.0 && headroom <= 86400.0, "{headroom}");
    assert!(
        text.contains("binlog_kinesis_table_events_put_total{stream=\"cdc-test\",source=\"127.0.0.1\",table=\"shop.t\"} 30\n"),
        "{text}"
    );
    let (status, health) = http_get(port, "/health").await.unwrap();
    assert_eq!(
        (status, health.trim()),
        (200, r#"{"status":"replicating","healthy":true}"#)
    );

    // CloudWatch: one interval's publish while replicating, then the final flush at shutdown.
    eventually(std::time::Duration::from_secs(30), async || {
        let replicating = world
            .kinesis
            .metric(&world.stream, "Replicating", "Maximum")
            .await;
        replicating.contains(&1.0).then_some(())
    })
    .await;
    daemon.stop().await.unwrap();
    assert_eq!(
        http_get(port, "/health").await,
        None,
        "the listener stops with the daemon"
    );
    let sum = async |metric: &str| -> f64 {
        world
            .kinesis
            .metric(&world.stream, metric, "Sum")
            .await
            .iter()
            .sum()
    };
    assert_eq!(sum("EventsPut").await, 30.0);
    assert_eq!(sum("RowEventsRead").await, 30.0);
    let records = sum("RecordsPut").await;
    assert!((1.0..=30.0).contains(&records), "{records}");
    assert!(sum("BytesPut").await > 0.0);
    assert_eq!(sum("Reconnects").await, 0.0);
    assert_eq!(sum("ThrottledRecords").await, 0.0);
    assert_eq!(sum("FailedRecords").await, 0.0);
    assert_eq!(sum("MetricsPublishFailures").await, 0.0);
    assert!(sum("CheckpointsWritten").await >= 1.0);
    assert!(sum("PutLatency").await > 0.0);
    assert!(!world
        .kinesis
        .metric(&world.stream, "PutLatency", "SampleCount")
        .await
        .is_empty());
    let replicating = world
        .kinesis
        .metric(&world.stream, "Replicating", "Maximum")
        .await;
    assert_eq!(
        replicating.iter().cloned().fold(0.0, f64::max),
        1.0,
        "{replicating:?}"
    );
    assert!(!world
        .kinesis
        .metric(&world.stream, "ReplicationLag", "Maximum")
        .await
        .is_empty());
    assert!(!world
        .kinesis
        .metric(&world.stream, "SecondsSinceCheckpoint", "Maximum")
        .await
        .is_empty());
    let headroom = world
        .kinesis
        .metric(&world.stream, "BinlogRetentionHeadroom", "Minimum")
        .await;
    assert!(
        !headroom.is_empty() && headroom.iter().all(|h| *h > 0.0 && *h <= 86400.0),
        "{headroom:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_failures_are_counted_and_never_stop_replication() {
    let world = World::new().await;
    world.create_shop_t().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Nothing listens there: every PutMetricData fails.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let daemon = world
        .running_daemon(&[
            ("BINLOG_KINESIS__METRICS__INTERVAL_MS", "200"),
            ("BINLOG_KINESIS__METRICS__ENDPOINT_URL", &nowhere),
            ("BINLOG_KINESIS__HTTP__LISTEN", &listen),
        ])
        .await;
    world.insert_t(0..10, 1).await;
    eventually(std::time::Duration::from_secs(60), async || {
        let (_, text) = http_get(port, "/metrics").await?;
        (prometheus_value(&text, "binlog_kinesis_metrics_publish_failures_total")? >= 2.0)
            .then_some(())
    })
    .await;
    world.insert_t(10..20, 1).await;
    assert_eq!(
        ids(&world.shop_events(20).await),
        (0..20).collect::<Vec<_>>()
    );
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_in_s3_survives_the_task_and_resumes_exactly() {
    let world = World::new().await;
    world.create_shop_t().await;
    let s3 = world.kinesis.s3().await;
    s3.create_bucket().bucket("cdc-state").send().await.unwrap();
    let s3_env = [
        (
            "BINLOG_KINESIS__CHECKPOINT__URL",
            "s3://cdc-state/prod/orders.json",
        ),
        (
            "BINLOG_KINESIS__CHECKPOINT__ENDPOINT_URL",
            world.kinesis.url.as_str(),
        ),
    ];
    let start = world.db.position().await.parse().unwrap();
    // An hour between publishes: whatever reaches CloudWatch comes from the flush at shutdown.
    let mut first_run = s3_env.to_vec();
    first_run.push(("BINLOG_KINESIS__METRICS__INTERVAL_MS", "3600000"));
    let daemon = world
        .daemon(world.config(&first_run), StartFrom::Position(start))
        .await;
    world.insert_t(0..10, 2).await;
    world.shop_events(10).await;
    let outcome = daemon.stop().await.unwrap();
    let committed = outcome.committed.expect("a checkpoint was written");
    assert!(
        !world.checkpoint_path().exists(),
        "the file store was not used"
    );
    let flushed: f64 = world
        .kinesis
        .metric(&world.stream, "EventsPut", "Sum")
        .await
        .iter()
        .sum();
    assert_eq!(flushed, 10.0, "the final flush at shutdown");

    let object = s3
        .get_object()
        .bucket("cdc-state")
        .key("prod/orders.json")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let stored: serde_json::Value = serde_json::from_slice(&object).unwrap();
    assert_eq!(stored["version"], 2);
    assert_eq!(stored["position"], committed.position.to_string());

    // A new task: nothing local, everything from S3.
    world.insert_t(10..20, 2).await;
    let daemon = world
        .daemon(world.config(&s3_env), StartFrom::Checkpoint)
        .await;
    world.insert_t(20..30, 2).await;
    assert_eq!(
        ids(&world.shop_events(30).await),
        (0..30).collect::<Vec<_>>(),
        "a change lost or repeated across the restart from S3"
    );
    daemon.stop().await.unwrap();

    // A corrupt object is an error that names it, not a silent restart from the end.
    s3.put_object()
        .bucket("cdc-state")
        .key("prod/orders.json")
        .body(b"{\"version\":7}".to_vec().into())
        .send()
        .await
        .unwrap();
    let error = world
        .daemon(world.config(&s3_env), StartFrom::Checkpoint)
        .await
        .task
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.exit_code(), 9, "{error}");
    let message = binlog_kinesis::report::error_chain(&error);
    assert!(
        message.contains("s3://cdc-state/prod/orders.json")
            && message.contains("unknown version 7"),
        "{message}"
    );
}

/// Regression (issue 11, item 4): the S3 checkpoint is written conditionally (If-Match on the
/// ETag last read or written, If-None-Match when there was none): an instance whose object
/// another instance wrote since is refused, and the refusal is exit code 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_checkpoint_another_instance_wrote_is_not_overwritten() {
    use binlog_kinesis::checkpoint::{s3::S3Store, Checkpoint, CheckpointError, CheckpointStore};
    let world = World::new().await;
    world
        .kinesis
        .s3()
        .await
        .create_bucket()
        .bucket("cdc-state")
        .send()
        .await
        .unwrap();
    let store = || {
        S3Store::new(
            "cdc-state",
            "prod/orders.json",
            Some("us-east-1"),
            Some(&world.kinesis.url),
        )
    };
    let (old, new) = (store().await, store().await);
    let at = |offset: u64| {
        Checkpoint::new(binlog_kinesis::position::ResumePoint::at(
            binlog_kinesis::position::BinlogPosition::new("b.000001", offset).unwrap(),
        ))
    };
    assert_eq!(old.load().await.unwrap(), None);
    assert_eq!(new.load().await.unwrap(), None);
    // `check`'s probe: allowed to write, and it writes nothing.
    old.probe().await.unwrap();
    assert_eq!(new.load().await.unwrap(), None);
    old.store(&at(100)).await.unwrap();
    old.probe().await.unwrap();
    old.store(&at(150)).await.unwrap();
    let refused = new.store(&at(50)).await.unwrap_err();
    assert!(
        matches!(refused, CheckpointError::Conflict { .. }),
        "{refused}"
    );
    assert_eq!(binlog_kinesis::app::Error::from(refused).exit_code(), 10);
    // The new instance reads it and owns it from then on.
    assert_eq!(new.load().await.unwrap().unwrap().position.offset(), 150);
    new.store(&at(200)).await.unwrap();
    assert!(matches!(
        old.store(&at(300)).await,
        Err(CheckpointError::Conflict { .. })
    ));
    new.store(&at(400)).await.unwrap();
    assert_eq!(new.load().await.unwrap().unwrap().position.offset(), 400);
}
