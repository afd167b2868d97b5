//! Connection loss: the replication thread killed, the server restarted. The daemon reconnects
//! by itself and resumes exactly where it was.

use std::time::Duration;

use std::sync::Arc;

use binlog_kinesis::position::BinlogPosition;
use mysql_async::prelude::Queryable;

use crate::harness::{eventually, free_port, http_get, ids, prometheus_value, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_dump_thread_a_server_restart_and_a_stall_lose_and_repeat_nothing() {
    let mut world = World::new().await;
    world.create_shop_t().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = world
        .running_daemon(&[("BINLOG_KINESIS__HTTP__LISTEN", &listen)])
        .await;
    world.insert_t(0..20, 1).await;

    // KILL the daemon's binlog dump thread on the server.
    let mut conn = world.db.root().await;
    let dump: Vec<u64> = conn
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap();
    assert_eq!(dump.len(), 1, "one replication connection");
    conn.query_drop(format!("KILL {}", dump[0])).await.unwrap();
    drop(conn);
    world.insert_t(20..40, 1).await;
    world.shop_events(40).await;

    world.db.restart().await;
    world.insert_t(40..60, 1).await;
    world.shop_events(60).await;

    // A stall: the server frozen for longer than three heartbeats (1 s each here), then
    // thawed. The silent connection is given up and reopened.
    world.db.signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    world.db.signal("CONT");
    world.insert_t(60..70, 1).await;

    let events = world.shop_events(70).await;
    assert_eq!(
        ids(&events),
        (0..70).collect::<Vec<_>>(),
        "a change lost or repeated across the reconnects"
    );
    // Still replicating, and still stopping cleanly.
    world.wait_replicating().await;
    // Each incident counted once, however many attempts it took.
    let (_, text) = http_get(port, "/metrics").await.unwrap();
    let incidents = prometheus_value(&text, "binlog_kinesis_reconnects_total").unwrap();
    assert!(incidents >= 3.0, "{text}");
    let (status, health) = http_get(port, "/health").await.unwrap();
    assert_eq!(status, 200, "{health}");
    let outcome = daemon.stop().await.unwrap();
    assert!(outcome.reconnects as f64 >= incidents, "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_daemons_on_one_stream_exactly_one_replicates_and_the_other_takes_over() {
    let world = World::new().await;
    world.create_shop_t().await;
    let (active_port, standby_port) = (free_port(), free_port());
    let active_listen = format!("127.0.0.1:{active_port}");
    let standby_listen = format!("127.0.0.1:{standby_port}");
    let active = world
        .running_daemon(&[("BINLOG_KINESIS__HTTP__LISTEN", &active_listen)])
        .await;
    let standby = world
        .daemon(
            world.config(&[("BINLOG_KINESIS__HTTP__LISTEN", &standby_listen)]),
            binlog_kinesis::app::StartFrom::Checkpoint,
        )
        .await;
    // Both healthy: one replicating, one waiting its turn.
    let state = async |port: u16| {
        let (status, body) = http_get(port, "/health").await?;
        let body: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some((status, body["status"].as_str()?.to_owned()))
    };
    eventually(Duration::from_secs(30), async || {
        (state(standby_port).await? == (200, "standby".to_owned())).then_some(())
    })
    .await;
    assert_eq!(
        state(active_port).await,
        Some((200, "replicating".to_owned()))
    );
    world.insert_t(0..20, 1).await;
    assert_eq!(
        ids(&world.shop_events(20).await),
        (0..20).collect::<Vec<_>>()
    );
    // Give a wrongly active standby time to write duplicates before looking again.
    world.wait_replicating().await;
    assert_eq!(
        ids(&world.shop_events(20).await),
        (0..20).collect::<Vec<_>>(),
        "both instances replicated"
    );
    assert!(!standby.task.is_finished(), "the standby waits");

    active.stop().await.unwrap();
    eventually(Duration::from_secs(30), async || {
        (state(standby_port).await? == (200, "replicating".to_owned())).then_some(())
    })
    .await;
    world.insert_t(20..40, 1).await;
    assert_eq!(
        ids(&world.shop_events(40).await),
        (0..40).collect::<Vec<_>>(),
        "a gap or a repeat at the handover"
    );
    world.wait_replicating().await;
    standby.stop().await.unwrap();
    assert_eq!(
        ids(&world.shop_events(40).await),
        (0..40).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_encrypt_verify_and_refuse_as_configured() {
    use binlog_kinesis::source::{connect, SourceError};
    let world = World::with_tls().await;
    world.create_shop_t().await;
    let ca = world.db.ca_file().display().to_string();
    let other_ca = world.db.other_ca_file().display().to_string();
    let mysql = |mode: &str, ca: &str| {
        world
            .config(&[
                ("BINLOG_KINESIS__MYSQL__TLS_MODE", mode),
                ("BINLOG_KINESIS__MYSQL__TLS_CA_FILE", ca),
            ])
            .mysql
    };

    // The account requires TLS: every mode that encrypts gets in, plain does not.
    for (mode, ca) in [
        ("preferred", ""),
        ("required", ""),
        ("verify-ca", ca.as_str()),
        ("verify-identity", ca.as_str()),
    ] {
        let conn = connect::connect(&mysql(mode, ca))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e:?}"));
        conn.disconnect().await.unwrap();
    }
    let refused = connect::connect(&mysql("disabled", "")).await.unwrap_err();
    assert!(
        matches!(refused, SourceError::AccessDenied { .. }),
        "{refused:?}"
    );
    // A certificate from another CA is not trusted.
    let untrusted = connect::connect(&mysql("verify-ca", &other_ca))
        .await
        .unwrap_err();
    assert!(
        matches!(untrusted, SourceError::Connect { .. }),
        "{untrusted:?}"
    );
    assert!(
        format!("{untrusted:?}")
            .to_lowercase()
            .contains("certificate"),
        "{untrusted:?}"
    );

    // And replication itself runs over a verified connection.
    let daemon = world
        .running_daemon(&[
            ("BINLOG_KINESIS__MYSQL__TLS_MODE", "verify-identity"),
            ("BINLOG_KINESIS__MYSQL__TLS_CA_FILE", &ca),
        ])
        .await;
    world.insert_t(0..3, 1).await;
    let events = world.shop_events(3).await;
    assert_eq!(events.len(), 3);
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_outage_pauses_replication_and_it_recovers_without_a_restart() {
    let world = World::new().await;
    world.create_shop_t().await;
    let target = world.kinesis.url.trim_start_matches("http://").to_owned();
    let proxy = crate::proxy::CuttableProxy::start(target).await;
    let daemon = world
        .running_daemon(&[("BINLOG_KINESIS__KINESIS__ENDPOINT_URL", &proxy.url)])
        .await;
    world.insert_t(0..10, 1).await;
    world.shop_events(10).await;

    proxy.cut();
    world.insert_t(10..30, 1).await;
    // Nothing gets through while Kinesis is unreachable, and the daemon keeps running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.shop_events(10).await.len(), 10);
    assert!(
        !daemon.task.is_finished(),
        "an outage must not stop the daemon"
    );

    proxy.restore();
    let ids = ids(&world.shop_events(30).await);
    assert_eq!(
        ids,
        (0..30).collect::<Vec<_>>(),
        "a change lost, repeated or reordered by the outage"
    );
    world.wait_replicating().await;
    daemon.stop().await.unwrap();
}

/// The emulator itself stopped (it saves its state) and started again mid-stream: calls fail
/// with connection errors meanwhile, the daemon keeps retrying with the source paused, and it
/// carries on by itself once the emulator is back. A call cut off mid-answer may be written
/// twice (at-least-once), but nothing is lost and each table's order holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_stopped_and_restarted_mid_stream_loses_nothing() {
    let mut world = World::new().await;
    world.create_shop_t().await;
    let daemon = world.running_daemon(&[]).await;
    world.insert_t(0..10, 1).await;
    world.shop_events(10).await;

    world.kinesis.shut_down().await;
    world.insert_t(10..30, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !daemon.task.is_finished(),
        "an unreachable Kinesis must not stop the daemon"
    );
    world.kinesis.start_again().await;

    let events = world.shop_events(30).await;
    // Repeats (a retried call the emulator had already stored) are dropped by position, as a
    // consumer would; what remains is every change once, in order.
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<_> = events
        .into_iter()
        .filter(|e| seen.insert((e.position.clone(), e.row)))
        .collect();
    assert_eq!(
        ids(&unique),
        (0..30).collect::<Vec<_>>(),
        "a change lost or reordered across the emulator restart"
    );
    world.wait_replicating().await;
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_gtid_replica_continues_with_every_change_exactly_once() {
    let mut world = World::new().await;
    let replica = crate::harness::MariaDb::start_replica_of(&world.db).await;
    world.create_shop_t().await;
    replica.catch_up_with(&world.db).await;

    let daemon = world.running_daemon(&[]).await;
    world.insert_t(0..20, 1).await;
    world.shop_events(20).await;
    let outcome = daemon.stop().await.unwrap();
    assert!(
        outcome.committed.unwrap().gtid.is_some(),
        "the checkpoint carries the GTID state"
    );

    // More changes on the primary, replicated, then the primary is lost.
    world.insert_t(20..40, 1).await;
    replica.catch_up_with(&world.db).await;
    world.db.kill();

    // The same daemon configuration, pointed at the replica: it resumes by GTID.
    let port = replica.port.to_string();
    let daemon = world
        .daemon(
            world.config(&[("BINLOG_KINESIS__MYSQL__PORT", &port)]),
            binlog_kinesis::app::StartFrom::Checkpoint,
        )
        .await;
    let ids = ids(&world.shop_events(40).await);
    assert_eq!(
        ids,
        (0..40).collect::<Vec<_>>(),
        "a change lost or repeated across the failover"
    );
    // And it keeps replicating from the new primary.
    replica.admin(&["INSERT INTO shop.t VALUES (40)"]).await;
    assert_eq!(world.shop_events(41).await.len(), 41);
    daemon.stop().await.unwrap();
}

/// Regression (issue 11, item 4): the active instance's lock connection KILLed under load. The
/// standby takes the lock at once; the old instance used to go on writing for up to a
/// heartbeat, so both wrote the stream (duplicates, interleaved order) and the old one wrote the
/// shared checkpoint after losing the lock. Now the old one's writes stop when its lease lapses
/// and it exits (code 10), and the new one waits out that lease before its first write: per
/// table, the stream holds the old instance's records, then the new one's from the
/// checkpoint on, never the two interleaved, and every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_hands_over_without_two_writers() {
    let world = World::new().await;
    world.create_shop_t().await;
    // The default heartbeat: the old holder's lock checks are 5 s apart.
    let heartbeat = [("BINLOG_KINESIS__MYSQL__HEARTBEAT_MS", "5000")];
    // The old holder's Kinesis is slow (each call takes 100 ms on top of the emulator's), so it
    // holds a backlog when it loses the lock: the writes that used to go on after the loss.
    let slow = Arc::new(Slow {
        inner: world.kinesis.client().await,
    });
    let active = World::daemon_with_client(
        world.config(&heartbeat),
        binlog_kinesis::app::StartFrom::Checkpoint,
        slow,
    );
    world.wait_replicating().await;
    let standby = world
        .daemon(
            world.config(&heartbeat),
            binlog_kinesis::app::StartFrom::Checkpoint,
        )
        .await;
    // Rows keep coming, one transaction each, from before the KILL until well after the
    // handover: both instances have something to write while both might.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let writer = async {
        let mut id = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            world.insert_t(id..id + 1, 1).await;
            id += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        id
    };
    let killer = async {
        world.shop_events(100).await;
        let mut conn = world.db.root().await;
        let holder: Option<u64> = conn
            .query_first("SELECT IS_USED_LOCK('binlog-kinesis:cdc-test')")
            .await
            .unwrap()
            .flatten();
        conn.query_drop(format!(
            "KILL {}",
            holder.expect("the active holds the lock")
        ))
        .await
        .unwrap();
        // Past the new holder's wait for the old one's lease, and some of its writes.
        tokio::time::sleep(Duration::from_secs(10)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    // The shared checkpoint, watched throughout: it never moves back (the old instance writing
    // after the new one took over would move it back to its own position).
    let watch = async {
        let mut seen: Vec<BinlogPosition> = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(position) = checkpoint_position(&world) {
                if seen.last() != Some(&position) {
                    seen.push(position);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    };
    let (n, (), seen) = tokio::join!(writer, killer, watch);
    for pair in seen.windows(2) {
        assert_ne!(
            pair[1].try_cmp(&pair[0]),
            Some(std::cmp::Ordering::Less),
            "the checkpoint moved back: {seen:?}"
        );
    }
    let error = tokio::time::timeout(Duration::from_secs(60), active.task)
        .await
        .expect("the old instance stops by itself")
        .unwrap()
        .expect_err("the old instance lost the lock");
    assert_eq!(error.exit_code(), 10, "{error}");
    let events = eventually(Duration::from_secs(90), async || {
        let events = world.kinesis.events(&world.stream).await;
        let got: std::collections::HashSet<i64> = ids(&events).into_iter().collect();
        (0..n).all(|id| got.contains(&id)).then_some(events)
    })
    .await;
    let got = ids(&events);
    // One instance after the other: ascending, one step back where the new one starts from
    // the checkpoint, ascending again.
    let steps_back = got.windows(2).filter(|w| w[1] <= w[0]).count();
    assert!(
        steps_back <= 1,
        "{steps_back} steps back: the two instances' writes interleave: {got:?}"
    );
    world.wait_replicating().await;
    standby.stop().await.unwrap();
}

/// The position in the world's checkpoint file, when there is one to read.
fn checkpoint_position(world: &World) -> Option<BinlogPosition> {
    let text = std::fs::read_to_string(world.checkpoint_path()).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["position"].as_str()?.parse().ok()
}

/// The emulator's client, 100 ms slower per call.
struct Slow {
    inner: binlog_kinesis::sink::client::AwsKinesisClient,
}

#[async_trait::async_trait]
impl binlog_kinesis::sink::client::KinesisClient for Slow {
    async fn put_records(
        &self,
        stream: &str,
        records: Vec<binlog_kinesis::sink::client::Record>,
    ) -> Result<
        Vec<binlog_kinesis::sink::client::RecordOutcome>,
        binlog_kinesis::sink::client::CallError,
    > {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.inner.put_records(stream, records).await
    }
}

/// Regression (issue 11, item 11): two daemons on different streams (so both are active)
/// with the same `server_id` used to flap forever, each one's binlog dump ended whenever the
/// other reconnected. After a short grace one of them stops with exit code 11 naming
/// `mysql.server_id`, and the other replicates on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_one_server_id_end_in_a_clear_error() {
    let world = World::new().await;
    world.create_shop_t().await;
    world.kinesis.create_stream("cdc-other", 1).await;
    let first = world.running_daemon(&[]).await;
    let second = world
        .daemon(
            world.config(&[
                ("BINLOG_KINESIS__KINESIS__STREAM", "cdc-other"),
                (
                    "BINLOG_KINESIS__CHECKPOINT__PATH",
                    &world.dir.path().join("other.json").display().to_string(),
                ),
            ]),
            binlog_kinesis::app::StartFrom::Checkpoint,
        )
        .await;
    let mut writes = 0;
    let first_stopped = eventually(Duration::from_secs(90), async || {
        world.insert_t(writes..writes + 1, 1).await;
        writes += 1;
        if first.task.is_finished() {
            Some(true)
        } else {
            second.task.is_finished().then_some(false)
        }
    })
    .await;
    let (stopped, survivor) = if first_stopped {
        (first, second)
    } else {
        (second, first)
    };
    let error = stopped.task.await.unwrap().expect_err("a clear error");
    assert_eq!(error.exit_code(), 11, "{error}");
    let message = binlog_kinesis::report::error_chain(&error);
    assert!(message.contains("mysql.server_id"), "{message}");
    // The other one replicates on.
    world.insert_t(10_000..10_001, 1).await;
    eventually(Duration::from_secs(30), async || {
        let first_stream = ids(&world.kinesis.events(&world.stream).await);
        let other_stream = ids(&world.kinesis.events("cdc-other").await);
        (first_stream.contains(&10_000) || other_stream.contains(&10_000)).then_some(())
    })
    .await;
    survivor.stop().await.unwrap();
}
