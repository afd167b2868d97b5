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
        if event.position.try_cmp(at) != Some(std::cmp::Ordering::Less) {
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
            .read_chunk_consistent(&mut conn, None, 1000)
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
