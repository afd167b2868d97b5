//! `binlog-kinesis tail` for scripts (issue 16, item 5): only some tables' lines, from a
//! moment, and an exit after so many lines or so long without new records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use binlog_kinesis::app::StartFrom;
use serde_json::Value;

use crate::harness::World;

/// `tail` with `args`, against the world's stream: its exit code and `(table, id)` of each
/// line it printed.
fn tail(world: &World, args: &[&str]) -> (Option<i32>, Vec<(String, i64)>, String) {
    let output = world.command("tail").args(args).output().unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            let id = line["after"]["id"].as_i64().unwrap_or(-1);
            (line["table"].as_str().unwrap().to_owned(), id)
        })
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), lines, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_keeps_some_tables_starts_at_a_moment_and_stops_after_a_count() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.a (id INT PRIMARY KEY)",
            "CREATE TABLE shop.b (id INT PRIMARY KEY)",
        ])
        .await;
    let daemon = world.daemon(world.config(&[]), StartFrom::Checkpoint).await;
    world.wait_replicating().await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.a VALUES (1), (2), (3)",
            "INSERT INTO shop.b VALUES (1)",
        ])
        .await;
    // Acknowledged by Kinesis once the checkpoint is past them: they arrived before now.
    world.wait_replicating().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let between = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    world
        .db
        .admin(&[
            "INSERT INTO shop.a VALUES (4)",
            "INSERT INTO shop.b VALUES (2), (3)",
        ])
        .await;
    world.wait_replicating().await;
    daemon.stop().await.unwrap();
    let a = |id| ("a".to_owned(), id);
    let b = |id| ("b".to_owned(), id);

    let (code, lines, err) = tail(
        &world,
        &[
            "--from-start",
            "--table",
            "shop.a",
            "--idle-exit-ms",
            "1500",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines, [a(1), a(2), a(3), a(4)]);

    let (code, lines, err) = tail(
        &world,
        &["--from-start", "--table", "shop.b,other.*", "--count", "2"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines, [b(1), b(2)], "exits after two lines");

    let (code, mut lines, err) = tail(
        &world,
        &["--from-timestamp", &between, "--idle-exit-ms", "1500"],
    );
    assert_eq!(code, Some(0), "{err}");
    lines.sort();
    assert_eq!(
        lines,
        [a(4), b(2), b(3)],
        "only what arrived after the moment"
    );

    let (code, _, err) = tail(&world, &["--from-timestamp", "yesterday"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, _, err) = tail(&world, &["--table", "nodot", "--idle-exit-ms", "100"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("DATABASE.TABLE"), "{err}");
}
