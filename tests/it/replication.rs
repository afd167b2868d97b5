//! Replication scenarios, each asserting exact events in exact order.

use std::time::Duration;

use binlog_kinesis::{
    app::{Error, StartFrom},
    event::{ChangeEvent, Op},
    source::SourceError,
};
use serde_json::{json, Value};

use crate::harness::{ids, World};

fn shop(events: &[ChangeEvent]) -> Vec<ChangeEvent> {
    events
        .iter()
        .filter(|e| e.database == "shop")
        .cloned()
        .collect()
}

fn summary(event: &ChangeEvent) -> (Op, String, Value, Value) {
    (
        event.op,
        event.table.clone(),
        event
            .before
            .clone()
            .map(Value::Object)
            .unwrap_or(Value::Null),
        event
            .after
            .clone()
            .map(Value::Object)
            .unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_updates_and_deletes_arrive_in_order_with_their_metadata() {
    let world = World::new().await;
    world.db.admin(&["CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, status VARCHAR(20), total DECIMAL(10,2), placed DATETIME(6))"]).await;
    let daemon = world.running_daemon(&[]).await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.orders VALUES (1, 'new', 12.50, '2024-02-29 23:59:59.123456')",
            "INSERT INTO shop.orders VALUES (2, 'new', 3.00, '2024-03-01 00:00:00'), (3, 'new', 0.10, NULL)",
            "UPDATE shop.orders SET status = 'paid' WHERE id = 1",
            "UPDATE shop.orders SET total = total + 1 WHERE id IN (2, 3)",
            "DELETE FROM shop.orders WHERE id = 3",
        ])
        .await;
    let events = shop(&world.kinesis.wait_for_events(&world.stream, 7).await);
    let got: Vec<_> = events.iter().map(summary).collect();
    let row = |id: i64, status: &str, total: &str, placed: Value| json!({"id": id, "status": status, "total": total, "placed": placed});
    let r1 = row(1, "new", "12.50", json!("2024-02-29 23:59:59.123456"));
    let r1_paid = row(1, "paid", "12.50", json!("2024-02-29 23:59:59.123456"));
    let r2 = row(2, "new", "3.00", json!("2024-03-01 00:00:00.000000"));
    let r3 = row(3, "new", "0.10", Value::Null);
    let r2b = row(2, "new", "4.00", json!("2024-03-01 00:00:00.000000"));
    let r3b = row(3, "new", "1.10", Value::Null);
    let t = || "orders".to_owned();
    assert_eq!(
        got,
        vec![
            (Op::Insert, t(), Value::Null, r1.clone()),
            (Op::Insert, t(), Value::Null, r2.clone()),
            (Op::Insert, t(), Value::Null, r3.clone()),
            (Op::Update, t(), r1, r1_paid),
            (Op::Update, t(), r2, r2b),
            (Op::Update, t(), r3, r3b.clone()),
            (Op::Delete, t(), r3b, Value::Null),
        ]
    );
    // Multi-row statements: one rows event, rows numbered within it, commit on the last.
    assert_eq!(events[1].position, events[2].position);
    assert_eq!((events[1].row, events[2].row), (0, 1));
    assert_eq!((events[1].commit, events[2].commit), (false, true));
    assert_eq!(events[1].xid, events[2].xid);
    assert!(events[1].xid.is_some());
    for event in &events {
        assert_eq!(
            event.primary_key.clone().map(Value::Object),
            Some(json!({"id": (event.after.as_ref().or(event.before.as_ref()).unwrap())["id"]}))
        );
        let gtid = event.gtid.as_deref().unwrap();
        assert!(
            gtid.starts_with("0-1-"),
            "MariaDB GTID domain-server-sequence: {gtid}"
        );
        assert!(event.ts_ms > 1_700_000_000_000);
    }
    let positions: Vec<String> = events
        .iter()
        .map(|e| format!("{}#{}", e.position, e.row))
        .collect();
    let mut unique = positions.clone();
    unique.dedup();
    assert_eq!(unique, positions, "position + row identify an event");
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_shares_its_xid_and_a_rollback_produces_nothing() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.a (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE shop.b (id INT PRIMARY KEY, v INT)",
        ])
        .await;
    let daemon = world.running_daemon(&[]).await;
    world
        .db
        .admin(&[
            "BEGIN",
            "INSERT INTO shop.a VALUES (1, 1)",
            "INSERT INTO shop.b VALUES (1, 1)",
            "UPDATE shop.a SET v = 2 WHERE id = 1",
            "COMMIT",
            "BEGIN",
            "INSERT INTO shop.a VALUES (99, 99)",
            "ROLLBACK",
            "INSERT INTO shop.b VALUES (2, 2)",
        ])
        .await;
    let events = shop(&world.kinesis.wait_for_events(&world.stream, 4).await);
    // One shard: records arrive in put order; per table, binlog order.
    let a: Vec<_> = events.iter().filter(|e| e.table == "a").collect();
    let b: Vec<_> = events.iter().filter(|e| e.table == "b").collect();
    assert_eq!(a.len(), 2, "{events:?}");
    assert_eq!(b.len(), 2, "{events:?}");
    assert!(
        events.iter().all(|e| e
            .after
            .as_ref()
            .map(|r| r["id"] != json!(99))
            .unwrap_or(true)),
        "rolled back row leaked"
    );
    let xid = a[0].xid.unwrap();
    assert_eq!(
        (a[0].xid, b[0].xid, a[1].xid),
        (Some(xid), Some(xid), Some(xid))
    );
    assert_eq!(a[0].gtid, b[0].gtid);
    assert_eq!(
        (a[0].commit, b[0].commit, a[1].commit),
        (false, false, true),
        "commit only on the transaction's last event"
    );
    assert_eq!(a[1].op, Op::Update);
    assert!(b[1].commit && b[1].xid != Some(xid));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_mid_stream_appears_in_later_events() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.items (id INT PRIMARY KEY, sku VARCHAR(10))",
        ])
        .await;
    let daemon = world.running_daemon(&[]).await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.items VALUES (1, 'a')",
            "ALTER TABLE shop.items ADD COLUMN note VARCHAR(20) DEFAULT 'n/a' AFTER id",
            "INSERT INTO shop.items VALUES (2, 'x', 'b')",
            "UPDATE shop.items SET note = 'hi' WHERE id = 1",
        ])
        .await;
    let events = shop(&world.kinesis.wait_for_events(&world.stream, 3).await);
    let afters: Vec<Value> = events
        .iter()
        .map(|e| Value::Object(e.after.clone().unwrap()))
        .collect();
    assert_eq!(
        afters,
        vec![
            json!({"id": 1, "sku": "a"}),
            json!({"id": 2, "note": "x", "sku": "b"}),
            json!({"id": 1, "note": "hi", "sku": "a"})
        ]
    );
    // Column order follows the table.
    let keys: Vec<&String> = events[1].after.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["id", "note", "sku"]);
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_tables_and_keyless_tables_have_a_null_key() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE DATABASE crm",
            "CREATE TABLE shop.kept (id INT PRIMARY KEY)",
            "CREATE TABLE shop.tmp_x (id INT PRIMARY KEY)",
            "CREATE TABLE shop.log (msg VARCHAR(10))",
            "CREATE TABLE crm.users (id INT PRIMARY KEY)",
        ])
        .await;
    let daemon = world
        .running_daemon(&[("BINLOG_KINESIS__FILTER__EXCLUDE", "shop.tmp_*")])
        .await;
    world
        .db
        .admin(&[
            "INSERT INTO crm.users VALUES (1)",
            "INSERT INTO shop.tmp_x VALUES (1)",
            "INSERT INTO shop.kept VALUES (1)",
            "INSERT INTO shop.log VALUES ('hello')",
        ])
        .await;
    let events = world.shop_events(2).await;
    let tables: Vec<&str> = events.iter().map(|e| e.table.as_str()).collect();
    assert_eq!(tables, ["kept", "log"]);
    assert!(world
        .kinesis
        .events(&world.stream)
        .await
        .iter()
        .all(|e| e.database != "crm"));
    assert_eq!(events[1].primary_key, None);
    assert_eq!(
        events[1].after.clone().map(Value::Object),
        Some(json!({"msg": "hello"}))
    );
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_exact() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop CHARACTER SET utf8mb4",
            "CREATE TABLE shop.v (id INT PRIMARY KEY, mi MEDIUMINT, biu BIGINT UNSIGNED, d DECIMAL(20,6), ts TIMESTAMP(3) NULL, dt DATE, tm TIME(6), t TEXT, l VARCHAR(10) CHARACTER SET latin1, bn BINARY(4), vb VARBINARY(8), f FLOAT, e ENUM('s','m','l'), s SET('a','b','c'), bt BIT(10), y YEAR)",
        ])
        .await;
    let daemon = world.running_daemon(&[]).await;
    world
        .db
        .admin(&[
            "SET time_zone = '+00:00'",
            "SET NAMES utf8mb4",
            "INSERT INTO shop.v VALUES (1, -8388608, 18446744073709551615, -12345678901234.123456, '2024-03-01 12:34:56.789', '2024-02-29', '-838:59:59.000001', 'emoji 🎉', 'héllo', UNHEX('AB000000'), UNHEX('DEADBEEF00'), 0.00125, 'm', 'a,c', b'1010101011', 2024)",
            "INSERT INTO shop.v (id) VALUES (2)",
        ])
        .await;
    let events = shop(&world.kinesis.wait_for_events(&world.stream, 2).await);
    assert_eq!(
        Value::Object(events[0].after.clone().unwrap()),
        json!({
            "id": 1, "mi": -8388608, "biu": 18446744073709551615u64, "d": "-12345678901234.123456",
            "ts": "2024-03-01T12:34:56.789Z", "dt": "2024-02-29", "tm": "-838:59:59.000001",
            "t": "emoji 🎉", "l": "héllo", "bn": "qwAAAA==", "vb": "3q2+7wA=", "f": 1.25e-3,
            "e": "m", "s": ["a", "c"], "bt": 683, "y": 2024
        })
    );
    let nulls = events[1].after.clone().unwrap();
    assert!(
        nulls
            .iter()
            .filter(|(k, _)| *k != "id")
            .all(|(_, v)| v.is_null()),
        "{nulls:?}"
    );
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_and_restart_loses_and_repeats_nothing() {
    let world = World::new().await;
    world.create_shop_t().await;
    let daemon = world.running_daemon(&[]).await;
    for id in 0..20 {
        world
            .db
            .admin(&[&format!("INSERT INTO shop.t VALUES ({id})")])
            .await;
    }
    let outcome = daemon.stop().await.unwrap();
    let committed = outcome.committed.unwrap();
    let first = shop(&world.kinesis.events(&world.stream).await);
    for id in 20..40 {
        world
            .db
            .admin(&[&format!("INSERT INTO shop.t VALUES ({id})")])
            .await;
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.checkpoint_path()).unwrap()).unwrap();
    assert_eq!(saved["position"], json!(committed.position.to_string()));
    assert_eq!(
        saved["gtid"],
        json!(committed.gtid.as_ref().unwrap().to_string()),
        "MariaDB checkpoints carry the GTID state"
    );
    assert_eq!(saved["version"], json!(2));
    let daemon = world.daemon(world.config(&[]), StartFrom::Checkpoint).await;
    let events = world.shop_events(40).await;
    daemon.stop().await.unwrap();
    let ids = ids(&events);
    assert_eq!(
        ids,
        (0..40).collect::<Vec<_>>(),
        "a gap or a repeat across the restart"
    );
    // The stop may come before the reader has seen every insert; whatever it had sent is a
    // prefix of the changes.
    assert!(first.len() <= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_position_replays_from_exactly_there() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY)",
            "INSERT INTO shop.t VALUES (1)",
        ])
        .await;
    let position = world.db.position().await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.t VALUES (2)",
            "INSERT INTO shop.t VALUES (3)",
        ])
        .await;
    let daemon = world
        .daemon(
            world.config(&[]),
            StartFrom::Position(position.parse().unwrap()),
        )
        .await;
    let events = shop(&world.kinesis.wait_for_events(&world.stream, 2).await);
    let ids = ids(&events);
    assert_eq!(ids, [2, 3]);
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_checkpoint_position_is_a_permanent_error_naming_the_file() {
    purged_checkpoint_is_refused(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_checkpoint_gtid_is_a_permanent_error_too() {
    purged_checkpoint_is_refused(true).await;
}

/// Starts with `snapshot.mode = "when_needed"`, inserts `id` into `shop.t` once it replicates,
/// and returns what the stream then holds of `shop` (at least `events` events) as (op, id).
async fn start_when_needed_then_insert(world: &World, id: i64, events: usize) -> Vec<(Op, i64)> {
    let config = world.config(&[("BINLOG_KINESIS__SNAPSHOT__MODE", "when_needed")]);
    let daemon = world.daemon(config, StartFrom::Checkpoint).await;
    world.wait_replicating().await;
    world.insert_t(id..id + 1, 1).await;
    let events = world.shop_events(events).await;
    daemon.stop().await.unwrap();
    events
        .iter()
        .filter(|e| e.after.as_ref().is_some_and(|a| a.contains_key("id")))
        .map(|e| (e.op, e.after.as_ref().unwrap()["id"].as_i64().unwrap()))
        .collect()
}

/// The message of a start refused because its position is gone (exit code 4).
fn not_on_server(error: &Error) -> String {
    assert!(
        matches!(
            error,
            Error::Source(SourceError::PositionNotOnServer { .. })
        ),
        "{error:?}"
    );
    assert_eq!(error.exit_code(), 4);
    error.to_string()
}

/// A checkpoint (by file position, or by GTID) whose binlog the server has purged.
async fn purged_checkpoint_is_refused(with_gtid: bool) {
    let world = World::new().await;
    // Some transactions, so that the GTID state names a purgeable one.
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY)",
            "INSERT INTO shop.t VALUES (1)",
        ])
        .await;
    let position = world.db.position().await;
    let gtid = if with_gtid {
        let mut conn = world.db.root().await;
        let pos: String =
            mysql_async::prelude::Queryable::query_first(&mut conn, "SELECT @@gtid_binlog_pos")
                .await
                .unwrap()
                .unwrap();
        format!(r#""gtid":"{pos}","#)
    } else {
        String::new()
    };
    std::fs::write(
        world.checkpoint_path(),
        format!(r#"{{"version":1,"position":"{position}",{gtid}"updated_at_ms":0}}"#),
    )
    .unwrap();
    // Every older file goes: the one after the checkpoint holds the next GTID.
    let file = position.split(':').next().unwrap().to_owned();
    world.purge_with("INSERT INTO shop.t VALUES (2)").await;
    let daemon = world.daemon(world.config(&[]), StartFrom::Checkpoint).await;
    let error = daemon.task.await.unwrap().unwrap_err();
    let message = not_on_server(&error);
    assert!(
        message.contains(&file)
            && message.contains("--start-position")
            && message.contains("--from-end"),
        "{message}"
    );
    if with_gtid {
        return;
    }
    // snapshot.mode = "when_needed": the same start goes on from the end of binlog and reads
    // the tables again (a row written while the daemon was down is in it), then streams.
    world
        .db
        .admin(&[
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
            "INSERT INTO shop.t VALUES (3)",
        ])
        .await;
    let summary = start_when_needed_then_insert(&world, 4, 6).await;
    assert_eq!(
        summary,
        [(Op::Read, 1), (Op::Read, 2), (Op::Read, 3), (Op::Insert, 4)]
    );
}

/// Regression (issue 19, found while driving the snapshot-after-purge alarm): a checkpoint that
/// resumes by GTID, on MariaDB, after the server purged a transaction that follows it. MariaDB
/// accepts the request and refuses it on the stream's first read, after the start had been
/// taken as good: with `snapshot.mode = "when_needed"` the daemon stopped (exit 4) instead of
/// snapshotting, and the message said "see SHOW BINARY LOGS". The position is now checked
/// against the oldest file's start before the request: exit 4 naming that file, or the
/// snapshot `when_needed` promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gtid_checkpoint_past_a_purge_is_refused_before_reading_and_when_needed_heals_it() {
    let world = World::new().await;
    world.create_shop_t().await;
    let daemon = world.running_daemon(&[]).await;
    world.insert_t(1..2, 1).await;
    world.wait_replicating().await;
    daemon.stop().await.unwrap();
    let checkpoint = std::fs::read_to_string(world.checkpoint_path()).unwrap();
    assert!(checkpoint.contains(r#""gtid":"0-1-"#), "{checkpoint}");
    // A change the daemon has not read goes with its file.
    let newest = world.purge_with("INSERT INTO shop.t VALUES (2)").await;
    let daemon = world.daemon(world.config(&[]), StartFrom::Checkpoint).await;
    let error = tokio::time::timeout(Duration::from_secs(30), daemon.task)
        .await
        .expect("the start ends")
        .unwrap()
        .unwrap_err();
    let message = not_on_server(&error);
    assert!(
        message.contains(&newest) && message.contains("purged"),
        "{message}"
    );

    // with snapshot.mode = "when_needed" the start goes on from the end and reads the table.
    world
        .db
        .admin(&["GRANT SELECT ON shop.* TO 'cdc'@'%'"])
        .await;
    // Four row events and the snapshot's start and end markers.
    let summary = start_when_needed_then_insert(&world, 3, 6).await;
    assert_eq!(
        summary,
        [
            (Op::Insert, 1),
            (Op::Read, 1),
            (Op::Read, 2),
            (Op::Insert, 3)
        ]
    );
}

/// Regression (issue 11, item 1): changes logged as statements stop the daemon, whatever
/// table their text names: each of these changed `shop.orders` (in scope) and used to pass
/// unseen, with exit 0 at SIGTERM. The same changes logged as rows (the server's
/// binlog_format=ROW) arrive as events, CREATE ... SELECT and trigger rows included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_logged_as_a_statement_stops_the_daemon_whatever_table_it_names() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE DATABASE other",
            "CREATE TABLE shop.orders (id INT PRIMARY KEY, status VARCHAR(20))",
            "CREATE TABLE other.t2 (id INT PRIMARY KEY, status VARCHAR(20))",
            "CREATE TABLE other.log (id INT PRIMARY KEY)",
            "CREATE TRIGGER other.t2_ai AFTER INSERT ON other.t2 FOR EACH ROW \
             INSERT INTO shop.orders VALUES (NEW.id + 100, 'from trigger')",
            "INSERT INTO shop.orders VALUES (21, 'new'), (22, 'new'), (23, 'new')",
            "INSERT INTO other.t2 VALUES (21, 'x'), (22, 'x')",
        ])
        .await;
    let statements = [
        "USE other; DELETE o FROM shop.orders o WHERE o.id = 21",
        "USE other; DELETE FROM o USING shop.orders o WHERE o.id = 122",
        "UPDATE other.t2 JOIN shop.orders o ON o.id = t2.id SET o.status = 'joined'",
        "/*!40101 UPDATE shop.orders SET status = 'hidden' WHERE id = 23 */",
        "INSERT INTO other.t2 VALUES (7, 'fires the trigger')",
        "CREATE TABLE shop.x SELECT * FROM shop.orders",
        // Out of scope by its text, yet a trigger, a function or a procedure could reach
        // the tables in scope: it stops too.
        "INSERT INTO other.log VALUES (1)",
    ];
    let mut positions = Vec::new();
    for statement in statements {
        positions.push(world.db.position().await);
        let mut batch = vec!["SET SESSION binlog_format = 'STATEMENT'"];
        batch.extend(statement.split("; "));
        world.db.admin(&batch).await;
    }
    let only_orders = [("BINLOG_KINESIS__FILTER__INCLUDE", "shop.orders")];
    for (statement, position) in statements.iter().zip(&positions) {
        let daemon = world
            .daemon(
                world.config(&only_orders),
                StartFrom::Position(position.parse().unwrap()),
            )
            .await;
        let error = tokio::time::timeout(Duration::from_secs(60), daemon.task)
            .await
            .expect("the daemon stops by itself")
            .unwrap()
            .expect_err(statement);
        assert_eq!(error.exit_code(), 7, "{statement}: {error}");
        let message = error.to_string();
        let shown = statement.rsplit("; ").next().unwrap();
        assert!(
            message.contains(&shown[..20]) && message.contains("binlog_format=ROW"),
            "{statement}: {message}"
        );
    }

    // Logged as rows, the same kinds of change are events: nothing stops.
    let from = world.db.position().await;
    world
        .db
        .admin(&[
            "INSERT INTO other.t2 VALUES (8, 'fires the trigger')",
            "CREATE TABLE shop.y SELECT id FROM shop.orders WHERE id = 108",
            "UPDATE other.t2 JOIN shop.orders o ON o.id = t2.id + 100 SET o.status = 'joined' WHERE t2.id = 8",
        ])
        .await;
    let daemon = world
        .daemon(
            world.config(&[]),
            StartFrom::Position(from.parse().unwrap()),
        )
        .await;
    let events = shop(&world.kinesis.wait_for_events(&world.stream, 3).await);
    // In order per table (the partition key); tables interleave as their records go out.
    let mut got: Vec<_> = events
        .iter()
        .map(|e| (e.table.clone(), e.op, ids(std::slice::from_ref(e))[0]))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("orders".to_owned(), Op::Insert, 108),
            ("orders".to_owned(), Op::Update, 108),
            ("y".to_owned(), Op::Insert, 108),
        ]
    );
    daemon.stop().await.unwrap();
}

