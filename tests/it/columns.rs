//! `[columns]` rules (issue 15), on the real binary against MariaDB and the emulator: an
//! excluded column is nowhere in the stream, a hashed one is the HMAC-SHA256 of its JSON text
//! (computed here by Python's `hmac`, not by the daemon's code), a masked one is the mask;
//! in snapshot rows and binlog rows alike, in primary keys and partition keys; the key is in
//! no log line and not on `/metrics`; `decode --config` applies the same rules; a rule that
//! would exclude a primary-key column stops the start with exit code 2.

use std::{process::Stdio, time::Duration};

use serde_json::{json, Value};

use crate::harness::{eventually, free_port, http_get, World};

/// The hash key the daemon is given.
const KEY: &str = "column-rules-test-key-0123456789";

/// The rules under test, as the environment carries them.
const RULES: &str = r#"[{tables = ["shop.users", "shop.people"], exclude = ["password_hash", "ssn"], hash = ["email", "phone"], mask = ["card_number", "fax"]}]"#;

/// Values that must never be seen outside the database.
const SECRETS: &[&str] = &[
    "password_hash",
    "ssn",
    "pw-SECRET",
    "111-22-3333",
    "4111111111111111",
    "ann@example.com",
    "ann2@example.com",
    "bob@example.com",
    "bob2@example.com",
    "carol@example.com",
    "555-0100",
    "555-FAX",
];

