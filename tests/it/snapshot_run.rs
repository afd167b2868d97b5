//! Snapshots as `run` does them (issue 14): the rows a table has, read chunk by chunk while
//! writers change it, end up in the stream so that folding it per key gives exactly the
//! table; SIGTERM and `kill -9` in the middle resume instead of starting over.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Child, Command},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use binlog_kinesis::{
    app::StartFrom,
    event::{ChangeEvent, Op},
};
use mysql_async::prelude::Queryable;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use serde_json::Value;

use crate::harness::{eventually, World};

/// Settings that make a snapshot of [`ROWS`] rows take seconds, so that a stop lands in its
/// middle: few events per record (one record of a key in flight at a time, so records per
/// second bound the rate) and a small producer buffer (the reader waits for it).
const SLOW: &[(&str, &str)] = &[
    ("BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD", "40"),
    ("BINLOG_KINESIS__KINESIS__MAX_BUFFERED_BYTES", "262144"),
    ("BINLOG_KINESIS__KINESIS__MAX_RECORD_BYTES", "65536"),
];

/// Rows `shop.items` starts with.
const ROWS: i64 = 20_000;

/// Creates `shop.items` with [`ROWS`] rows and lets the daemon's account read it.
async fn items(world: &World) {
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(20))",
            &format!("INSERT INTO shop.items SELECT seq, seq % 97, IF(seq % 5 = 0, NULL, CONCAT('n', seq)) FROM shop.seq_1_to_{ROWS}"),
            "CREATE TABLE shop.empty (id INT PRIMARY KEY)",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
}

/// Writes random single-row and two-row transactions into `shop.items` until `stop` is set:
/// updates, inserts, deletes, delete-then-reinsert in one transaction, a few hot keys
/// changed over and over, and (with `move_keys`) updates that change a row's key. Returns how
/// many transactions it wrote.
async fn writers(
    world: &World,
    stop: Arc<AtomicBool>,
    move_keys: bool,
) -> tokio::task::JoinHandle<u64> {
    let mut conn = world.db.root().await;
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(1414);
        let mut written = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = rng.random_range(1..=ROWS + 2_000);
            let hot = rng.random_range(1..=5);
            let v = rng.random_range(0..1_000_000);
            let statements = match rng.random_range(0..10) {
                0..=2 => vec![format!("UPDATE shop.items SET v = {v} WHERE id = {id}")],
                3 => vec![format!(
                    "UPDATE shop.items SET v = {v}, note = 'hot' WHERE id = {hot}"
                )],
                4 => vec![format!(
                    "INSERT IGNORE INTO shop.items VALUES ({id}, {v}, 'new')"
                )],
                5 => vec![format!("DELETE FROM shop.items WHERE id = {id}")],
                6 | 7 => vec![
                    "BEGIN".to_owned(),
                    format!("DELETE FROM shop.items WHERE id = {id}"),
                    format!("INSERT INTO shop.items VALUES ({id}, {v}, 'again')"),
                    "COMMIT".to_owned(),
                ],
                8 if move_keys => vec![format!(
                    "UPDATE IGNORE shop.items SET id = id + 100000 WHERE id = {id}"
                )],
                _ => vec![format!("UPDATE shop.items SET v = v + 1 WHERE id = {hot}")],
            };
            for statement in statements {
                conn.query_drop(statement).await.unwrap();
            }
            written += 1;
        }
        written
    })
}

/// The checkpoint's snapshot part, when there is one.
fn saved_snapshot(world: &World) -> Option<Value> {
    let text = std::fs::read_to_string(world.checkpoint_path()).ok()?;
    let checkpoint: Value = serde_json::from_str(&text).ok()?;
    checkpoint.get("snapshot").cloned()
}

/// Waits until the checkpoint says the snapshot has no table left to read.
async fn snapshot_done(world: &World) {
    eventually(Duration::from_secs(180), async || {
        let snapshot = saved_snapshot(world)?;
        snapshot.get("pending").is_none().then_some(())
    })
    .await;
}

/// Waits until the snapshot is done, stops the writers, waits until the daemon has streamed
/// all they wrote, and stops it: how many transactions they wrote.
async fn finish_under_writers(
    world: &World,
    daemon: crate::harness::Daemon,
    stop: &AtomicBool,
    writer: tokio::task::JoinHandle<u64>,
) -> u64 {
    snapshot_done(world).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    caught_up(world).await;
    daemon.stop().await.unwrap();
    written
}

