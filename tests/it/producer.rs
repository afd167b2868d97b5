//! Producer behaviour against the real pipeline: partitioning by primary key, the stream's own
//! maximum record size with oversize events failing or skipped, and the file sink.

use std::sync::Arc;

use binlog_kinesis::{
    app::StartFrom,
    event::Op,
    shutdown::Shutdown,
    sink::{
        client::{AwsKinesisClient, CallError, KinesisClient, Record, RecordOutcome, StreamInfo},
        local::LocalClient,
    },
};

use crate::harness::{ids, World};

/// The emulator, reporting a smaller maximum record size than the configuration asks for, as
/// a stream created with a non-default maximum would.
struct SmallRecords {
    inner: AwsKinesisClient,
    max_record_bytes: usize,
}

#[async_trait::async_trait]
impl KinesisClient for SmallRecords {
    async fn put_records(
        &self,
        stream: &str,
        records: Vec<Record>,
    ) -> Result<Vec<RecordOutcome>, CallError> {
        assert!(
            records
                .iter()
                .all(|r| r.data.len() + r.partition_key.len() <= self.max_record_bytes),
            "a record larger than the stream allows was sent"
        );
        self.inner.put_records(stream, records).await
    }

    async fn check_stream(&self, stream: &str) -> Result<StreamInfo, CallError> {
        self.inner.check_stream(stream).await?;
        Ok(StreamInfo {
            max_record_bytes: Some(self.max_record_bytes),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_by_primary_key_keeps_each_row_in_order_under_its_own_key() {
    let world = World::new().await;
    world.create_shop_t().await;
    world
        .db
        .admin(&["ALTER TABLE shop.t ADD COLUMN n INT NOT NULL DEFAULT 0"])
        .await;
    let daemon = world
        .running_daemon(&[("BINLOG_KINESIS__KINESIS__PARTITION_BY", "primary_key")])
        .await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.t (id) VALUES (1), (2), (3)",
            "UPDATE shop.t SET n = n + 1",
            "UPDATE shop.t SET n = n + 1 WHERE id = 2",
            "DELETE FROM shop.t WHERE id = 3",
        ])
        .await;
    world.shop_events(8).await;
    daemon.stop().await.unwrap();

    let mut by_key: std::collections::BTreeMap<String, Vec<(Op, i64)>> = Default::default();
    for (key, events) in world.kinesis.records(&world.stream).await {
        for event in events.into_iter().filter(|e| e.database == "shop") {
            let id = event.after.as_ref().or(event.before.as_ref()).unwrap()["id"]
                .as_i64()
                .unwrap();
            assert_eq!(key, format!("shop.t/{{\"id\":{id}}}"), "the row's own key");
            let n = event
                .after
                .as_ref()
                .map_or(-1, |a| a["n"].as_i64().unwrap());
            by_key.entry(key.clone()).or_default().push((event.op, n));
        }
    }
    assert_eq!(by_key.len(), 3, "{by_key:?}");
    assert_eq!(
        by_key[r#"shop.t/{"id":2}"#],
        vec![(Op::Insert, 0), (Op::Update, 1), (Op::Update, 2)]
    );
    assert_eq!(
        by_key[r#"shop.t/{"id":3}"#],
        vec![(Op::Insert, 0), (Op::Update, 1), (Op::Delete, -1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_record_size_bounds_records_and_oversize_events_fail_or_are_skipped() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY, body TEXT)",
        ])
        .await;
    let client = async || {
        let client: Arc<dyn KinesisClient> = Arc::new(SmallRecords {
            inner: world.kinesis.client().await,
            max_record_bytes: 2048,
        });
        client
    };
    let start: binlog_kinesis::position::BinlogPosition =
        world.db.position().await.parse().unwrap();
    world
        .db
        .admin(&[
            "INSERT INTO shop.t VALUES (1, 'small')",
            "INSERT INTO shop.t VALUES (2, REPEAT('x', 3000))",
            "INSERT INTO shop.t VALUES (3, 'small again')",
        ])
        .await;

    // fail: the run stops at the big row, naming it; the checkpoint stays before it.
    let config = world.config(&[("BINLOG_KINESIS__KINESIS__OVERSIZE", "fail")]);
    let error = binlog_kinesis::app::run(
        config,
        StartFrom::Position(start.clone()),
        client().await,
        Shutdown::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.exit_code(), 6, "{error}");
    let message = binlog_kinesis::report::error_chain(&error);
    assert!(
        message.contains("shop.t") && message.contains("(2048)"),
        "{message}"
    );
    // Whatever the checkpoint holds is before the big row: restarting sends it again.
    let resume = match std::fs::read_to_string(world.checkpoint_path()) {
        Ok(text) => {
            let checkpoint: serde_json::Value = serde_json::from_str(&text).unwrap();
            StartFrom::Position(checkpoint["position"].as_str().unwrap().parse().unwrap())
        }
        Err(_) => StartFrom::Position(start),
    };

    // skip: from there, the big row is left out and the rest goes through.
    let shutdown = Shutdown::default();
    let config = world.config(&[("BINLOG_KINESIS__KINESIS__OVERSIZE", "skip")]);
    let daemon = tokio::spawn(binlog_kinesis::app::run(
        config,
        resume,
        client().await,
        shutdown.clone(),
    ));
    let events = world.shop_events(2).await;
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<_> = events
        .into_iter()
        .filter(|e| seen.insert(e.position.clone()))
        .collect();
    assert_eq!(ids(&unique), vec![1, 3]);
    shutdown.graceful.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_sink_writes_the_event_lines_without_kinesis() {
    let world = World::new().await;
    world.create_shop_t().await;
    let path = world.dir.path().join("events.ndjson");
    let start = world.db.position().await.parse().unwrap();
    world.insert_t(0..20, 3).await;
    let config = world.config(&[
        ("BINLOG_KINESIS__SINK__KIND", "file"),
        ("BINLOG_KINESIS__SINK__PATH", path.to_str().unwrap()),
    ]);
    let shutdown = Shutdown::default();
    let daemon = tokio::spawn(binlog_kinesis::app::run(
        config,
        StartFrom::Position(start),
        Arc::new(LocalClient::file(&path).unwrap()),
        shutdown.clone(),
    ));
    let lines = crate::harness::eventually(std::time::Duration::from_secs(60), async || {
        let text = std::fs::read_to_string(&path).ok()?;
        (text.lines().count() >= 20).then_some(text)
    })
    .await;
    shutdown.graceful.cancel();
    daemon.await.unwrap().unwrap();
    let events: Vec<binlog_kinesis::event::ChangeEvent> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ids(&events), (0..20).collect::<Vec<_>>());
    assert!(
        world.kinesis.events(&world.stream).await.is_empty(),
        "nothing went to Kinesis"
    );
}

/// Through the shard-quota proxy (a 1-shard stream held to 5 records/s), records are throttled
/// the way Kinesis throttles them, per record inside PutRecords; the daemon retries each before
/// anything after it on its key, and every change arrives once, in order per table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_shard_quota_throttling_nothing_is_lost_and_each_table_keeps_its_order() {
    let world = World::new().await;
    world.create_shop_tables(&["a", "b", "c"]).await;
    let proxy = crate::proxy::QuotaProxy::start(&world.kinesis.url, 1, 5, 1 << 20).await;
    let port = crate::harness::free_port();
    let listen = format!("127.0.0.1:{port}");
    // The changes are all in the binlog before the daemon starts from before them, so it has
    // far more than the shard's 5 records/s to send at once, however slowly the server
    // commits them.
    let start: binlog_kinesis::position::BinlogPosition =
        world.db.position().await.parse().unwrap();
    let mut statements = Vec::new();
    for id in 0..20 {
        statements.push(format!(
            "BEGIN; INSERT INTO shop.a VALUES ({id}); INSERT INTO shop.b VALUES ({id}); \
             INSERT INTO shop.c VALUES ({id}); COMMIT"
        ));
    }
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    world.db.admin(&statements).await;
    let config = world.config(&[
        ("BINLOG_KINESIS__KINESIS__ENDPOINT_URL", &proxy.url),
        // One event per record: enough records to meet the quota quickly.
        ("BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD", "1"),
        ("BINLOG_KINESIS__HTTP__LISTEN", &listen),
    ]);
    let daemon = world.daemon(config, StartFrom::Position(start)).await;
    let events = world.shop_events(60).await;
    assert_eq!(events.len(), 60, "a change repeated");
    for table in ["a", "b", "c"] {
        let of_table: Vec<_> = events
            .iter()
            .filter(|e| e.table == table)
            .cloned()
            .collect();
        assert_eq!(ids(&of_table), (0..20).collect::<Vec<_>>(), "table {table}");
    }
    let stats = proxy.stats().await;
    assert!(stats["throttled_records"].as_u64().unwrap() > 0, "{stats}");
    let (_, metrics) = crate::harness::http_get(port, "/metrics").await.unwrap();
    let throttled =
        crate::harness::prometheus_value(&metrics, "binlog_kinesis_throttled_records_total");
    assert!(throttled.unwrap() > 0.0, "{metrics}");
    daemon.stop().await.unwrap();
}

/// The proxy's other answer: a PutRecord over quota fails as a whole call with the error
/// Kinesis gives (what the SDK recognises as throttling); the calls within quota pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_proxy_throttles_put_record_as_kinesis_does() {
    let world = World::new().await;
    let proxy = crate::proxy::QuotaProxy::start(&world.kinesis.url, 1, 5, 1 << 20).await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(binlog_kinesis::config::https_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&proxy.url)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let mut throttled = 0;
    for n in 0..10 {
        let result = kinesis
            .put_record()
            .stream_name(&world.stream)
            .partition_key("shop.t")
            .data(aws_sdk_kinesis::primitives::Blob::new(format!("{n}\n")))
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(error) => {
                let service = error.into_service_error();
                assert!(
                    service.is_provisioned_throughput_exceeded_exception(),
                    "{service:?}"
                );
                throttled += 1;
            }
        }
    }
    assert!(
        throttled > 0 && throttled < 10,
        "{throttled} of 10 throttled"
    );
    assert_eq!(
        proxy.stats().await["throttled_calls"].as_u64(),
        Some(throttled)
    );
}

/// An event over `mysql.max_event_bytes` stops the daemon with exit code 7 and a message that
/// says what to change: the driver never holds a larger event, and the daemon does not
/// reconnect to read it again forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_max_event_bytes_stops_the_daemon_saying_what_to_change() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY, body LONGTEXT)",
        ])
        .await;
    let start: binlog_kinesis::position::BinlogPosition =
        world.db.position().await.parse().unwrap();
    world
        .db
        .admin(&[
            "INSERT INTO shop.t VALUES (1, 'small')",
            "INSERT INTO shop.t VALUES (2, REPEAT('x', 2 * 1024 * 1024))",
        ])
        .await;
    let config = world.config(&[
        ("BINLOG_KINESIS__MYSQL__MAX_EVENT_BYTES", "1048576"),
        ("BINLOG_KINESIS__KINESIS__OVERSIZE", "skip"),
    ]);
    let client: Arc<dyn KinesisClient> = Arc::new(world.kinesis.client().await);
    let error = binlog_kinesis::app::run(
        config,
        StartFrom::Position(start),
        client,
        Shutdown::default(),
    )
    .await
    .unwrap_err();
    let message = binlog_kinesis::report::error_chain(&error);
    assert_eq!(error.exit_code(), 7, "{message}");
    assert!(message.contains("mysql.max_event_bytes"), "{message}");
}

