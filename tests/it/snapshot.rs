//! Snapshots against a live MariaDB (issue 14): what a consistent chunk read sees, and where
//! in the binlog that is.

use std::collections::BTreeMap;

use binlog_kinesis::{
    event::{ChangeEvent, Op},
    position::BinlogPosition,
    source::{connect, snapshot},
};
use mysql_async::prelude::Queryable;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use serde_json::Value;

use crate::harness::World;

/// The state of `shop.items` after the stream's events that start before `at`, by id.
fn state_before(events: &[ChangeEvent], at: &BinlogPosition) -> BTreeMap<i64, Value> {
    let mut state = BTreeMap::new();
    for event in events {
        if event.position.try_cmp(at) != Some(std::cmp::Ordering::Less)
            || matches!(event.op, Op::SnapshotStart | Op::SnapshotEnd)
        {
            continue;
        }
        let image = event.after.as_ref().or(event.before.as_ref()).unwrap();
        let id = image["id"].as_i64().unwrap();
        match event.op {
            Op::Insert | Op::Update => {
                state.insert(id, Value::Object(event.after.clone().unwrap()));
            }
            Op::Delete => {
                state.remove(&id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    state
}

/// While a writer inserts, updates and deletes single rows, each consistent chunk read holds
/// exactly the rows that the changes before its reported binlog position leave: its position
/// is where its rows belong in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_chunk_holds_exactly_the_changes_before_its_position() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL)",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    let daemon = world.running_daemon(&[]).await;

    const WRITES: usize = 400;
    let mut writer_conn = world.db.root().await;
    let writer = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(14);
        let mut present = std::collections::BTreeSet::new();
        for n in 0..WRITES {
            let id: i64 = rng.random_range(1..=40);
            // Every statement changes exactly one row, so the stream has one event per write.
            let statement = if !present.contains(&id) {
                present.insert(id);
                format!("INSERT INTO shop.items VALUES ({id}, {n})")
            } else if rng.random_bool(0.3) {
                present.remove(&id);
                format!("DELETE FROM shop.items WHERE id = {id}")
            } else {
                format!("UPDATE shop.items SET v = {n} WHERE id = {id}")
            };
            writer_conn.query_drop(statement).await.unwrap();
        }
    });

    let mysql = world.config(&[]).mysql;
    let mut conn = connect::connect(&mysql).await.unwrap();
    snapshot::prepare_connection(&mut conn).await.unwrap();
    let table = snapshot::SnapshotTable::describe(&mut conn, "shop", "items")
        .await
        .unwrap();
    let mut reads = Vec::new();
    while !writer.is_finished() {
        let (at, chunk) = table
            .read_chunk_consistent(&mut conn, None, 1000, usize::MAX)
            .await
            .unwrap();
        let rows: BTreeMap<i64, Value> = chunk
            .rows
            .iter()
            .map(|row| {
                let after: Value = serde_json::from_slice(&row.after).unwrap();
                (after["id"].as_i64().unwrap(), after)
            })
            .collect();
        reads.push((at, rows));
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    writer.await.unwrap();
    let events = world.shop_events(WRITES).await;
    daemon.stop().await.unwrap();

    assert!(reads.len() >= 5, "only {} reads", reads.len());
    let distinct: std::collections::BTreeSet<String> =
        reads.iter().map(|(at, _)| at.to_string()).collect();
    assert!(
        distinct.len() >= 3,
        "the reads saw too few binlog positions: {distinct:?}"
    );
    for (at, rows) in &reads {
        assert_eq!(rows, &state_before(&events, at), "read at {at}");
    }
}

/// The driver reads the chunk it is asked for and nothing else (never ahead), in key order
/// from the key given, marks each table's last chunk, and reports non-decreasing positions;
/// an empty table is one empty last chunk, and a table of a whole number of chunks ends with
/// an empty one. A byte budget cuts a chunk short without ending the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_reads_each_asked_chunk_once_in_key_order() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.a (id INT PRIMARY KEY, v INT)",
            "INSERT INTO shop.a SELECT seq, seq * 2 FROM shop.seq_1_to_1000",
            "CREATE TABLE shop.b (id INT PRIMARY KEY)",
            "CREATE TABLE shop.c (region VARCHAR(8), id INT, PRIMARY KEY (region, id))",
            "INSERT INTO shop.c SELECT IF(seq % 2 = 0, 'eu', 'us'), seq FROM shop.seq_1_to_128",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    let mut config = snapshot::DriverConfig::new(&world.config(&[]), true);
    config.chunk_rows = 64;
    config.chunk_bytes = usize::MAX;
    let (asks_tx, asks_rx) = tokio::sync::mpsc::channel(1);
    let (arrivals_tx, mut arrivals_rx) = tokio::sync::mpsc::channel(1);
    let driver = tokio::spawn(snapshot::serve(config, 0, asks_rx, arrivals_tx));
    let mut arrivals = Vec::new();
    for table in ["a", "b", "c"] {
        let mut after = None;
        loop {
            let ask = snapshot::Ask {
                table: binlog_kinesis::event::TableName::new("shop", table),
                after: after.take(),
                ddl_epoch: 0,
            };
            asks_tx.send(ask).await.unwrap();
            let arrival = arrivals_rx.recv().await.unwrap().unwrap();
            // Nothing is read without an ask.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert!(arrivals_rx.try_recv().is_err(), "read ahead of the asks");
            after = arrival.chunk.last_key.clone();
            let done = arrival.done;
            arrivals.push(arrival);
            if done {
                break;
            }
        }
    }
    drop(asks_tx);
    driver.await.unwrap();

    let mut previous: Option<BinlogPosition> = None;
    for arrival in &arrivals {
        if let Some(previous) = &previous {
            assert_ne!(arrival.at.try_cmp(previous), Some(std::cmp::Ordering::Less));
        }
        previous = Some(arrival.at.clone());
    }
    let of = |table: &str| -> Vec<&snapshot::Arrival> {
        arrivals
            .iter()
            .filter(|a| a.table.to_string() == format!("shop.{table}"))
            .collect()
    };
    let ids = |chunks: &[&snapshot::Arrival]| -> Vec<Value> {
        chunks
            .iter()
            .flat_map(|a| &a.chunk.rows)
            .map(|row| serde_json::from_slice::<Value>(&row.primary_key).unwrap())
            .collect()
    };
    let a = of("a");
    assert_eq!(a.len(), 16, "15 full chunks and one of 40 rows");
    assert!(a[..15].iter().all(|c| !c.done) && a[15].done);
    let expected: Vec<Value> = (1..=1000)
        .map(|id| serde_json::json!({ "id": id }))
        .collect();
    assert_eq!(ids(&a), expected);
    let b = of("b");
    assert_eq!(b.len(), 1);
    assert!(b[0].done && b[0].chunk.rows.is_empty());
    let c = of("c");
    assert_eq!(c.len(), 3, "two full chunks, then an empty last one");
    assert!(c[2].done && c[2].chunk.rows.is_empty());
    let mut expected: Vec<(String, i64)> = (1..=128)
        .map(|id| (if id % 2 == 0 { "eu" } else { "us" }.to_owned(), id))
        .collect();
    expected.sort();
    let got: Vec<(String, i64)> = ids(&c)
        .iter()
        .map(|k| {
            (
                k["region"].as_str().unwrap().to_owned(),
                k["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected, "every row once, in key order");
}

/// A table without a consistent read (MyISAM) is refused by name, never read inconsistently
/// or guessed at; a table without a primary key is read (in one consistent read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_a_snapshot_cannot_read_consistently_are_refused_by_name() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.old (id INT PRIMARY KEY) ENGINE=MyISAM",
            "CREATE TABLE shop.loose (v INT) ENGINE=InnoDB",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    let mysql = world.config(&[]).mysql;
    let mut conn = connect::connect(&mysql).await.unwrap();
    let loose = snapshot::SnapshotTable::describe(&mut conn, "shop", "loose")
        .await
        .unwrap();
    assert!(loose.is_keyless());
    for (table, expected) in [
        ("old", "uses the MyISAM engine"),
        ("missing", "is not in information_schema"),
    ] {
        let error = snapshot::SnapshotTable::describe(&mut conn, "shop", table)
            .await
            .unwrap_err();
        let message = binlog_kinesis::report::error_chain(&error);
        assert!(
            message.contains(&format!("shop.{table}")) && message.contains(expected),
            "{message}"
        );
    }
}