/// Waits until the checkpoint shows the snapshot of `shop.items` at least `rows` rows in.
async fn snapshot_rows(world: &World, rows: u64) {
    eventually(Duration::from_secs(120), async || {
        let snapshot = saved_snapshot(world)?;
        let first = snapshot.get("pending")?.get(0)?;
        (first["table"] == "shop.items" && first["rows"].as_u64()? >= rows).then_some(())
    })
    .await;
}

/// `shop.items` as it is, by id: the rows as the stream writes them.
async fn table(world: &World) -> BTreeMap<i64, Value> {
    let mut conn = world.db.root().await;
    let rows: Vec<(i64, i64, Option<String>)> = conn
        .query("SELECT id, v, note FROM shop.items")
        .await
        .unwrap();
    rows.into_iter()
        .map(|(id, v, note)| (id, serde_json::json!({"id": id, "v": v, "note": note})))
        .collect()
}

/// What a consumer ends with, applying the stream's events of `shop.items` in order.
fn fold(events: &[&ChangeEvent]) -> BTreeMap<i64, Value> {
    let id = |image: &Option<serde_json::Map<String, Value>>| {
        image.as_ref().map(|i| i["id"].as_i64().unwrap())
    };
    let mut state = BTreeMap::new();
    for event in events {
        match event.op {
            Op::Insert | Op::Update | Op::Read => {
                if let Some(before) = id(&event.before) {
                    state.remove(&before);
                }
                let after = event.after.clone().unwrap();
                state.insert(after["id"].as_i64().unwrap(), Value::Object(after));
            }
            Op::Delete => {
                state.remove(&id(&event.before).unwrap());
            }
            Op::Truncate => state.clear(),
            Op::SnapshotStart | Op::SnapshotEnd | Op::Ddl => {}
        }
    }
    state
}

/// Writes a marker transaction and waits until the daemon's checkpoint is past it: everything
/// before it is in the stream.
async fn caught_up(world: &World) {
    world.wait_replicating().await;
}

/// The stream's events of `shop.items`.
async fn item_events(world: &World) -> Vec<ChangeEvent> {
    world
        .kinesis
        .events(&world.stream)
        .await
        .into_iter()
        .filter(|e| e.database == "shop" && e.table == "items")
        .collect()
}

/// The state invariant, for both partitionings and both ways of placing chunks (MariaDB's
/// consistent-snapshot position, and watermarks as on MySQL): while writers change the table
/// during the whole snapshot, the stream folded per key in order is exactly the table; the table's rows
/// are each read once, between its `snapshot_start` and a `snapshot_end` that counts them; an
/// empty table gets both markers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_under_concurrent_writes_folds_to_the_table() {
    for (partition_by, method) in [
        ("table", "consistent_snapshot"),
        ("primary_key", "consistent_snapshot"),
        ("table", "watermark"),
        ("primary_key", "watermark"),
    ] {
        let world = World::new().await;
        items(&world).await;
        world
            .db
            .admin(&[
                "CREATE DATABASE cdc",
                "CREATE TABLE cdc.signals (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048))",
                "GRANT SELECT, INSERT, UPDATE ON cdc.signals TO 'cdc'@'%'",
            ])
            .await;
        let stop = Arc::new(AtomicBool::new(false));
        let writer = writers(&world, Arc::clone(&stop), partition_by == "table").await;
        let mut settings = SLOW.to_vec();
        settings.push(("BINLOG_KINESIS__SNAPSHOT__CHUNK_ROWS", "700"));
        settings.push(("BINLOG_KINESIS__KINESIS__PARTITION_BY", partition_by));
        settings.push(("BINLOG_KINESIS__SNAPSHOT__METHOD", method));
        settings.push(("BINLOG_KINESIS__SNAPSHOT__SIGNAL_TABLE", "cdc.signals"));
        let config = world.config(&settings);
        let daemon = world.daemon(config, StartFrom::Checkpoint).await;
        let written = finish_under_writers(&world, daemon, &stop, writer).await;

        let events = item_events(&world).await;
        let all: Vec<&ChangeEvent> = events.iter().collect();
        assert_eq!(
            fold(&all),
            table(&world).await,
            "partition_by {partition_by}, {method}"
        );
        let reads: Vec<&ChangeEvent> = events.iter().filter(|e| e.op == Op::Read).collect();
        let keys: BTreeSet<i64> = reads
            .iter()
            .map(|e| e.after.as_ref().unwrap()["id"].as_i64().unwrap())
            .collect();
        assert_eq!(keys.len(), reads.len(), "a row read twice");
        let markers: Vec<&ChangeEvent> = events
            .iter()
            .filter(|e| matches!(e.op, Op::SnapshotStart | Op::SnapshotEnd))
            .collect();
        assert_eq!(markers.len(), 2, "{markers:?}");
        assert_eq!(markers[0].op, Op::SnapshotStart);
        assert_eq!(markers[1].op, Op::SnapshotEnd);
        assert_eq!(
            markers[1].after.as_ref().unwrap()["rows"].as_u64(),
            Some(reads.len() as u64)
        );
        // Some rows were dropped because a change overtook them, most were read.
        assert!(reads.len() as i64 > ROWS / 2, "{} rows read", reads.len());
        assert!(written > 200, "the writers wrote {written} transactions");
        eprintln!("partition_by {partition_by}, {method}: {written} transactions written during the snapshot, {} rows read", reads.len());
        let empty: Vec<Op> = world
            .kinesis
            .events(&world.stream)
            .await
            .into_iter()
            .filter(|e| e.table == "empty")
            .map(|e| e.op)
            .collect();
        assert_eq!(empty, [Op::SnapshotStart, Op::SnapshotEnd]);
    }
}

