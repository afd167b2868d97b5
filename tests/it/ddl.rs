//! `ddl` events (`output.ddl`, issue 15): each DDL statement on a table in scope is an event
//! on the table's key, in stream order with its rows; renames in and out of scope, drops,
//! creates and database-level statements.

use binlog_kinesis::{app::StartFrom, event::Op};

use crate::harness::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_statements_are_events_in_order_with_the_rows() {
    let world = World::new().await;
    world
        .db
        .admin(&["CREATE DATABASE shop", "CREATE DATABASE other"])
        .await;
    let daemon = world
        .daemon(
            world.config(&[("BINLOG_KINESIS__OUTPUT__DDL", "true")]),
            StartFrom::Checkpoint,
        )
        .await;
    world.wait_replicating().await;
    world
        .db
        .admin(&[
            "CREATE TABLE shop.t (id INT PRIMARY KEY)",
            "INSERT INTO shop.t VALUES (1)",
            "ALTER TABLE shop.t ADD COLUMN c INT",
            "INSERT INTO shop.t VALUES (2, 20)",
            "ALTER TABLE shop.t MODIFY COLUMN c BIGINT",
            "ALTER TABLE shop.t DROP COLUMN c",
            "INSERT INTO shop.t VALUES (3)",
            "CREATE TABLE other.x (id INT PRIMARY KEY)",
            "INSERT INTO other.x VALUES (9)",
            "RENAME TABLE shop.t TO other.t2",
            "RENAME TABLE other.x TO shop.x",
            "INSERT INTO shop.x VALUES (5)",
            "TRUNCATE TABLE shop.x",
            "DROP TABLE shop.x",
            "ALTER DATABASE shop CHARACTER SET utf8mb4",
            "ALTER DATABASE other CHARACTER SET utf8mb4",
        ])
        .await;
    world.wait_replicating().await;
    // The column list, read from information_schema as the daemon reads the statement: here
    // it is caught up (and may see the table: SELECT on it).
    world
        .db
        .admin(&[
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
            "CREATE TABLE shop.y (id INT PRIMARY KEY)",
        ])
        .await;
    world.wait_replicating().await;
    world
        .db
        .admin(&["ALTER TABLE shop.y ADD COLUMN note VARCHAR(20)"])
        .await;
    world.wait_replicating().await;
    daemon.stop().await.unwrap();

    let events = world.kinesis.events(&world.stream).await;
    let of = |table: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.database == "shop" && e.table == table)
            .map(|e| match e.op {
                Op::Ddl => {
                    let after = e.after.as_ref().unwrap();
                    let statement = after["statement"].as_str().unwrap();
                    assert!(e.before.is_none() && e.primary_key.is_none(), "{e:?}");
                    format!(
                        "ddl {}",
                        statement
                            .split_whitespace()
                            .take(4)
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                }
                op => {
                    let image = e.after.as_ref().or(e.before.as_ref());
                    format!(
                        "{op:?} {}",
                        image
                            .map(|i| serde_json::Value::Object(i.clone()).to_string())
                            .unwrap_or_default()
                    )
                }
            })
            .collect()
    };
    assert_eq!(
        of("t"),
        [
            "ddl CREATE TABLE shop.t (id",
            r#"Insert {"id":1}"#,
            "ddl ALTER TABLE shop.t ADD",
            r#"Insert {"id":2,"c":20}"#,
            "ddl ALTER TABLE shop.t MODIFY",
            "ddl ALTER TABLE shop.t DROP",
            r#"Insert {"id":3}"#,
            "ddl RENAME TABLE shop.t TO",
        ]
    );
    let x = of("x");
    assert_eq!(x.len(), 4, "{x:?}");
    assert_eq!(x[0], "ddl RENAME TABLE other.x TO");
    assert_eq!(x[1], r#"Insert {"id":5}"#);
    assert_eq!(x[2], "Truncate ");
    assert!(x[3].starts_with("ddl DROP TABLE"), "{x:?}");
    assert_eq!(of(""), ["ddl ALTER DATABASE shop CHARACTER"]);
    let columns: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e.table == "y")
        .map(|e| e.after.as_ref().unwrap()["columns"].clone())
        .collect();
    assert_eq!(
        columns,
        [
            serde_json::json!([{"name": "id", "type": "int(11)"}]),
            serde_json::json!([{"name": "id", "type": "int(11)"}, {"name": "note", "type": "varchar(20)"}]),
        ]
    );
    let dropped = events
        .iter()
        .find(|e| {
            e.table == "x"
                && e.op == Op::Ddl
                && e.after.as_ref().unwrap()["statement"]
                    .as_str()
                    .unwrap()
                    .starts_with("DROP")
        })
        .unwrap();
    assert_eq!(
        dropped.after.as_ref().unwrap()["columns"],
        serde_json::Value::Null
    );
    assert!(
        events.iter().all(|e| e.database == "shop"),
        "nothing of the database out of scope"
    );
}