/// HMAC-SHA256 under [`KEY`] of `json` (a value's JSON text), by Python's standard library.
fn hmac(json: &str) -> String {
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg("import hmac, hashlib, sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())")
        .arg(KEY)
        .arg(json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The hash of a string value, as a line carries it.
fn hashed(text: &str) -> Value {
    Value::String(hmac(&serde_json::to_string(text).unwrap()))
}

async fn tables(world: &World) {
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.users (id INT PRIMARY KEY, name VARCHAR(20), email VARCHAR(64), phone VARCHAR(20), password_hash VARCHAR(64), ssn CHAR(11), card_number VARCHAR(19), note TEXT)",
            "INSERT INTO shop.users VALUES (1, 'Ann', 'ann@example.com', NULL, 'pw-SECRET-1', '111-22-3333', '4111111111111111', 'n1')",
            "CREATE TABLE shop.people (email VARCHAR(64) PRIMARY KEY, v INT)",
            "INSERT INTO shop.people VALUES ('bob@example.com', 1)",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_rules_hold_in_snapshots_binlog_rows_keys_logs_and_decode() {
    let world = World::new().await;
    tables(&world).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log_path = world.checkpoint_path().with_extension("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = world
        .run_command()
        .env("BINLOG_KINESIS__COLUMNS__HASH_KEY", KEY)
        .env("BINLOG_KINESIS__COLUMNS__RULES", RULES)
        .env("BINLOG_KINESIS__KINESIS__PARTITION_BY", "primary_key")
        .env("BINLOG_KINESIS__HTTP__LISTEN", &listen)
        .env("RUST_LOG", "trace")
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    world.wait_replicating().await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.users VALUES (2, 'Bo', 'bo@example.com', '555-0100', 'pw-SECRET-2', '111-22-3333', '4111111111111111', NULL)",
            "UPDATE shop.users SET email = 'ann2@example.com', password_hash = 'pw-SECRET-3' WHERE id = 1",
            "UPDATE shop.users SET note = 'n2' WHERE id = 1",
            "DELETE FROM shop.users WHERE id = 2",
            "INSERT INTO shop.people VALUES ('carol@example.com', 2)",
            "UPDATE shop.people SET v = 3 WHERE email = 'bob@example.com'",
            "UPDATE shop.people SET email = 'bob2@example.com' WHERE email = 'bob@example.com'",
            "DELETE FROM shop.people WHERE email = 'carol@example.com'",
            // A column a rule named before it existed: covered from its first row.
            "ALTER TABLE shop.users ADD COLUMN fax VARCHAR(20)",
            "INSERT INTO shop.users (id, name, fax) VALUES (3, 'Cy', '555-FAX')",
        ])
        .await;
    world.wait_replicating().await;
    let metrics = eventually(Duration::from_secs(10), async || {
        http_get(port, "/metrics").await.map(|(_, body)| body)
    })
    .await;
    assert!(metrics.contains("binlog_kinesis"), "{metrics}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(daemon.wait().unwrap().code(), Some(0));

    // Nothing the rules hide, in any record or partition key; the key in no log or metric.
    let raw = world.kinesis.raw_records(&world.stream).await;
    for (key, data) in &raw {
        for secret in SECRETS {
            assert!(
                !data.contains(secret) && !key.contains(secret),
                "{secret} in {key}: {data}"
            );
        }
    }
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.lines().count() > 50, "trace logging is on");
    assert!(!logged.contains(KEY), "the hash key is in the log");
    assert!(
        logged.contains("[columns] rules mask column fax of shop.users, which has no such column"),
        "the startup warning for a column the table lacks"
    );
    assert!(!metrics.contains(KEY), "the hash key is on /metrics");

    // Each row's events in order (records of one key are in order; rows of different keys
    // may sit on different shards).
    let events = world.kinesis.events(&world.stream).await;
    let of_user = |id: i64| -> Vec<(String, Option<Value>, Option<Value>)> {
        events
            .iter()
            .filter(|e| e.table == "users")
            .filter(|e| {
                let image = e.after.as_ref().or(e.before.as_ref());
                image.is_some_and(|i| i.get("id") == Some(&json!(id)))
            })
            .map(|e| (format!("{:?}", e.op), image(&e.before), image(&e.after)))
            .collect()
    };
    let ann = |email: &str, note: &str| json!({"id": 1, "name": "Ann", "email": hashed(email), "phone": null, "card_number": "***", "note": note});
    let bo = json!({"id": 2, "name": "Bo", "email": hashed("bo@example.com"), "phone": hashed("555-0100"), "card_number": "***", "note": null});
    assert_eq!(
        of_user(1),
        [
            ("Read".into(), None, Some(ann("ann@example.com", "n1"))),
            (
                "Update".into(),
                Some(ann("ann@example.com", "n1")),
                Some(ann("ann2@example.com", "n1"))
            ),
            (
                "Update".into(),
                Some(ann("ann2@example.com", "n1")),
                Some(ann("ann2@example.com", "n2"))
            ),
        ]
    );
    assert_eq!(
        of_user(2),
        [
            ("Insert".into(), None, Some(bo.clone())),
            ("Delete".into(), Some(bo), None)
        ]
    );
    let cy: Vec<Option<Value>> = events
        .iter()
        .filter(|e| e.table == "users" && e.op == binlog_kinesis::event::Op::Insert)
        .filter_map(|e| e.after.as_ref())
        .filter(|after| after.get("id") == Some(&json!(3)))
        .map(|after| after.get("fax").cloned())
        .collect();
    assert_eq!(
        cy,
        [Some(json!("***"))],
        "the rule applies once the column exists"
    );
    let ends: Vec<Option<Value>> = events
        .iter()
        .filter(|e| e.table == "users" && e.op == binlog_kinesis::event::Op::SnapshotEnd)
        .map(|e| image(&e.after))
        .collect();
    assert_eq!(ends, [Some(json!({"rows": 1}))]);

    // A hashed primary key: in `primary_key`, and in the partition key.
    let pk = |email: &str| json!({"email": hashed(email)});
    let emails = ["bob@example.com", "bob2@example.com", "carol@example.com"];
    let mut keys = Vec::new();
    let mut partitions = Vec::new();
    for (partition, data) in &raw {
        for line in data.lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            if line["table"] == "people" && !line["primary_key"].is_null() {
                keys.push(line["primary_key"].clone());
                partitions.push(partition.clone());
            }
        }
    }
    keys.sort_by_key(Value::to_string);
    keys.dedup();
    let mut wanted: Vec<Value> = emails.iter().map(|e| pk(e)).collect();
    wanted.sort_by_key(Value::to_string);
    assert_eq!(keys, wanted);
    for partition in partitions {
        let known = emails
            .iter()
            .any(|e| partition == format!("shop.people/{}", pk(e)));
        assert!(known, "partition key {partition}");
    }

    // decode --config: the same rules over the server's binlog files.
    let config = world.checkpoint_path().with_extension("toml");
    std::fs::write(&config, format!("[columns]\nrules = {RULES}\n")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_binlog-kinesis"))
        .arg("decode")
        .arg("--config")
        .arg(&config)
        .args(world.db.binlog_files())
        .env("BINLOG_KINESIS__COLUMNS__HASH_KEY", KEY)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let decoded = String::from_utf8(output.stdout).unwrap();
    assert!(
        decoded.contains(hashed("bo@example.com").as_str().unwrap()),
        "{decoded}"
    );
    for secret in SECRETS {
        assert!(
            !decoded.contains(secret),
            "decode --config printed {secret}"
        );
    }
    let plain = std::process::Command::new(env!("CARGO_BIN_EXE_binlog-kinesis"))
        .arg("decode")
        .args(world.db.binlog_files())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&plain.stdout).contains("bo@example.com"),
        "without --config every column is printed"
    );
}

/// A rule that would exclude a primary-key column: `check` fails naming it and `run` stops
/// with exit code 2 before streaming; a rule naming a column no table has is a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_a_key_column_is_refused_and_a_missing_column_warned() {
    let world = World::new().await;
    tables(&world).await;
    let rules = r#"[{tables = ["shop.people"], exclude = ["email"]}, {tables = ["shop.users"], mask = ["fax"]}]"#;
    let check = world
        .command("check")
        .env("BINLOG_KINESIS__COLUMNS__RULES", rules)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{out}");
    assert!(
        out.contains("FAIL  column rules: [columns] rules exclude column email of shop.people, part of its primary key"),
        "{out}"
    );
    assert!(
        out.contains("WARN  column rules: [columns] rules mask column fax of shop.users"),
        "{out}"
    );

    let run = world
        .run_command()
        .env("BINLOG_KINESIS__COLUMNS__RULES", rules)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("column email of shop.people"), "{err}");
    assert!(world.kinesis.raw_records(&world.stream).await.is_empty());
}

/// An image as the test compares it: `None` for null.
fn image(map: &Option<serde_json::Map<String, Value>>) -> Option<Value> {
    map.clone().map(Value::Object)
}