/// SIGTERM in the middle of a snapshot: the run ends cleanly, the restart goes on after the
/// last row acknowledged, and no row is read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_mid_snapshot_resumes_without_repeating_a_row() {
    let world = World::new().await;
    items(&world).await;
    let mut settings = SLOW.to_vec();
    settings.push(("BINLOG_KINESIS__SNAPSHOT__CHUNK_ROWS", "500"));
    let config = || world.config(&settings);
    let daemon = world.daemon(config(), StartFrom::Checkpoint).await;
    snapshot_rows(&world, 2_000).await;
    daemon.stop().await.unwrap();
    let saved = saved_snapshot(&world).unwrap();
    let stopped_at = saved["pending"][0]["rows"].as_u64().unwrap();
    assert!(
        stopped_at < ROWS as u64,
        "stopped after the snapshot: {saved}"
    );
    world
        .db
        .admin(&["UPDATE shop.items SET v = -1 WHERE id IN (1, 19999)"])
        .await;

    let daemon = world.daemon(config(), StartFrom::Checkpoint).await;
    snapshot_done(&world).await;
    caught_up(&world).await;
    daemon.stop().await.unwrap();

    let events = item_events(&world).await;
    let reads: Vec<&ChangeEvent> = events.iter().filter(|e| e.op == Op::Read).collect();
    let ids: Vec<i64> = reads
        .iter()
        .map(|e| e.after.as_ref().unwrap()["id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=ROWS).collect();
    if ids != expected {
        let first = ids.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "each row once, in order: {} rows read, first difference at {first:?}: {:?}",
            ids.len(),
            first.map(|i| &ids[i.saturating_sub(2)..(i + 3).min(ids.len())])
        );
    }
    let numbers: Vec<u32> = reads.iter().map(|e| e.row).collect();
    assert_eq!(numbers, (1..=ROWS as u32).collect::<Vec<_>>());
    let starts = events.iter().filter(|e| e.op == Op::SnapshotStart).count();
    assert_eq!(starts, 1, "the restart did not start the table over");
    let all: Vec<&ChangeEvent> = events.iter().collect();
    assert_eq!(fold(&all), table(&world).await);
}