/// The benchmark's instant endpoint (issue 18) answers as Kinesis does: the SDK reads its
/// answers (per-record sequence numbers and shards), the daemon's checkpoint moves on its
/// acknowledgements, and a malformed request is refused, not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instant_endpoint_answers_as_kinesis_does() {
    let world = World::new().await;
    let instant = crate::proxy::InstantKinesis::start(4).await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(binlog_kinesis::config::https_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&instant.url)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let summary = kinesis
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .open_shard_count(),
        4
    );
    let entries: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|key| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(*key)
                .data(aws_sdk_kinesis::primitives::Blob::new(format!("{key}\n")))
                .build()
                .unwrap()
        })
        .collect();
    let put = kinesis
        .put_records()
        .stream_name("s")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(put.failed_record_count(), Some(0));
    assert_eq!(put.records().len(), 3);
    assert!(put
        .records()
        .iter()
        .all(|r| r.sequence_number().is_some() && r.shard_id().is_some()));
    let stats = instant.stats().await;
    assert_eq!(
        (stats["records"].as_u64(), stats["bytes"].as_u64()),
        (Some(3), Some(9))
    );

    // A record without data is refused as a whole call, as Kinesis refuses it.
    let port: u16 = instant.url.rsplit(':').next().unwrap().parse().unwrap();
    let body = r#"{"StreamName":"s","Records":[{"PartitionKey":"a"}]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("ValidationException"),
        "{answer}"
    );
    assert_eq!(instant.stats().await["records"].as_u64(), Some(3));

    // The daemon through it: the checkpoint moves only on acknowledgements.
    world.create_shop_t().await;
    let daemon = world
        .daemon(
            world.config(&[("BINLOG_KINESIS__KINESIS__ENDPOINT_URL", &instant.url)]),
            StartFrom::Checkpoint,
        )
        .await;
    world.wait_replicating().await;
    world.insert_t(0..100, 10).await;
    world.wait_replicating().await;
    daemon.stop().await.unwrap();
    let stats = instant.stats().await;
    // 100 event lines of over 100 bytes each, and the earlier 9 bytes.
    assert!(stats["bytes"].as_u64().unwrap() > 100 * 100, "{stats}");
    assert_eq!(stats["rejected_calls"].as_u64(), Some(1), "{stats}");
}