/// Without FULL row metadata (MINIMAL, then NO_LOG), names, signedness, collations, labels and
/// the primary key come from information_schema, refreshed after DDL; a binlog older than the
/// table's current shape stops the daemon instead of being named wrongly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_full_row_metadata_the_schema_comes_from_information_schema() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "SET GLOBAL binlog_row_metadata = 'MINIMAL'",
            "CREATE DATABASE shop",
            "CREATE TABLE shop.m (id INT UNSIGNED, k2 VARCHAR(5) CHARACTER SET latin1, \
             status ENUM('new','it''s paid'), tags SET('a','b'), bin VARBINARY(4), n TINYINT, \
             PRIMARY KEY (id, k2))",
        ])
        .await;
    // Without it, information_schema hides the table from the replication user.
    let daemon = world.daemon(world.config(&[]), StartFrom::Checkpoint).await;
    world.wait_replicating().await;
    world
        .db
        .admin(&["INSERT INTO shop.m VALUES (1, 'a', 'new', '', NULL, 0)"])
        .await;
    let error = daemon.task.await.unwrap().unwrap_err();
    let message = binlog_kinesis::report::error_chain(&error);
    assert!(message.contains("GRANT SELECT ON shop.*"), "{message}");
    world
        .db
        .admin(&["DELETE FROM shop.m", "GRANT SELECT ON shop.* TO 'cdc'@'%'"])
        .await;
    std::fs::remove_file(world.checkpoint_path()).ok();
    // Streaming only: with SELECT granted, a first start would snapshot the (empty) table.
    let daemon = world
        .running_daemon(&[("BINLOG_KINESIS__SNAPSHOT__MODE", "never")])
        .await;
    world
        .db
        .admin(&[
            "SET NAMES utf8mb4",
            "INSERT INTO shop.m VALUES (4000000000, 'é', 'it''s paid', 'a,b', 0x00ff, -5)",
            "UPDATE shop.m SET n = 7 WHERE id = 4000000000",
        ])
        .await;
    // The daemon must read those before the table changes: the catalog describes tables as
    // they are now (the documented limit, shown at the end).
    world.shop_events(2).await;
    world
        .db
        .admin(&[
            "ALTER TABLE shop.m ADD COLUMN note VARCHAR(10) AFTER id",
            "SET GLOBAL binlog_row_metadata = 'NO_LOG'",
        ])
        .await;
    world
        .db
        .admin(&["INSERT INTO shop.m VALUES (1, 'hi', 'x', 'new', '', NULL, 0)"])
        .await;
    let events = shop(&world.kinesis.wait_for_events(&world.stream, 3).await);
    let row = json!({"id": 4000000000u64, "k2": "é", "status": "it's paid", "tags": ["a", "b"], "bin": "AP8=", "n": -5});
    let mut updated = row.clone();
    updated["n"] = json!(7);
    assert_eq!(
        events.iter().map(summary).collect::<Vec<_>>(),
        vec![
            (Op::Insert, "m".into(), Value::Null, row.clone()),
            (Op::Update, "m".into(), row, updated),
            (
                Op::Insert,
                "m".into(),
                Value::Null,
                json!({"id": 1, "note": "hi", "k2": "x", "status": "new", "tags": [], "bin": null, "n": 0})
            ),
        ]
    );
    assert_eq!(
        events[0].primary_key.clone().map(Value::Object),
        Some(json!({"id": 4000000000u64, "k2": "é"}))
    );
    let stopped_at = daemon.stop().await.unwrap().committed.unwrap();

    // An insert logged with the 8-column table, then a column dropped before the daemon reads
    // it: the catalog has 7 columns now, and the daemon says so rather than shift names.
    world
        .db
        .admin(&[
            "INSERT INTO shop.m VALUES (2, 'later', 'y', 'new', 'a', NULL, 1)",
            "ALTER TABLE shop.m DROP COLUMN note",
        ])
        .await;
    let error = world
        .daemon(world.config(&[]), StartFrom::Position(stopped_at.position))
        .await
        .task
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.exit_code(), 7, "{error}");
    let message = binlog_kinesis::report::error_chain(&error);
    assert!(
        message.contains("shop.m") && message.contains("binlog_row_metadata=FULL"),
        "{message}"
    );
}