/// `snapshot.parallel_tables = 2`: two tables are read at once (the checkpoint shows both in
/// progress before either is done), for both ways of placing chunks (with watermarks, two
/// drivers write theirs into one signal table). A SIGTERM while both are in progress resumes
/// each where it stopped: the table without writers is read once, in key order; the one with
/// writers folds to the table and no row of it is read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tables_are_read_at_once_and_each_resumes_where_it_stopped() {
    for method in ["consistent_snapshot", "watermark"] {
        let world = World::new().await;
        items(&world).await;
        world
            .db
            .admin(&[
                "CREATE TABLE shop.more (id BIGINT PRIMARY KEY, label VARCHAR(20))",
                &format!("INSERT INTO shop.more SELECT seq, CONCAT('m', seq) FROM shop.seq_1_to_{ROWS}"),
                "CREATE DATABASE cdc",
                "CREATE TABLE cdc.signals (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048))",
                "GRANT SELECT, INSERT, UPDATE ON cdc.signals TO 'cdc'@'%'",
            ])
            .await;
        let stop = Arc::new(AtomicBool::new(false));
        let writer = writers(&world, Arc::clone(&stop), true).await;
        let mut settings = SLOW.to_vec();
        settings.push(("BINLOG_KINESIS__SNAPSHOT__CHUNK_ROWS", "500"));
        settings.push(("BINLOG_KINESIS__SNAPSHOT__PARALLEL_TABLES", "2"));
        settings.push(("BINLOG_KINESIS__SNAPSHOT__METHOD", method));
        settings.push(("BINLOG_KINESIS__SNAPSHOT__SIGNAL_TABLE", "cdc.signals"));
        let config = || world.config(&settings);
        let daemon = world.daemon(config(), StartFrom::Checkpoint).await;
        // Both in progress at one checkpoint; with one table at a time, `shop.items` (queued
        // first) would be done before `shop.more` starts.
        eventually(Duration::from_secs(120), async || {
            let snapshot = saved_snapshot(&world)?;
            let pending = snapshot.get("pending")?.as_array()?.clone();
            let rows = |name: &str| {
                pending
                    .iter()
                    .find(|p| p["table"] == name)
                    .map(|p| p["rows"].as_u64().unwrap_or(0))
            };
            match (rows("shop.items"), rows("shop.more")) {
                (None, _) => panic!("{method}: shop.items was read to its end before shop.more was half-way: not read at once ({snapshot})"),
                (Some(a), Some(b)) if a >= 1_000 && b >= 1_000 && b < ROWS as u64 / 2 => Some(()),
                (Some(_), Some(b)) if b >= ROWS as u64 / 2 => panic!("{method}: shop.more went past half-way first ({snapshot})"),
                _ => None,
            }
        })
        .await;
        daemon.stop().await.unwrap();

        let daemon = world.daemon(config(), StartFrom::Checkpoint).await;
        finish_under_writers(&world, daemon, &stop, writer).await;

        let events = world.kinesis.events(&world.stream).await;
        let of = |table: &str, op: Op| -> Vec<&ChangeEvent> {
            events
                .iter()
                .filter(|e| e.table == table && e.op == op)
                .collect()
        };
        let ids = |reads: &[&ChangeEvent]| -> Vec<i64> {
            reads
                .iter()
                .map(|e| e.after.as_ref().unwrap()["id"].as_i64().unwrap())
                .collect()
        };
        let more = of("more", Op::Read);
        assert_eq!(
            ids(&more),
            (1..=ROWS).collect::<Vec<_>>(),
            "{method}: shop.more once, in order"
        );
        let numbers: Vec<u32> = more.iter().map(|e| e.row).collect();
        assert_eq!(numbers, (1..=ROWS as u32).collect::<Vec<_>>());
        for table in ["more", "items"] {
            assert_eq!(
                of(table, Op::SnapshotStart).len(),
                1,
                "{method}: {table} started over"
            );
            assert_eq!(of(table, Op::SnapshotEnd).len(), 1, "{method}: {table}");
        }
        let item_reads = ids(&of("items", Op::Read));
        let distinct: BTreeSet<i64> = item_reads.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            item_reads.len(),
            "{method}: a row of shop.items read twice"
        );
        let items: Vec<&ChangeEvent> = events.iter().filter(|e| e.table == "items").collect();
        assert_eq!(fold(&items), table(&world).await, "{method}");
    }
}

fn spawn(world: &World) -> Child {
    world
        .run_command()
        .envs(SLOW.iter().copied())
        .env("BINLOG_KINESIS__SNAPSHOT__CHUNK_ROWS", "300")
        .spawn()
        .unwrap()
}

/// `kill -9` at several moments of a snapshot, each followed by a restart, while writers
/// change the table: the stream still folds to the table, no restart reads the table from its
/// start again, and the rows read twice are few (those of the chunks not yet checkpointed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_snapshot_resumes_from_the_last_acknowledged_chunk() {
    let world = World::new().await;
    items(&world).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = writers(&world, Arc::clone(&stop), true).await;
    let kills = AtomicU64::new(0);
    for rows in [1_500, 6_000, 12_000] {
        let mut daemon = spawn(&world);
        snapshot_rows(&world, rows).await;
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        kills.fetch_add(1, Ordering::Relaxed);
    }
    let mut daemon = spawn(&world);
    snapshot_done(&world).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    caught_up(&world).await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(daemon.wait().unwrap().code(), Some(0));

    let events = item_events(&world).await;
    let all: Vec<&ChangeEvent> = events.iter().collect();
    assert_eq!(fold(&all), table(&world).await);
    let starts = events.iter().filter(|e| e.op == Op::SnapshotStart).count();
    assert_eq!(starts, 1, "a restart read the table from its start again");
    let reads: Vec<i64> = events
        .iter()
        .filter(|e| e.op == Op::Read)
        .map(|e| e.after.as_ref().unwrap()["id"].as_i64().unwrap())
        .collect();
    let distinct: BTreeSet<i64> = reads.iter().copied().collect();
    let repeated = reads.len() - distinct.len();
    assert!(
        repeated as u64 <= kills.load(Ordering::Relaxed) * ROWS as u64 / 10,
        "{repeated} rows read twice over {} kills",
        kills.load(Ordering::Relaxed)
    );
}

