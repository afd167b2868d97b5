//! The live type matrix: one table per type family on the private MariaDB, edge values
//! inserted, then an update and a delete, each event compared with JSON written by hand from
//! the README's value table.

use serde_json::{json, Value};

use crate::harness::World;

/// (table definition, inserted rows as SQL tuples, expected after-images in order)
fn families() -> Vec<(&'static str, Vec<&'static str>, Vec<Value>)> {
    vec![
        (
            "ints (id INT PRIMARY KEY, ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED)",
            vec![
                "(1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0)",
                "(2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615)",
                "(3, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1)",
            ],
            vec![
                json!({"id": 1, "ti": -128, "tiu": 0, "si": -32768, "siu": 0, "mi": -8388608, "miu": 0, "i": -2147483648i64, "iu": 0, "bi": i64::MIN, "biu": 0}),
                json!({"id": 2, "ti": 127, "tiu": 255, "si": 32767, "siu": 65535, "mi": 8388607, "miu": 16777215, "i": 2147483647, "iu": 4294967295u64, "bi": i64::MAX, "biu": u64::MAX}),
                json!({"id": 3, "ti": -1, "tiu": 1, "si": -1, "siu": 1, "mi": -1, "miu": 1, "i": -1, "iu": 1, "bi": -1, "biu": 1}),
            ],
        ),
        (
            "decimals (id INT PRIMARY KEY, d1 DECIMAL(10,2), d2 DECIMAL(65,30), d3 DECIMAL(5,0))",
            vec![
                "(1, 12.5, 0.000000000000000000000000000001, -99999)",
                "(2, -0.01, 99999999999999999999999999999999999.999999999999999999999999999999, 0)",
                "(3, 0, -1, 7)",
            ],
            vec![
                json!({"id": 1, "d1": "12.50", "d2": "0.000000000000000000000000000001", "d3": "-99999"}),
                json!({"id": 2, "d1": "-0.01", "d2": "99999999999999999999999999999999999.999999999999999999999999999999", "d3": "0"}),
                json!({"id": 3, "d1": "0.00", "d2": "-1.000000000000000000000000000000", "d3": "7"}),
            ],
        ),
        (
            "floats (id INT PRIMARY KEY, f FLOAT, d DOUBLE, b1 BIT(1), b64 BIT(64))",
            vec![
                "(1, 1.5, 1.7976931348623157e308, b'1', b'1111111111111111111111111111111111111111111111111111111111111111')",
                "(2, -2.25, 5e-324, b'0', b'0')",
                "(3, 0.1, 0.1, NULL, b'101')",
            ],
            vec![
                json!({"id": 1, "f": 1.5, "d": 1.7976931348623157e308, "b1": 1, "b64": u64::MAX}),
                json!({"id": 2, "f": -2.25, "d": 5e-324, "b1": 0, "b64": 0}),
                json!({"id": 3, "f": 0.1, "d": 0.1, "b1": null, "b64": 5}),
            ],
        ),
        (
            "texts (id INT PRIMARY KEY, c CHAR(5), v VARCHAR(20) CHARACTER SET utf8mb4, l VARCHAR(20) CHARACTER SET latin1, t TEXT CHARACTER SET utf8mb4, u3 VARCHAR(10) CHARACTER SET utf8mb3)",
            vec![
                "(1, 'ab', '🎉 emoji', 'héllo €', 'line\\nbreak \"quoted\"', 'ü')",
                "(2, '', '', '', '', '')",
                "(3, 'a\\\\b', 'v', 'tab\\t\"q\" a\\\\b', 't', 'u')",
            ],
            vec![
                json!({"id": 1, "c": "ab", "v": "🎉 emoji", "l": "héllo €", "t": "line\nbreak \"quoted\"", "u3": "ü"}),
                json!({"id": 2, "c": "", "v": "", "l": "", "t": "", "u3": ""}),
                json!({"id": 3, "c": "a\\b", "v": "v", "l": "tab\t\"q\" a\\b", "t": "t", "u3": "u"}),
            ],
        ),
        (
            "charsets (id INT PRIMARY KEY, gbk VARCHAR(10) CHARACTER SET gbk, sjis VARCHAR(10) CHARACTER SET sjis, euckr VARCHAR(10) CHARACTER SET euckr, big5 VARCHAR(10) CHARACTER SET big5, cp1251 VARCHAR(10) CHARACTER SET cp1251, koi8r VARCHAR(10) CHARACTER SET koi8r, latin2 VARCHAR(10) CHARACTER SET latin2, greek VARCHAR(10) CHARACTER SET greek, ucs2 VARCHAR(10) CHARACTER SET ucs2, utf16 VARCHAR(10) CHARACTER SET utf16, utf32 VARCHAR(10) CHARACTER SET utf32)",
            vec!["(1, '中文', 'テスト', '한국어', '繁體', 'Привет', 'Мир', 'Łódź', 'αβγ', 'é', '𝄞', '🎉')"],
            vec![json!({"id": 1, "gbk": "中文", "sjis": "テスト", "euckr": "한국어", "big5": "繁體", "cp1251": "Привет", "koi8r": "Мир", "latin2": "Łódź", "greek": "αβγ", "ucs2": "é", "utf16": "𝄞", "utf32": "🎉"})],
        ),
        (
            "binaries (id INT PRIMARY KEY, bn BINARY(4), vb VARBINARY(8), bl BLOB)",
            vec!["(1, x'00000000', x'', x'00ff')", "(2, x'ab', x'41424300', NULL)"],
            vec![
                json!({"id": 1, "bn": "AAAAAA==", "vb": "", "bl": "AP8="}),
                json!({"id": 2, "bn": "qwAAAA==", "vb": "QUJDAA==", "bl": null}),
            ],
        ),
        (
            "labels (id INT PRIMARY KEY, e ENUM('small','medium','large'), s SET('x','y','z'))",
            vec!["(1, 'large', 'x,z')", "(2, 'small', '')"],
            vec![json!({"id": 1, "e": "large", "s": ["x", "z"]}), json!({"id": 2, "e": "small", "s": []})],
        ),
        (
            "temporals (id INT PRIMARY KEY, d DATE, t0 TIME, t3 TIME(3), dt0 DATETIME, dt6 DATETIME(6), ts0 TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL, y YEAR)",
            vec![
                "(1, '1000-01-01', '-838:59:59', '00:00:00.5', '2024-02-29 23:59:59', '9999-12-31 23:59:59.999999', '1970-01-01 00:00:01', '2038-01-19 03:14:07.999999', 1901)",
                "(2, '0000-00-00', '838:59:59', '-00:00:00.001', '0000-00-00 00:00:00', '2024-01-01 00:00:00', NULL, '2024-03-01 12:34:56.000001', 0)",
            ],
            vec![
                json!({"id": 1, "d": "1000-01-01", "t0": "-838:59:59", "t3": "00:00:00.500", "dt0": "2024-02-29 23:59:59", "dt6": "9999-12-31 23:59:59.999999", "ts0": "1970-01-01T00:00:01Z", "ts6": "2038-01-19T03:14:07.999999Z", "y": 1901}),
                json!({"id": 2, "d": "0000-00-00", "t0": "838:59:59", "t3": "-00:00:00.001", "dt0": "0000-00-00 00:00:00", "dt6": "2024-01-01 00:00:00.000000", "ts0": null, "ts6": "2024-03-01T12:34:56.000001Z", "y": 0}),
            ],
        ),
        (
            "documents (id INT PRIMARY KEY, j JSON, g POINT)",
            vec!["(1, '{\"a\": [1, 2]}', ST_GeomFromText('POINT(1 2)'))", "(2, NULL, NULL)"],
            vec![
                // MariaDB's JSON is text with a check: the document arrives as its text.
                json!({"id": 1, "j": "{\"a\": [1, 2]}", "g": {"srid": 0, "wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA"}}),
                json!({"id": 2, "j": null, "g": null}),
            ],
        ),
    ]
}

