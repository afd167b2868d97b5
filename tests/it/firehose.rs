//! The other half of the pipeline (issue 16): the daemon → the emulator's Kinesis → the
//! emulator's Firehose, deployed from `deploy/firehose.yaml` through the emulator's
//! CloudFormation → the emulator's S3; then `docs/consumers.md`'s SQL run by DuckDB on what
//! was delivered.
//!
//! What ministack 1.5.33's Firehose emulates (read in `services/firehose.py`): a Kinesis stream
//! as the source (each record put after the delivery stream was created is forwarded as it is
//! put), dynamic partitioning with the JQ metadata extraction applied to the record, the
//! `Prefix`/`ErrorOutputPrefix` expressions (`partitionKeyFromQuery`, `timestamp`,
//! `firehose:error-output-type`), S3 delivery, and error documents under the error prefix.
//! What it does not: multi-record deaggregation (a record of several lines fails the
//! extraction and lands under the error prefix), `AppendDelimiterToRecord`, GZIP (objects are
//! written as they came), buffering (one object per record), retries, its CloudWatch metrics.
//! So the end-to-end test runs the daemon with one event per record, which is what AWS's
//! deaggregation makes of each line, and the second test checks the daemon's side of the
//! deaggregation rule on records written with the default settings.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    process::Command,
    time::Duration,
};

use binlog_kinesis::app::StartFrom;
use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::{
    deploy::{lint_tool, repo},
    harness::{eventually, World},
};

const BUCKET: &str = "lake";