/// A table without a primary key is read in one consistent read while the binlog reader
/// waits at its position (here with duplicate rows), or chunked by a NOT NULL unique key
/// when it has one (writers also move rows to other keys and delete them): with
/// writers changing it throughout, the stream folded as a multiset of rows is exactly the
/// table, and its rows are read once, between its markers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_a_primary_key_folds_to_the_table() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.loose (v INT, note VARCHAR(10))",
            "INSERT INTO shop.loose SELECT seq % 1000, IF(seq % 3 = 0, NULL, 'x') FROM shop.seq_1_to_6000",
            "CREATE TABLE shop.uniq (code VARCHAR(8) NOT NULL, v INT, UNIQUE KEY (code))",
            "INSERT INTO shop.uniq SELECT CONCAT('c', seq), seq FROM shop.seq_1_to_3000",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut conn = world.db.root().await;
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(77);
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = rng.random_range(0..1000);
                let statement = match rng.random_range(0..6) {
                    0 => format!("INSERT INTO shop.loose VALUES ({v}, 'new')"),
                    1 => format!("DELETE FROM shop.loose WHERE v = {v} LIMIT 1"),
                    2 => format!("UPDATE shop.loose SET note = 'upd' WHERE v = {v} LIMIT 1"),
                    // The unique key itself changes: the row moves to another key.
                    3 => format!(
                        "UPDATE IGNORE shop.uniq SET code = CONCAT('m', code) WHERE code = 'c{}'",
                        v * 3 + 1
                    ),
                    4 => format!("DELETE FROM shop.uniq WHERE code = 'c{}'", v * 3 + 2),
                    _ => format!("UPDATE shop.uniq SET v = -v WHERE code = 'c{}'", v + 1),
                };
                conn.query_drop(statement).await.unwrap();
                written += 1;
            }
            written
        })
    };
    // Small pieces and a fast producer: between two pieces the reader would read on, but for
    // the hold.
    let settings = [("BINLOG_KINESIS__SNAPSHOT__CHUNK_ROWS", "20")];
    let daemon = world
        .daemon(world.config(&settings), StartFrom::Checkpoint)
        .await;
    let written = finish_under_writers(&world, daemon, &stop, writer).await;
    assert!(written > 50, "the writers wrote {written} statements");

    let events = world.kinesis.events(&world.stream).await;
    let mut conn = world.db.root().await;
    for (table, columns) in [("loose", "v, note"), ("uniq", "code, v")] {
        let mine: Vec<&ChangeEvent> = events.iter().filter(|e| e.table == table).collect();
        let mut rows: BTreeMap<String, i64> = BTreeMap::new();
        let text =
            |image: &serde_json::Map<String, Value>| Value::Object(image.clone()).to_string();
        // A table chunked by a unique key names it in its snapshot_start, and is applied
        // keyed by it, as a table with a primary key is (an image upserts, a before image of
        // another key or a delete removes). A table without any key is applied as SQL would
        // apply it to a copy, from its snapshot_start on: an insert or read adds a row; a
        // delete removes one equal row, an update replaces one, and either does nothing when
        // no equal row is there (unlike counting, this depends on the order).
        let keyed = mine
            .iter()
            .find(|e| e.op == Op::SnapshotStart)
            .and_then(|e| e.after.as_ref())
            .map(|a| a["unique_key"][0].as_str().unwrap().to_owned());
        let mut by_key: BTreeMap<String, String> = BTreeMap::new();
        for event in &mine {
            if let Some(key) = &keyed {
                let of = |image: &serde_json::Map<String, Value>| image[key.as_str()].to_string();
                if let Some(before) = &event.before {
                    by_key.remove(&of(before));
                }
                if let (Some(after), Op::Insert | Op::Update | Op::Read) = (&event.after, event.op)
                {
                    by_key.insert(of(after), text(after));
                }
                continue;
            }
            if event.op == Op::SnapshotStart {
                rows.clear();
            }
            let found = match &event.before {
                Some(before) => match rows.get_mut(&text(before)) {
                    Some(count) if *count > 0 => {
                        *count -= 1;
                        true
                    }
                    _ => false,
                },
                None => true,
            };
            if let (true, Some(after), Op::Insert | Op::Update | Op::Read) =
                (found, &event.after, event.op)
            {
                *rows.entry(text(after)).or_default() += 1;
            }
        }
        for row in by_key.into_values() {
            rows.insert(row, 1);
        }
        rows.retain(|_, n| *n != 0);
        let names: Vec<&str> = columns.split(", ").collect();
        let table_rows: Vec<mysql_async::Row> = conn
            .query(format!("SELECT {columns} FROM shop.{table}"))
            .await
            .unwrap();
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for row in table_rows {
            let mut image = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.as_ref(i).unwrap() {
                    mysql_async::Value::NULL => Value::Null,
                    mysql_async::Value::Int(n) => Value::from(*n),
                    mysql_async::Value::Bytes(b) => {
                        match std::str::from_utf8(b).unwrap().parse::<i64>() {
                            Ok(n) if *name == "v" => Value::from(n),
                            _ => Value::from(String::from_utf8(b.clone()).unwrap()),
                        }
                    }
                    other => panic!("{other:?}"),
                };
                image.insert((*name).to_owned(), value);
            }
            *expected
                .entry(Value::Object(image).to_string())
                .or_default() += 1;
        }
        let differ: Vec<(&String, Option<&i64>, Option<&i64>)> = rows
            .keys()
            .chain(expected.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| rows.get(*k) != expected.get(*k))
            .map(|k| (k, rows.get(k), expected.get(k)))
            .collect();
        assert!(
            differ.is_empty(),
            "shop.{table}: (row, stream, table) {differ:?}"
        );
        let reads = mine.iter().filter(|e| e.op == Op::Read).count();
        let ends: Vec<&&ChangeEvent> = mine.iter().filter(|e| e.op == Op::SnapshotEnd).collect();
        assert_eq!(ends.len(), 1, "shop.{table}");
        assert_eq!(
            ends[0].after.as_ref().unwrap()["rows"].as_u64(),
            Some(reads as u64)
        );
        assert!(mine
            .iter()
            .filter(|e| e.op == Op::Read)
            .all(|e| e.primary_key.is_none()));
    }
}