/// Creates database `shop` with a table per family, runs `extra`, starts the daemon.
async fn world_with_families(world: &World, extra: &[&str]) -> crate::harness::Daemon {
    let mut setup = vec!["CREATE DATABASE shop CHARACTER SET utf8mb4".to_owned()];
    for (definition, _, _) in families() {
        setup.push(format!("CREATE TABLE shop.{definition}"));
    }
    setup.extend(extra.iter().map(|s| s.to_string()));
    world
        .db
        .admin(&setup.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    world.running_daemon(&[]).await
}

/// The start of a write session whose literal values are UTF-8 and UTC.
fn utc_writes() -> Vec<String> {
    vec![
        "SET NAMES utf8mb4".to_owned(),
        "SET time_zone = '+00:00'".to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_family_arrives_exactly_as_the_value_table_says() {
    let world = World::new().await;
    let daemon = world_with_families(&world, &[]).await;
    let mut writes = utc_writes();
    let mut expected = Vec::new();
    for (definition, rows, afters) in families() {
        let table = definition.split(' ').next().unwrap();
        for row in rows {
            writes.push(format!("INSERT INTO shop.{table} VALUES {row}"));
        }
        expected.extend(afters.into_iter().map(|after| (table.to_owned(), after)));
    }
    // An update and a delete carry full before images in the same encoding.
    writes.push("UPDATE shop.ints SET biu = biu - 1 WHERE id = 2".to_owned());
    writes.push("DELETE FROM shop.temporals WHERE id = 1".to_owned());
    world
        .db
        .admin(&writes.iter().map(String::as_str).collect::<Vec<_>>())
        .await;

    let n = expected.len() + 2;
    let events = world.shop_events(n).await;
    // Per table, events are in binlog order (tables interleave by put order).
    let of = |table: &str| {
        events
            .iter()
            .filter(|e| e.table == table)
            .collect::<Vec<_>>()
    };
    for (definition, _, afters) in families() {
        let table = definition.split(' ').next().unwrap();
        let got: Vec<Value> = of(table)
            .iter()
            .take(afters.len())
            .map(|e| Value::Object(e.after.clone().unwrap()))
            .collect();
        assert_eq!(got, afters, "table {table}");
    }
    let ints = of("ints");
    let update = ints.last().unwrap();
    assert_eq!(update.before.as_ref().unwrap()["biu"], json!(u64::MAX));
    assert_eq!(update.after.as_ref().unwrap()["biu"], json!(u64::MAX - 1));
    let temporals = of("temporals");
    let delete = temporals.last().unwrap();
    assert_eq!(
        Value::Object(delete.before.clone().unwrap()),
        Value::Object(temporals[0].after.clone().unwrap())
    );
    assert!(delete.after.is_none());
    daemon.stop().await.unwrap();
}

/// Issue 14 (first step): a row read by a snapshot is the line its insert was, but for `op`,
/// the position fields and `xid`/`commit`, for every type family of the matrix; chunks of one
/// row page through each table by its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_line_equals_the_insert_line_for_every_type_family() {
    use binlog_kinesis::{
        event::{ChangeEvent, Op},
        position::BinlogPosition,
        source::{connect, snapshot},
    };
    use mysql_async::prelude::Queryable;

    let world = World::new().await;
    let daemon = world_with_families(&world, &["GRANT SELECT ON shop.* TO 'cdc'@'%'"]).await;
    let mut writes = utc_writes();
    let mut n = 0;
    for (definition, rows, _) in families() {
        let table = definition.split(' ').next().unwrap();
        for row in &rows {
            writes.push(format!("INSERT INTO shop.{table} VALUES {row}"));
        }
        n += rows.len();
    }
    world
        .db
        .admin(&writes.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let inserts = world.shop_events(n).await;
    daemon.stop().await.unwrap();

    let mysql = world.config(&[]).mysql;
    let mut conn = connect::connect(&mysql).await.unwrap();
    snapshot::prepare_connection(&mut conn).await.unwrap();
    // A session time zone far from UTC: TIMESTAMPs must not depend on it.
    conn.query_drop("SET time_zone = '-08:00'").await.unwrap();
    let position: BinlogPosition = "mariadb-bin.000001:4".parse().unwrap();
    let mut compared = 0;
    for (definition, rows, _) in families() {
        let name = definition.split(' ').next().unwrap();
        let table = snapshot::SnapshotTable::describe(&mut conn, "shop", name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", binlog_kinesis::report::error_chain(&e)));
        let mut read = Vec::new();
        let mut after = None;
        loop {
            let chunk = table
                .read_chunk(&mut conn, after.as_deref(), 1, usize::MAX)
                .await
                .unwrap_or_else(|e| panic!("{name}: {}", binlog_kinesis::report::error_chain(&e)));
            let Some(last) = chunk.last_key else { break };
            read.extend(chunk.rows);
            after = Some(last);
        }
        assert_eq!(read.len(), rows.len(), "{name}: every row, once");
        for (index, row) in read.iter().enumerate() {
            let mut bytes = Vec::new();
            table
                .line(row, index as u32, &position, 0)
                .write_to(&mut bytes);
            let line: ChangeEvent = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&bytes)));
            assert_eq!(line.op, Op::Read);
            let insert = inserts
                .iter()
                .find(|e| e.table == name && e.primary_key == line.primary_key)
                .unwrap_or_else(|| panic!("{name}: no insert with key {:?}", line.primary_key));
            assert_eq!(line.database, insert.database);
            assert_eq!(line.before, None);
            assert_eq!(line.after, insert.after, "{name} row {index}");
            compared += 1;
        }
    }
    assert_eq!(compared, n);
}