/// TRUNCATE TABLE has no row images; it becomes one `truncate` event, in order with the
/// table's rows, and only for captured tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_table_is_a_truncate_event_in_order() {
    let world = World::new().await;
    world.create_shop_t().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE other",
            "CREATE TABLE other.t (id INT PRIMARY KEY)",
        ])
        .await;
    let daemon = world.running_daemon(&[]).await;
    world.insert_t(0..2, 1).await;
    world
        .db
        .admin(&[
            "TRUNCATE TABLE shop.t",
            "USE shop",
            "TRUNCATE t",
            "TRUNCATE TABLE other.t",
            "INSERT INTO shop.t VALUES (5)",
        ])
        .await;
    let events = shop(&world.kinesis.wait_for_events(&world.stream, 5).await);
    let ops: Vec<(Op, Option<i64>)> = events
        .iter()
        .map(|e| (e.op, e.after.as_ref().map(|a| a["id"].as_i64().unwrap())))
        .collect();
    assert_eq!(
        ops,
        vec![
            (Op::Insert, Some(0)),
            (Op::Insert, Some(1)),
            (Op::Truncate, None),
            (Op::Truncate, None),
            (Op::Insert, Some(5)),
        ]
    );
    let truncate = &events[2];
    assert_eq!(
        (truncate.database.as_str(), truncate.table.as_str()),
        ("shop", "t")
    );
    assert!(truncate.commit && truncate.before.is_none() && truncate.primary_key.is_none());
    daemon.stop().await.unwrap();
}