/// Keys the server orders otherwise than their bytes (a case-insensitive collation, keys
/// differing by case and trailing spaces, changed by writers to other cases and spacings) and
/// a composite key: the chunks page as the server compares, and the stream folds to the
/// table. An `ADD COLUMN` in the middle of the snapshot: rows placed after it have the column,
/// rows placed before it do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_keys_composite_keys_and_a_ddl_mid_snapshot() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.names (name VARCHAR(20) COLLATE utf8mb4_general_ci PRIMARY KEY, v INT)",
            "INSERT INTO shop.names SELECT CONCAT(ELT(1 + seq % 4, 'a', 'B', 'ä', 'Z'), seq, IF(seq % 7 = 0, ' ', '')), seq FROM shop.seq_1_to_6000",
            "CREATE TABLE shop.pairs (region VARCHAR(4), id INT, v INT, PRIMARY KEY (region, id))",
            "INSERT INTO shop.pairs SELECT ELT(1 + seq % 3, 'eu', 'us', 'ap'), seq, 0 FROM shop.seq_1_to_3000",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut conn = world.db.root().await;
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(99);
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = rng.random_range(1..=6000);
                let statement = match rng.random_range(0..5) {
                    // The same key in another case, or with a trailing space added or removed.
                    0 => format!("UPDATE shop.names SET name = UPPER(name) WHERE name = CONCAT('a', {n})"),
                    1 => format!("UPDATE shop.names SET name = CONCAT(name, ' '), v = -v WHERE name LIKE CONCAT('_', {n})"),
                    2 => format!("UPDATE shop.names SET name = RTRIM(name) WHERE name LIKE CONCAT('_', {n}, ' ')"),
                    3 => format!("UPDATE shop.pairs SET v = v + 1 WHERE id = {}", n % 3000),
                    _ => format!("DELETE FROM shop.names WHERE v = {n}"),
                };
                conn.query_drop(statement).await.unwrap();
                written += 1;
            }
            written
        })
    };
    let mut settings = SLOW.to_vec();
    settings.push(("BINLOG_KINESIS__SNAPSHOT__CHUNK_ROWS", "300"));
    let daemon = world
        .daemon(world.config(&settings), StartFrom::Checkpoint)
        .await;
    eventually(Duration::from_secs(120), async || {
        let snapshot = saved_snapshot(&world)?;
        let first = snapshot.get("pending")?.get(0)?;
        (first["table"] == "shop.names" && first["rows"].as_u64()? >= 1_500).then_some(())
    })
    .await;
    let before_ddl: binlog_kinesis::position::BinlogPosition =
        world.db.position().await.parse().unwrap();
    world
        .db
        .admin(&["ALTER TABLE shop.names ADD COLUMN extra INT NOT NULL DEFAULT 7"])
        .await;
    let after_ddl: binlog_kinesis::position::BinlogPosition =
        world.db.position().await.parse().unwrap();
    finish_under_writers(&world, daemon, &stop, writer).await;

    let events = world.kinesis.events(&world.stream).await;
    let mut conn = world.db.root().await;
    // shop.names, by exact key text, on the columns it had before the ALTER.
    let mut state: BTreeMap<String, Value> = BTreeMap::new();
    let name = |image: &serde_json::Map<String, Value>| image["name"].as_str().unwrap().to_owned();
    let mut read_before = 0;
    let mut read_after = 0;
    for event in events.iter().filter(|e| e.table == "names") {
        if let Some(before) = &event.before {
            state.remove(&name(before));
        }
        if let Some(after) = &event.after {
            if event.op == Op::Read {
                let placed = &event.position;
                if placed.try_cmp(&before_ddl) == Some(std::cmp::Ordering::Less) {
                    assert!(!after.contains_key("extra"), "{after:?} at {placed}");
                    read_before += 1;
                } else if placed.try_cmp(&after_ddl) != Some(std::cmp::Ordering::Less) {
                    assert_eq!(after.get("extra"), Some(&Value::from(7)), "at {placed}");
                    read_after += 1;
                }
            }
            if event.op != Op::SnapshotEnd {
                state.insert(name(after), json_v(after));
            }
        }
    }
    assert!(
        read_before > 0 && read_after > 0,
        "{read_before} rows read before the ALTER, {read_after} after"
    );
    let rows: Vec<(String, i64)> = conn.query("SELECT name, v FROM shop.names").await.unwrap();
    let table: BTreeMap<String, Value> = rows
        .into_iter()
        .map(|(name, v)| (name.clone(), serde_json::json!({"name": name, "v": v})))
        .collect();
    assert_eq!(state, table, "shop.names");
    // shop.pairs, by its composite key.
    let mut pairs: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for event in events.iter().filter(|e| e.table == "pairs") {
        if let Some(after) = &event.after {
            if event.op != Op::SnapshotEnd {
                let key = (
                    after["region"].as_str().unwrap().to_owned(),
                    after["id"].as_i64().unwrap(),
                );
                pairs.insert(key, after["v"].as_i64().unwrap());
            }
        }
    }
    let rows: Vec<(String, i64, i64)> = conn
        .query("SELECT region, id, v FROM shop.pairs")
        .await
        .unwrap();
    let table: BTreeMap<(String, i64), i64> =
        rows.into_iter().map(|(r, id, v)| ((r, id), v)).collect();
    assert_eq!(pairs, table, "shop.pairs");
}

