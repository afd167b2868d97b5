//! The drain deadline: when Kinesis stops answering, a stop still ends in time, the checkpoint
//! keeps exactly what was acknowledged, and the outcome says the drain was incomplete.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use binlog_kinesis::{
    app::{Error, StartFrom},
    sink::client::{AwsKinesisClient, CallError, KinesisClient, Record, RecordOutcome},
};

use crate::harness::{Daemon, World};

/// The emulator's client, until `hang` is set: then calls never return.
struct Hanging {
    inner: AwsKinesisClient,
    hang: AtomicBool,
}

#[async_trait::async_trait]
impl KinesisClient for Hanging {
    async fn put_records(
        &self,
        stream: &str,
        records: Vec<Record>,
    ) -> Result<Vec<RecordOutcome>, CallError> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.put_records(stream, records).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_past_its_deadline_keeps_the_acknowledged_checkpoint_and_says_so() {
    let world = World::new().await;
    world.create_shop_t().await;
    let client = Arc::new(Hanging {
        inner: world.kinesis.client().await,
        hang: AtomicBool::new(false),
    });
    let config = world.config(&[("BINLOG_KINESIS__SHUTDOWN__DRAIN_TIMEOUT_MS", "1500")]);
    let Daemon { shutdown, task } =
        World::daemon_with_client(config, StartFrom::Checkpoint, client.clone());
    world.wait_replicating().await;
    world.db.admin(&["INSERT INTO shop.t VALUES (1)"]).await;
    world.kinesis.wait_for_events(&world.stream, 1).await;
    world.wait_replicating().await;
    let acknowledged = std::fs::read_to_string(world.checkpoint_path()).unwrap();

    client.hang.store(true, Ordering::SeqCst);
    world.db.admin(&["INSERT INTO shop.t VALUES (2)"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    shutdown.graceful.cancel();
    let error = task.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::DrainIncomplete { .. }), "{error:?}");
    assert_eq!(error.exit_code(), 5);
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.checkpoint_path()).unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_str(&acknowledged).unwrap();
    assert_eq!(
        after["position"], before["position"],
        "the checkpoint moved past an unacknowledged change"
    );
}

/// Regression (issue 11, item 12): a second signal abandons the drain at once, and the message
/// says so instead of naming a deadline that never passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_abandons_the_drain_and_says_so() {
    let world = World::new().await;
    world.create_shop_t().await;
    let client = Arc::new(Hanging {
        inner: world.kinesis.client().await,
        hang: AtomicBool::new(false),
    });
    let config = world.config(&[("BINLOG_KINESIS__SHUTDOWN__DRAIN_TIMEOUT_MS", "600000")]);
    let Daemon { shutdown, task } =
        World::daemon_with_client(config, StartFrom::Checkpoint, client.clone());
    world.wait_replicating().await;
    client.hang.store(true, Ordering::SeqCst);
    world.db.admin(&["INSERT INTO shop.t VALUES (1)"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    shutdown.graceful.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    shutdown.immediate.cancel();
    let error = tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("a second signal ends the drain at once")
        .unwrap()
        .unwrap_err();
    assert_eq!(error.exit_code(), 5);
    let message = error.to_string();
    assert!(
        message.contains("abandoned at a second stop signal") && !message.contains("600000"),
        "{message}"
    );
}

/// The emulator's client, until `fail` is set: then every call fails as an unavailable
/// service does (retried).
struct Failing {
    inner: AwsKinesisClient,
    fail: AtomicBool,
}

#[async_trait::async_trait]
impl KinesisClient for Failing {
    async fn put_records(
        &self,
        stream: &str,
        records: Vec<Record>,
    ) -> Result<Vec<RecordOutcome>, CallError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(CallError {
                action: binlog_kinesis::sink::retry::RetryAction::Retry,
                code: Some("ServiceUnavailable".into()),
                message: "scripted outage".into(),
            });
        }
        self.inner.put_records(stream, records).await
    }
}

/// Regression (issue 11, item 12): `/health` said healthy while Kinesis accepted nothing for
/// minutes. Past `http.degraded_after_ms` without an acknowledgement while events wait it says
/// `degraded` (503), and healthy again once Kinesis accepts records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_degraded_while_kinesis_accepts_nothing() {
    use crate::harness::{eventually, free_port, http_get};
    let world = World::new().await;
    world.create_shop_t().await;
    let client = Arc::new(Failing {
        inner: world.kinesis.client().await,
        fail: AtomicBool::new(false),
    });
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let config = world.config(&[
        ("BINLOG_KINESIS__HTTP__LISTEN", &listen),
        ("BINLOG_KINESIS__HTTP__DEGRADED_AFTER_MS", "1000"),
    ]);
    let Daemon { shutdown, task } =
        World::daemon_with_client(config, StartFrom::Checkpoint, client.clone());
    world.wait_replicating().await;
    let health = async || {
        let (status, body) = http_get(port, "/health").await?;
        Some((status, body.trim().to_owned()))
    };
    assert_eq!(health().await.unwrap().0, 200);
    client.fail.store(true, Ordering::SeqCst);
    world.db.admin(&["INSERT INTO shop.t VALUES (1)"]).await;
    let degraded = (503, r#"{"status":"degraded","healthy":false}"#.to_owned());
    eventually(std::time::Duration::from_secs(30), async || {
        (health().await? == degraded).then_some(())
    })
    .await;
    client.fail.store(false, Ordering::SeqCst);
    let replicating = (200, r#"{"status":"replicating","healthy":true}"#.to_owned());
    eventually(std::time::Duration::from_secs(30), async || {
        (health().await? == replicating).then_some(())
    })
    .await;
    assert_eq!(world.shop_events(1).await.len(), 1);
    shutdown.graceful.cancel();
    task.await.unwrap().unwrap();
}