/// Regression (issue 11, item 3): an XA transaction used to stop the daemon (exit 7 at its
/// XA_PREPARE event, on every restart). Its rows now arrive at its XA COMMIT, after what
/// committed in between, and never after XA ROLLBACK; ONE PHASE is an ordinary transaction. A
/// transaction prepared before a clean stop is read again on restart (the checkpoint lists it)
/// and sent at its commit, with nothing else repeated; a reconnect while it is prepared keeps
/// it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_transactions_arrive_at_their_commit_across_restarts_and_reconnects() {
    use mysql_async::prelude::Queryable;
    let world = World::new().await;
    world.create_shop_t().await;
    let prepare = async |xid: &str, id: i64| {
        world
            .db
            .admin(&[
                &format!("XA START '{xid}'"),
                &format!("INSERT INTO shop.t VALUES ({id})"),
                &format!("XA END '{xid}'"),
                &format!("XA PREPARE '{xid}'"),
            ])
            .await
    };
    let insert = async |id: i64| {
        world
            .db
            .admin(&[&format!("INSERT INTO shop.t VALUES ({id})")])
            .await
    };
    let daemon = world.running_daemon(&[]).await;
    prepare("x1", 1).await;
    insert(2).await;
    world.db.admin(&["XA COMMIT 'x1'"]).await;
    world
        .db
        .admin(&[
            "XA START 'x2'",
            "INSERT INTO shop.t VALUES (3)",
            "XA END 'x2'",
            "XA COMMIT 'x2' ONE PHASE",
        ])
        .await;
    prepare("x3", 4).await;
    world.db.admin(&["XA ROLLBACK 'x3'"]).await;
    // Prepared, then a clean stop while it is undecided.
    prepare("x5", 6).await;
    insert(7).await;
    assert_eq!(ids(&world.shop_events(4).await), [2, 1, 3, 7]);
    world.wait_replicating().await;
    daemon.stop().await.unwrap();
    let checkpoint = std::fs::read_to_string(world.checkpoint_path()).unwrap();
    assert!(checkpoint.contains("xa_prepared"), "{checkpoint}");

    let daemon = world.running_daemon(&[]).await;
    // A reconnect while x5 and x6 are prepared.
    prepare("x6", 8).await;
    world.wait_replicating().await;
    let mut conn = world.db.root().await;
    let dump: Vec<u64> = conn
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap();
    conn.query_drop(format!("KILL {}", dump[0])).await.unwrap();
    drop(conn);
    world.db.admin(&["XA COMMIT 'x5'"]).await;
    insert(9).await;
    world.db.admin(&["XA COMMIT 'x6'"]).await;
    let events = world.shop_events(7).await;
    assert_eq!(
        ids(&events),
        [2, 1, 3, 7, 6, 9, 8],
        "nothing lost, nothing repeated"
    );
    // The rows of an XA transaction close with commit: true on the last.
    let six = events
        .iter()
        .find(|e| ids(std::slice::from_ref(e)) == [6])
        .unwrap();
    assert!(six.commit, "{six:?}");
    world.wait_replicating().await;
    daemon.stop().await.unwrap();
    let checkpoint = std::fs::read_to_string(world.checkpoint_path()).unwrap();
    assert!(!checkpoint.contains("xa_prepared"), "{checkpoint}");
}