/// `name` and `v` of a `shop.names` image.
fn json_v(image: &serde_json::Map<String, Value>) -> Value {
    serde_json::json!({"name": image["name"], "v": image["v"]})
}

/// A table added to `[filter]` is snapshotted at the next start, and only it; `--snapshot`
/// reads a table again from its start; a checkpoint from before snapshots (version 1)
/// snapshots nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_tables_and_requests_are_snapshotted_and_an_upgrade_is_not() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.a (id INT PRIMARY KEY)",
            "INSERT INTO shop.a SELECT seq FROM shop.seq_1_to_50",
            "CREATE TABLE shop.b (id INT PRIMARY KEY)",
            "INSERT INTO shop.b SELECT seq FROM shop.seq_1_to_30",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    let reads = async |table: &str| {
        world
            .kinesis
            .events(&world.stream)
            .await
            .into_iter()
            .filter(|e| e.table == table && e.op == Op::Read)
            .count()
    };
    let only_a = [("BINLOG_KINESIS__FILTER__INCLUDE", "shop.a")];
    let daemon = world
        .daemon(world.config(&only_a), StartFrom::Checkpoint)
        .await;
    snapshot_done(&world).await;
    caught_up(&world).await;
    daemon.stop().await.unwrap();
    assert_eq!((reads("a").await, reads("b").await), (50, 0));

    // shop.b joins the filter: read at the next start; shop.a is not read again.
    let daemon = world.daemon(world.config(&[]), StartFrom::Checkpoint).await;
    snapshot_done(&world).await;
    caught_up(&world).await;
    daemon.stop().await.unwrap();
    assert_eq!((reads("a").await, reads("b").await), (50, 30));

    // --snapshot shop.a: read again.
    let mut config = world.config(&[]);
    config
        .snapshot
        .snapshot_again(&["shop.a".to_owned()])
        .unwrap();
    let daemon = world.daemon(config, StartFrom::Checkpoint).await;
    snapshot_done(&world).await;
    caught_up(&world).await;
    daemon.stop().await.unwrap();
    assert_eq!((reads("a").await, reads("b").await), (100, 30));

    // A version 1 checkpoint (written before snapshots), with a new table in the filter:
    // nothing is snapshotted.
    world
        .db
        .admin(&[
            "CREATE TABLE shop.c (id INT PRIMARY KEY)",
            "INSERT INTO shop.c VALUES (1)",
        ])
        .await;
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(world.checkpoint_path()).unwrap()).unwrap();
    let old = serde_json::json!({"version": 1, "position": saved["position"], "updated_at_ms": 1});
    std::fs::write(world.checkpoint_path(), old.to_string()).unwrap();
    let daemon = world.daemon(world.config(&[]), StartFrom::Checkpoint).await;
    caught_up(&world).await;
    daemon.stop().await.unwrap();
    assert_eq!(reads("c").await, 0);
    let saved = saved_snapshot(&world).expect("progress is kept from then on");
    assert!(saved.get("pending").is_none(), "{saved}");
}

