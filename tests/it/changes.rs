//! `[changes]` filters (issue 15) against MariaDB and the emulator: the changes a rule leaves
//! out are absent, the others present in order; every filtered change is counted; the
//! checkpoint moves through a stretch of nothing but filtered changes, and a restart after it
//! does not read it again.

use std::time::Duration;

use binlog_kinesis::{app::StartFrom, event::Op, position::BinlogPosition};
use serde_json::{json, Value};

use crate::harness::{eventually, free_port, http_get, prometheus_value, World};

const RULES: &str = r#"[{tables = ["shop.products"], emit_update_when_changed = ["price", "stock"], ops = ["insert", "update"]}, {tables = ["shop.audit"], ops = ["insert"]}, {tables = ["shop.*"], ops = ["insert", "update", "delete"]}]"#;

/// The counters of the daemon listening on `port`.
async fn filtered(port: u16) -> (f64, f64) {
    eventually(Duration::from_secs(10), async || {
        let (_, body) = http_get(port, "/metrics").await?;
        Some((
            prometheus_value(&body, "binlog_kinesis_events_filtered_by_op_total")?,
            prometheus_value(&body, "binlog_kinesis_events_filtered_unchanged_total")?,
        ))
    })
    .await
}

/// Waits until the checkpoint is at or past `position`.
async fn checkpoint_reaches(world: &World, position: &BinlogPosition) {
    eventually(Duration::from_secs(60), async || {
        let text = std::fs::read_to_string(world.checkpoint_path()).ok()?;
        let saved: Value = serde_json::from_str(&text).ok()?;
        let at: BinlogPosition = saved["position"].as_str()?.parse().ok()?;
        (at.try_cmp(position) != Some(std::cmp::Ordering::Less)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_filters_leave_out_what_they_name_count_it_and_move_the_checkpoint() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.products (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2), stock INT, updated_at DATETIME)",
            "CREATE TABLE shop.audit (id INT PRIMARY KEY, what VARCHAR(20))",
            "CREATE TABLE shop.orders (id INT PRIMARY KEY, v INT)",
        ])
        .await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let settings = [
        ("BINLOG_KINESIS__CHANGES__RULES", RULES),
        ("BINLOG_KINESIS__HTTP__LISTEN", listen.as_str()),
    ];
    let daemon = world
        .daemon(world.config(&settings), StartFrom::Checkpoint)
        .await;
    world.wait_replicating().await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.products VALUES (1, 'pen', 1.50, 10, '2026-01-01 00:00:00'), (2, 'ink', 3.00, 7, '2026-01-01 00:00:00')",
            "INSERT INTO shop.audit VALUES (1, 'login')",
            "INSERT INTO shop.orders VALUES (1, 1)",
            "UPDATE shop.products SET updated_at = '2026-01-02 00:00:00' WHERE id = 1",
            "UPDATE shop.products SET price = 1.75, updated_at = '2026-01-03 00:00:00' WHERE id = 1",
            "UPDATE shop.products SET name = 'ink2' WHERE id = 2",
            "UPDATE shop.products SET stock = 6 WHERE id = 2",
            "DELETE FROM shop.products WHERE id = 2",
            "UPDATE shop.audit SET what = 'logout' WHERE id = 1",
            "DELETE FROM shop.audit WHERE id = 1",
            "UPDATE shop.orders SET v = 2 WHERE id = 1",
            "DELETE FROM shop.orders WHERE id = 1",
            "TRUNCATE TABLE shop.orders",
            "TRUNCATE TABLE shop.audit",
        ])
        .await;
    // A long stretch of nothing but filtered changes, and nothing after it: the checkpoint
    // must still get to its end.
    let stretch: Vec<String> = (0..200)
        .map(|n| format!("UPDATE shop.products SET updated_at = '2026-02-01 00:00:00' + INTERVAL {n} SECOND WHERE id = 1"))
        .collect();
    world
        .db
        .admin(&stretch.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let end: BinlogPosition = world.db.position().await.parse().unwrap();
    checkpoint_reaches(&world, &end).await;
    // By op: the products delete, the audit update and delete, the audit TRUNCATE (the
    // orders TRUNCATE is not in the catch-all rule's ops either). Unchanged: the first
    // updated_at update, the name update, the stretch.
    assert_eq!(filtered(port).await, (5.0, 202.0));
    daemon.stop().await.unwrap();

    let events = world.kinesis.events(&world.stream).await;
    let of = |table: &str, id: i64| -> Vec<(Op, Option<Value>)> {
        events
            .iter()
            .filter(|e| e.table == table)
            .filter(|e| {
                let image = e.after.as_ref().or(e.before.as_ref());
                image.is_some_and(|i| i.get("id") == Some(&json!(id)))
            })
            .map(|e| {
                let price = e.after.as_ref().and_then(|a| a.get("price").cloned());
                (e.op, price)
            })
            .collect()
    };
    assert_eq!(
        of("products", 1),
        [
            (Op::Insert, Some(json!("1.50"))),
            (Op::Update, Some(json!("1.75")))
        ]
    );
    let ink: Vec<Op> = of("products", 2).into_iter().map(|(op, _)| op).collect();
    assert_eq!(
        ink,
        [Op::Insert, Op::Update],
        "the stock update, not the name update nor the delete"
    );
    let audit: Vec<Op> = of("audit", 1).into_iter().map(|(op, _)| op).collect();
    assert_eq!(audit, [Op::Insert]);
    let orders: Vec<Op> = of("orders", 1).into_iter().map(|(op, _)| op).collect();
    assert_eq!(orders, [Op::Insert, Op::Update, Op::Delete]);
    assert!(
        !events.iter().any(|e| e.op == Op::Truncate),
        "no rule sends a TRUNCATE here"
    );

    // A restart reads on from the end of the stretch: nothing of it again.
    let daemon = world
        .daemon(world.config(&settings), StartFrom::Checkpoint)
        .await;
    world
        .db
        .admin(&["UPDATE shop.products SET stock = 9 WHERE id = 1"])
        .await;
    world.wait_replicating().await;
    assert_eq!(filtered(port).await, (0.0, 0.0));
    daemon.stop().await.unwrap();
    let again: Vec<Op> = world
        .kinesis
        .events(&world.stream)
        .await
        .iter()
        .filter(|e| e.table == "products")
        .map(|e| e.op)
        .collect();
    assert_eq!(
        again,
        [Op::Insert, Op::Insert, Op::Update, Op::Update, Op::Update]
    );
}

