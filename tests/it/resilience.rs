//! Connection loss: the replication thread killed, the server restarted. The daemon reconnects
//! by itself and resumes exactly where it was.

use std::time::Duration;

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