/// An insert into `snapshot.signal_table` asks for a snapshot while the daemon runs, with
/// `mode = "never"`: the named table's rows arrive, a signal naming a table the filter leaves
/// out is ignored (and replication goes on), so is one inside an XA transaction that rolls
/// back, and the signal rows are not in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_asks_for_a_snapshot_while_running() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.a (id INT PRIMARY KEY)",
            "INSERT INTO shop.a SELECT seq FROM shop.seq_1_to_20",
            "CREATE TABLE shop.b (id INT PRIMARY KEY)",
            "INSERT INTO shop.b VALUES (1)",
            "CREATE DATABASE cdc",
            "CREATE TABLE cdc.signals (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048))",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    let daemon = world
        .running_daemon(&[
            ("BINLOG_KINESIS__SNAPSHOT__MODE", "never"),
            ("BINLOG_KINESIS__SNAPSHOT__SIGNAL_TABLE", "cdc.signals"),
        ])
        .await;
    // A signal in an XA transaction is ignored, rolled back or not: read at its prepare, it
    // might never commit.
    world
        .db
        .admin(&[
            "XA START 'x1'",
            "INSERT INTO cdc.signals VALUES ('x1', 'snapshot', 'shop.b')",
            "XA END 'x1'",
            "XA PREPARE 'x1'",
            "XA ROLLBACK 'x1'",
            "INSERT INTO cdc.signals VALUES ('s1', 'snapshot', 'crm.elsewhere'), ('s2', 'snapshot', 'shop.a')",
            "INSERT INTO shop.a VALUES (21)",
        ])
        .await;
    let events = eventually(Duration::from_secs(60), async || {
        let events = world.kinesis.events(&world.stream).await;
        events
            .iter()
            .any(|e| e.op == Op::SnapshotEnd)
            .then_some(events)
    })
    .await;
    daemon.stop().await.unwrap();
    let reads = events.iter().filter(|e| e.op == Op::Read).count();
    assert!(reads == 20 || reads == 21, "{reads} rows read");
    assert!(events.iter().all(|e| e.table != "signals"));
    assert!(
        events.iter().all(|e| e.table != "b"),
        "the XA signal was acted upon"
    );
    assert!(events
        .iter()
        .any(|e| e.op == Op::Insert && e.after.as_ref().unwrap()["id"] == 21));
}

/// `check` says what the next start would snapshot, refuses a table it could not read (by
/// name, with the reason), and checks the signal table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_what_a_snapshot_needs() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.a (id INT PRIMARY KEY)",
            "INSERT INTO shop.a SELECT seq FROM shop.seq_1_to_100",
            "CREATE TABLE shop.old (id INT PRIMARY KEY) ENGINE=MyISAM",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    let check = || {
        let output = Command::new(env!("CARGO_BIN_EXE_binlog-kinesis"))
            .arg("check")
            .envs(world.env())
            .env("BINLOG_KINESIS__SNAPSHOT__SIGNAL_TABLE", "cdc.signals")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, out) = check();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  snapshot: shop.old: ") && out.contains("MyISAM"),
        "{out}"
    );
    assert!(
        out.contains("WARN  snapshot signal table: cannot see cdc.signals")
            && out.contains("CREATE TABLE cdc.signals"),
        "{out}"
    );
    world
        .db
        .admin(&[
            "DROP TABLE shop.old",
            "CREATE DATABASE cdc",
            "CREATE TABLE cdc.signals (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048))",
            "GRANT SELECT ON cdc.signals TO 'cdc'@'%'",
        ])
        .await;
    let (code, out) = check();
    assert_eq!(code, Some(0), "{out}");
    // The row count is InnoDB's estimate: near 100, not always exactly.
    let rows: u64 = out
        .split("PASS  snapshot: 1 table(s) to read at the next start, about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((50..=200).contains(&rows), "{out}");
    assert!(
        out.contains("PASS  snapshot signal table: cdc.signals exists"),
        "{out}"
    );
}