/// Creates the bucket and deploys `deploy/firehose.yaml` for the world's stream.
async fn deploy_firehose(world: &World) {
    world
        .kinesis
        .s3()
        .await
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let output = Command::new(lint_tool("python"))
        .args([
            "tests/deploy/stack.py",
            "create",
            &world.kinesis.url,
            "cdc-firehose",
            "deploy/firehose.yaml",
            &format!("StreamName={}", world.stream),
            &format!("BucketName={BUCKET}"),
            "AlarmTopicArn=arn:aws:sns:us-east-1:000000000000:cdc-alarms",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the stack was not created:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outputs: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(outputs["DataLocation"], "s3://lake/cdc/");
}

/// Every object in the bucket: key and body.
async fn objects(world: &World) -> Vec<(String, String)> {
    let s3 = world.kinesis.s3().await;
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut objects = Vec::new();
    for key in keys {
        let body = s3
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        objects.push((key, String::from_utf8(bytes.to_vec()).unwrap()));
    }
    objects
}

/// The stream's order of an event, as `docs/consumers.md` states it: the binlog file's
/// number, the offset in it, the row.
fn order(event: &Value) -> (u64, u64, u64) {
    let position = event["position"].as_str().unwrap();
    let (file, offset) = position.rsplit_once(':').unwrap();
    let number = file.rsplit_once('.').unwrap().1;
    (
        number.parse().unwrap(),
        offset.parse().unwrap(),
        event["row"].as_u64().unwrap(),
    )
}

fn table_of(event: &Value) -> String {
    format!(
        "{}.{}",
        event["database"].as_str().unwrap(),
        event["table"].as_str().unwrap()
    )
}

/// Every line in the stream, in stream order (one shard).
async fn stream_lines(world: &World) -> Vec<String> {
    world
        .kinesis
        .raw_records(&world.stream)
        .await
        .into_iter()
        .flat_map(|(_, data)| data.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// The state a consumer applying the stream in order ends with, per table: key → row.
fn fold(lines: &[String]) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut state: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for line in lines {
        let event: Value = serde_json::from_str(line).unwrap();
        let rows = state.entry(table_of(&event)).or_default();
        let key = |image: &Value| image["id"].to_string();
        match event["op"].as_str().unwrap() {
            "insert" | "read" => {
                rows.insert(key(&event["after"]), event["after"].clone());
            }
            "update" => {
                rows.remove(&key(&event["before"]));
                rows.insert(key(&event["after"]), event["after"].clone());
            }
            "delete" => {
                rows.remove(&key(&event["before"]));
            }
            "truncate" => rows.clear(),
            _ => {}
        }
    }
    state
}

/// Regression for issue 16, item 4: nothing showed that what the daemon writes reaches S3
/// through Firehose, per table, whole, and that the documented SQL rebuilds the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_s3_through_firehose_once_each_under_their_table_and_rebuild_it() {
    let world = World::new().await;
    deploy_firehose(&world).await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.orders (id INT PRIMARY KEY, status VARCHAR(20), amount DECIMAL(10,2))",
            "CREATE TABLE shop.users (id INT PRIMARY KEY, name VARCHAR(40))",
            "CREATE DATABASE crm",
            "CREATE TABLE crm.notes (id INT PRIMARY KEY, body TEXT)",
            // Rows the first start's snapshot reads.
            "INSERT INTO shop.orders SELECT seq, 'new', seq * 1.5 FROM shop.seq_1_to_20",
            "INSERT INTO shop.users VALUES (1, 'ann'), (2, 'bob')",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
            "GRANT SELECT ON crm.* TO 'cdc'@'%'",
        ])
        .await;
    let config = world.config(&[
        // The emulator does not deaggregate (see above): one event per record.
        ("BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD", "1"),
        ("BINLOG_KINESIS__FILTER__INCLUDE", "shop.*,crm.*"),
    ]);
    let daemon = world.daemon(config, StartFrom::Checkpoint).await;
    world.wait_replicating().await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.orders SELECT seq, 'new', seq FROM shop.seq_21_to_140",
            "UPDATE shop.orders SET status = 'paid' WHERE id <= 60",
            // A key change: the old key's row is gone.
            "UPDATE shop.orders SET id = id + 1000 WHERE id = 5",
            "DELETE FROM shop.orders WHERE id BETWEEN 130 AND 134",
            "BEGIN",
            "INSERT INTO shop.users VALUES (3, 'cy')",
            "UPDATE shop.orders SET amount = 0 WHERE id = 7",
            "INSERT INTO crm.notes VALUES (1, 'a'), (2, 'b')",
            "COMMIT",
            "UPDATE shop.users SET name = 'anne' WHERE id = 1",
            "DELETE FROM shop.users WHERE id = 2",
            "UPDATE crm.notes SET body = 'bb' WHERE id = 2",
            "TRUNCATE TABLE crm.notes",
            "INSERT INTO crm.notes VALUES (3, 'c')",
            "UPDATE shop.orders SET status = 'shipped' WHERE id = 7",
        ])
        .await;
    world.wait_replicating().await;
    daemon.stop().await.unwrap();

    let lines = stream_lines(&world).await;
    // What the SQL above makes, counted apart from the daemon: per table and op.
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in &lines {
        let event: Value = serde_json::from_str(line).unwrap();
        *counts
            .entry((table_of(&event), event["op"].as_str().unwrap().to_owned()))
            .or_default() += 1;
    }
    let expected: BTreeMap<(String, String), usize> = [
        ("shop.orders", "snapshot_start", 1),
        ("shop.orders", "read", 20),
        ("shop.orders", "snapshot_end", 1),
        ("shop.orders", "insert", 120),
        ("shop.orders", "update", 60 + 1 + 1 + 1),
        ("shop.orders", "delete", 5),
        ("shop.users", "snapshot_start", 1),
        ("shop.users", "read", 2),
        ("shop.users", "snapshot_end", 1),
        ("shop.users", "insert", 1),
        ("shop.users", "update", 1),
        ("shop.users", "delete", 1),
        ("crm.notes", "snapshot_start", 1),
        ("crm.notes", "snapshot_end", 1),
        ("crm.notes", "insert", 3),
        ("crm.notes", "update", 1),
        ("crm.notes", "truncate", 1),
    ]
    .into_iter()
    .map(|(t, op, n)| ((t.to_owned(), op.to_owned()), n))
    .collect();
    assert_eq!(counts, expected, "the stream");

    // The emulator writes asynchronously: wait for one object per record.
    let delivered = eventually(Duration::from_secs(60), async || {
        let objects = objects(&world).await;
        (objects.len() >= lines.len()).then_some(objects)
    })
    .await;
    // Today and yesterday (UTC), as the server says: the run may cross midnight.
    let today: Vec<String> = world
        .db
        .root()
        .await
        .query("SELECT CAST(d AS CHAR) FROM (SELECT UTC_DATE() AS d UNION ALL SELECT UTC_DATE() - INTERVAL 1 DAY) AS days")
        .await
        .unwrap();
    let mut in_s3: HashMap<String, usize> = HashMap::new();
    let mut per_table: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, body) in &delivered {
        assert!(
            key.starts_with("cdc/"),
            "{key} is not under the data prefix:\n{body}"
        );
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 5, "{key}");
        assert!(body.ends_with('\n'), "{key}");
        for line in body.lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            let (database, table) = (
                event["database"].as_str().unwrap(),
                event["table"].as_str().unwrap(),
            );
            assert_eq!(
                [parts[1], parts[2]],
                [format!("db={database}"), format!("tbl={table}")],
                "{key} holds an event of {database}.{table}"
            );
            assert!(
                today.iter().any(|day| *day == parts[3][3..]),
                "{key}: dt is not today"
            );
            *in_s3.entry(line.to_owned()).or_default() += 1;
            per_table.entry(table_of(&event)).or_default().push(event);
        }
    }
    // Each event once: the delivered lines are exactly the stream's lines.
    let mut in_stream: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        *in_stream.entry(line.clone()).or_default() += 1;
    }
    assert!(
        in_stream.values().all(|&n| n == 1),
        "an event twice in the stream"
    );
    assert_eq!(in_s3, in_stream, "S3 holds each event of the stream once");

    // In order within a table: sorting a table's delivered changes by position and row gives
    // the stream's order (objects themselves have none).
    let is_change = |event: &Value| !event["op"].as_str().unwrap().starts_with("snapshot_");
    for (table, events) in &mut per_table {
        events.retain(is_change);
        events.sort_by_key(order);
        let streamed: Vec<Value> = lines
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|event| table_of(event) == *table && is_change(event))
            .collect();
        assert_eq!(*events, streamed, "{table}: position and row order");
    }

    // docs/consumers.md's SQL, on the delivered objects with some of them delivered twice.
    let root = tempfile::tempdir().unwrap();
    for (i, (key, body)) in delivered.iter().enumerate() {
        let path = root.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        if i % 7 == 0 {
            std::fs::write(path.with_extension("again"), body).unwrap();
        }
    }
    let tables = ["shop.orders", "shop.users", "crm.notes"];
    let result = consumers_sql(root.path(), &tables);
    let copies = delivered.len().div_ceil(7);
    assert_eq!(
        result["rows"],
        lines.len() + copies,
        "the Athena table reads every line"
    );
    let reference = fold(&lines);
    let mut conn = world.db.root().await;
    for table in tables {
        let state: BTreeMap<String, Value> = result["state"][table]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, row)| {
                (
                    id.clone(),
                    serde_json::from_str(row.as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(state, reference[table], "{table}: the current-state query");
        let ids: Vec<i64> = conn
            .query(format!("SELECT id FROM {table} ORDER BY id"))
            .await
            .unwrap();
        let mut found: Vec<i64> = state.keys().map(|id| id.parse().unwrap()).collect();
        found.sort_unstable();
        assert_eq!(found, ids, "{table}: the rebuilt keys are the server's");
    }
    assert_eq!(reference["shop.orders"]["7"]["status"], "shipped");
    assert_eq!(reference["shop.orders"]["7"]["amount"], "0.00");
    assert!(reference["shop.orders"].contains_key("1005"));
    assert!(!reference["shop.orders"].contains_key("5"));
    assert_eq!(reference["crm.notes"].keys().collect::<Vec<_>>(), ["3"]);
}

/// Runs `tests/deploy/consumers.py` (DuckDB) over a copy of the bucket.
fn consumers_sql(root: &Path, tables: &[&str]) -> Value {
    let output = Command::new(lint_tool("python"))
        .arg("tests/deploy/consumers.py")
        .arg("docs/consumers.md")
        .arg(root)
        .args(tables)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "consumers.py: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Regression for issue 16, item 1: records held up to a megabyte of lines, thousands of
/// events, which Firehose's deaggregation (500 at most) cannot split for dynamic partitioning.
/// With the default settings every record is something it can: at most 500 events of one
/// table, each a one-line JSON object ending with `\n`, and a reader of consecutive JSON
/// objects (what Firehose's JSON deaggregation is) gets exactly the stream's events back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_records_are_what_firehose_deaggregates() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20))",
            "CREATE TABLE shop.u (id INT PRIMARY KEY)",
        ])
        .await;
    let config = world.config(&[("BINLOG_KINESIS__SNAPSHOT__MODE", "never")]);
    let daemon = world.daemon(config, StartFrom::Checkpoint).await;
    world.wait_replicating().await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.t SELECT seq, 'x' FROM shop.seq_1_to_1200",
            "INSERT INTO shop.u SELECT seq FROM shop.seq_1_to_30",
            "UPDATE shop.t SET v = 'y' WHERE id <= 700",
        ])
        .await;
    world.wait_replicating().await;
    daemon.stop().await.unwrap();

    let records = world.kinesis.raw_records(&world.stream).await;
    let mut events = 0;
    let mut fullest = 0;
    for (key, data) in &records {
        assert!(data.ends_with('\n'), "a record ends with a newline");
        let lines: Vec<&str> = data.lines().collect();
        assert!(
            lines.len() <= 500,
            "{key}: {} events in one record",
            lines.len()
        );
        fullest = fullest.max(lines.len());
        // Consecutive JSON objects, as Firehose's JSON deaggregation reads them.
        let objects: Vec<Value> = serde_json::Deserializer::from_str(data)
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect();
        assert_eq!(objects.len(), lines.len(), "{key}: one object per line");
        for (object, line) in objects.iter().zip(&lines) {
            assert!(object.is_object(), "{key}: {line}");
            assert_eq!(*object, serde_json::from_str::<Value>(line).unwrap());
            assert_eq!(table_of(object), *key, "a record holds one table's events");
        }
        events += lines.len();
    }
    assert_eq!(events, 1200 + 30 + 700, "every event");

    // More than Firehose takes is a choice `check` (and `run`, at startup) warns about.
    let check = |per_record: &str| {
        let output = world
            .command("check")
            .env("BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD", per_record)
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    let warned = check("0");
    assert!(
        warned.contains("WARN  configuration: kinesis.max_events_per_record is 0 (no limit)")
            && warned.contains("Firehose"),
        "{warned}"
    );
    assert!(!check("500").contains("WARN  configuration"));
    assert_eq!(
        fullest, 500,
        "the cap binds: these events fit a megabyte by thousands"
    );
}