/// A watched column the table does not have stops the run with exit code 2 at the table's
/// first change, naming it: a typo there would drop every update. When the account can see
/// the table, `check` fails on it and `run` stops at startup, before streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_filter_watching_a_missing_column_stops_the_run() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.products (id INT PRIMARY KEY, price INT)",
        ])
        .await;
    let rules = r#"[{tables = ["shop.products"], emit_update_when_changed = ["prize"]}]"#;
    let mut daemon = world
        .run_command()
        .env("BINLOG_KINESIS__CHANGES__RULES", rules)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    world.wait_replicating().await;
    world
        .db
        .admin(&["INSERT INTO shop.products VALUES (1, 2)"])
        .await;
    let status = daemon.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut daemon.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("emit_update_when_changed names column prize"),
        "{err}"
    );
    let events = world.kinesis.events(&world.stream).await;
    assert!(events.iter().all(|e| e.table != "products"), "{events:?}");

    world
        .db
        .admin(&["GRANT SELECT ON shop.* TO 'cdc'@'%'"])
        .await;
    let check = world
        .command("check")
        .env("BINLOG_KINESIS__CHANGES__RULES", rules)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{out}");
    assert!(
        out.contains("FAIL  column rules: [changes] rule of shop.products: emit_update_when_changed names column prize"),
        "{out}"
    );
    let run = world
        .run_command()
        .env("BINLOG_KINESIS__CHANGES__RULES", rules)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "at startup: {err}");
    assert!(err.contains("names column prize"), "{err}");
}
