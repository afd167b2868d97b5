//! The reader on real binlog files written by MySQL 5.0 to 9.6 and MariaDB 10.5
//! (`tests/fixtures/mysql-binlogs/`, see its README), fed event by event as the live
//! stream would: what it decodes, what it refuses, and that nothing panics.

use std::{
    io::BufReader,
    path::{Path, PathBuf},
};

use mysql_common::binlog::{consts::BinlogVersion, BinlogFile};

use super::*;
use crate::event::ChangeEvent;

fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql-binlogs");
    // The fixtures are part of the repository: a missing folder is a broken checkout, never a
    // reason to skip.
    assert!(dir.is_dir(), "fixtures missing at {}", dir.display());
    dir
}

pub(super) struct Replay {
    pub(super) result: Result<(), SourceError>,
    pub(super) events: Vec<ChangeEvent>,
    pub(super) boundaries: Vec<BinlogPosition>,
    /// The GTID state at each boundary, as the checkpoint would record it.
    gtids: Vec<Option<String>>,
}

/// Feeds every event of `path` to a reader, as the live stream would.
pub(super) async fn replay(path: &Path) -> Replay {
    replay_with(path, false).await
}

/// As [`replay`]; `positional_names` names columns `@1`, `@2`, ... where the file has none.
pub(super) async fn replay_with(path: &Path, positional_names: bool) -> Replay {
    replay_threads(path, positional_names, None).await
}

/// As [`replay_with`], with `threads` encoding threads (`None`: as many as this machine gives).
pub(super) async fn replay_threads(
    path: &Path,
    positional_names: bool,
    threads: Option<usize>,
) -> Replay {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let (tx, mut rx) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let (mut events, mut boundaries, mut gtids) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(item) = rx.recv().await {
            match item {
                Message::Event(_) | Message::Events(_) => {
                    for event in item.into_events() {
                        events.push(serde_json::from_slice(&event.line.to_vec()).unwrap())
                    }
                }
                Message::Boundary(boundary) => {
                    gtids.push(boundary.point.gtid.map(|g| g.to_string()));
                    boundaries.push(boundary.point.position);
                }
                Message::Comment(_) => {}
            }
        }
        (events, boundaries, gtids)
    });
    let mysql = crate::config::FileConfig::default()
        .validate()
        .unwrap()
        .mysql;
    let config = SourceConfig {
        mysql,
        filter: TableFilter::default(),
        lookahead_bytes: 1 << 20,
        resume_by_gtid: false,
        positional_names,
        checksum_crc32: true,
        catalog: false,
        partition_by_primary_key: false,
        max_event_bytes: usize::MAX,
        catch_up: None,
        snapshot: None,
        signal_table: None,
        captured: TableFilter::default(),
        columns: Default::default(),
        changes: Default::default(),
        ddl_events: false,
    };
    let mut reader = Reader::new(
        config,
        ResumePoint::at(BinlogPosition::start_of(name).unwrap()),
        tx,
        Arc::new(Metrics::default()),
        None,
    );
    if let Some(threads) = threads {
        reader = reader.with_encoder_threads(threads);
    }
    let result = async {
        let file = BinlogFile::new(
            BinlogVersion::Version4,
            BufReader::new(std::fs::File::open(path).unwrap()),
        )
        .map_err(|e| SourceError::Protocol {
            message: e.to_string(),
        })?;
        for event in file {
            let event = event.map_err(|e| SourceError::Protocol {
                message: e.to_string(),
            })?;
            reader.handle(&event).await?;
        }
        reader.drain_rows().await
    }
    .await;
    drop(reader);
    let (events, boundaries, gtids) = collector.await.unwrap();
    Replay {
        result,
        events,
        boundaries,
        gtids,
    }
}

/// Encoding on a pool of threads gives exactly what encoding in place gives, on every
/// fixture: the same lines in the same order, the same boundaries, the same error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoding_pool_changes_nothing_in_the_output() {
    let dir = fixtures();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "md" && e != "txt"))
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("LICENSE")
        })
        .collect();
    files.sort();
    let mut lines = 0;
    for path in &files {
        let inline = replay_threads(path, true, Some(0)).await;
        let pooled = replay_threads(path, true, Some(3)).await;
        let name = path.file_name().unwrap().to_string_lossy();
        let text = |r: &Replay| {
            r.events
                .iter()
                .map(|e| String::from_utf8(e.to_line()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(text(&pooled), text(&inline), "{name}");
        assert_eq!(pooled.boundaries, inline.boundaries, "{name}");
        assert_eq!(pooled.gtids, inline.gtids, "{name}");
        assert_eq!(
            pooled.result.as_ref().map_err(ToString::to_string),
            inline.result.as_ref().map_err(ToString::to_string),
            "{name}"
        );
        lines += inline.events.len();
    }
    assert!(lines > 50, "only {lines} lines");
}

#[tokio::test]
async fn every_fixture_decodes_or_ends_in_a_typed_error_without_panicking() {
    let dir = fixtures();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
    {
        let replay = replay(path).await;
        eprintln!(
            "{}: {} events, {} boundaries, {}",
            path.file_name().unwrap().to_string_lossy(),
            replay.events.len(),
            replay.boundaries.len(),
            replay
                .result
                .as_ref()
                .err()
                .map_or("ok".into(), |e| e.to_string())
        );
    }
}

/// Golden lines: a MariaDB 10.5 binlog with FULL row metadata, decoded as the live stream
/// would be.
#[tokio::test]
async fn mariadb_rows_decode_to_the_documented_format() {
    let dir = fixtures();
    let replay = replay(&dir.join("mariadb-bin.000001")).await;
    replay.result.unwrap();
    let lines: Vec<String> = replay
        .events
        .iter()
        .map(|e| String::from_utf8(e.to_line()).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            concat!(
                r#"{"op":"insert","database":"toddy_test","table":"outbox","ts_ms":1650493084000,"#,
                r#""position":"mariadb-bin.000001:612","row":0,"gtid":"0-1-1","xid":800,"commit":true,"#,
                r#""primary_key":{"id":62},"before":null,"after":{"id":62,"topic":"foo","#,
                r#""event_type":"JSON","event":"eyJmb28iOjF9","created":"2022-04-20T22:18:04Z"}}"#,
                "\n"
            ),
            concat!(
                r#"{"op":"insert","database":"toddy_test","table":"outbox","ts_ms":1650493195000,"#,
                r#""position":"mariadb-bin.000001:984","row":0,"gtid":"0-1-2","xid":820,"commit":true,"#,
                r#""primary_key":{"id":63},"before":null,"after":{"id":63,"topic":"foo","#,
                r#""event_type":"JSON","event":"eyJmb28iOjF9","created":"2022-04-20T22:19:55Z"}}"#,
                "\n"
            ),
        ]
    );
    // Each transaction ends in a boundary at the position after its XID event.
    assert_eq!(replay.boundaries.len(), 2);
}

#[tokio::test]
async fn a_mysql_9_transaction_shares_its_xid_and_commits_on_its_last_event() {
    let dir = fixtures();
    let replay = replay(&dir.join("vector.binlog")).await;
    replay.result.unwrap();
    let first: Vec<&ChangeEvent> = replay.events.iter().filter(|e| e.xid == Some(14)).collect();
    assert_eq!(first.len(), 4);
    assert_eq!(
        first.iter().map(|e| e.commit).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    assert_eq!(
        serde_json::Value::Object(first[0].after.clone().unwrap()),
        serde_json::json!({"id": 1, "vector_column": [1.1, 2.2, 3.3]})
    );
    assert_eq!(
        (first[2].table.as_str(), first[2].row, first[3].row),
        ("bar", 0, 1)
    );
}

#[tokio::test]
async fn enum_and_set_columns_carry_their_labels() {
    let dir = fixtures();
    let replay = replay(&dir.join("mysql-enum-string-set.000001")).await;
    replay.result.unwrap();
    let deleted = replay
        .events
        .iter()
        .find(|e| e.op == crate::event::Op::Delete)
        .unwrap();
    let before = deleted.before.as_ref().unwrap();
    assert_eq!(before["f3"], serde_json::json!("variant2"));
    assert_eq!(before["f4"], serde_json::json!(["two", "four"]));
    assert!(replay.events[0]
        .gtid
        .as_deref()
        .unwrap()
        .starts_with("93e95066-a2f4-11ec-9b69-9657f0ae95e2:"));
}

/// Runs a reader over `events` with a 1-byte lookahead (every event but a transaction's last
/// is sent at once). With `interrupt_at = Some(n)`, once `n` events are sent mid-transaction the
/// connection is "lost": the reader forgets the open transaction and is fed again from its last
/// boundary, as a reconnect does. Returns every line sent.
async fn run_with_interruption(
    name: &str,
    events: &[mysql_common::binlog::events::Event],
    interrupt_at: Option<u64>,
) -> Vec<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let collector = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(item) = rx.recv().await {
            for event in item.into_events() {
                lines.push(event.line.to_vec());
            }
        }
        lines
    });
    let config = SourceConfig {
        mysql: crate::config::FileConfig::default()
            .validate()
            .unwrap()
            .mysql,
        filter: TableFilter::default(),
        lookahead_bytes: 1,
        resume_by_gtid: false,
        positional_names: false,
        checksum_crc32: true,
        catalog: false,
        partition_by_primary_key: false,
        max_event_bytes: usize::MAX,
        catch_up: None,
        snapshot: None,
        signal_table: None,
        captured: TableFilter::default(),
        columns: Default::default(),
        changes: Default::default(),
        ddl_events: false,
    };
    let mut reader = Reader::new(
        config,
        ResumePoint::at(BinlogPosition::start_of(name).unwrap()),
        tx,
        Arc::new(Metrics::default()),
        None,
    );
    let mut index = 0;
    let mut interrupted = false;
    while index < events.len() {
        reader.handle(&events[index]).await.unwrap();
        index += 1;
        if !interrupted
            && interrupt_at.is_some_and(|n| reader.counts.events >= n)
            && reader.in_transaction()
        {
            interrupted = true;
            reader.forget_open_transaction();

            let resume = reader.boundary.offset();
            index = events
                .iter()
                .position(|e| {
                    u64::from(e.header().log_pos()) - u64::from(e.header().event_size()) >= resume
                })
                .unwrap();
        }
    }
    assert!(
        interrupt_at.is_none() || interrupted,
        "the interruption never happened"
    );
    drop(reader);
    collector.await.unwrap()
}

#[tokio::test]
async fn a_reconnect_mid_transaction_neither_repeats_nor_loses_events() {
    let dir = fixtures();
    let file = BinlogFile::new(
        BinlogVersion::Version4,
        BufReader::new(std::fs::File::open(dir.join("vector.binlog")).unwrap()),
    )
    .unwrap();
    let events: Vec<_> = file.map(Result::unwrap).collect();
    let uninterrupted = run_with_interruption("vector.binlog", &events, None).await;
    assert_eq!(uninterrupted.len(), 10);
    // Interrupt after 1, 2, 3 and 6 events: inside the first and the second transaction.
    for n in [1, 2, 3, 6] {
        let interrupted = run_with_interruption("vector.binlog", &events, Some(n)).await;
        let text = |lines: &[Vec<u8>]| {
            lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect::<String>()
        };
        assert_eq!(
            text(&interrupted),
            text(&uninterrupted),
            "interrupted after {n} events"
        );
    }
}

/// MySQL 9 binary JSON with opaque scalars (a DATE, a DATETIME, a TIME, DECIMALs and a bit
/// value inside documents): each becomes a string, the document stays JSON.
#[tokio::test]
async fn mysql_json_documents_keep_opaque_scalars_as_strings() {
    let dir = fixtures();
    let replay = replay(&dir.join("json-opaque.binlog")).await;
    replay.result.unwrap();
    let documents: Vec<serde_json::Value> = replay
        .events
        .iter()
        .map(|e| e.after.as_ref().unwrap()["a"].clone())
        .collect();
    assert_eq!(
        documents,
        [
            serde_json::json!({"a": "base64:type15:VQ=="}),
            serde_json::json!({"b": "2012-03-18"}),
            serde_json::json!({"c": "2012-03-18 11:30:45.000000"}),
            serde_json::json!({"c": "87:31:46.654321"}),
            serde_json::json!({"d": "123.456"}),
            serde_json::json!({"e": "9.00"}),
            serde_json::json!({"e": [0, 1, true, false]}),
            serde_json::json!({"e": null}),
        ]
    );
    // One transaction: every event carries its XID, the last one commits it.
    assert!(replay.events.iter().all(|e| e.xid == Some(13)));
    assert_eq!(replay.events.iter().filter(|e| e.commit).count(), 1);
}

/// The lines `binlog-kinesis decode FILE` prints, or the error it ends with.
pub(super) async fn decoded(path: &Path) -> (Vec<String>, Result<u64, SourceError>) {
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let collector = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(item) = rx.recv().await {
            for event in item.into_events() {
                lines.push(String::from_utf8(event.line.to_vec()).unwrap());
            }
        }
        lines
    });
    let result = decode_files(&[path.to_owned()], tx, false, None).await;
    (collector.await.unwrap(), result)
}

/// Golden lines for the remaining MySQL 8/9 fixtures, each checked against what the fixture's
/// SQL and `mariadb-binlog -v` show: BIT as numbers (b'100' = 4, b'00100000' = 32), invisible
/// columns present in the row image with their names, a hidden generated column absent from
/// it (@2 of a table whose TABLE_MAP has no names), a negative TIME beyond 24 h, a tagged GTID
/// (`uuid:tag:gno`) and an anonymous GTID (no GTID).
#[tokio::test]
async fn mysql_8_and_9_fixtures_decode_to_golden_lines() {
    let dir = fixtures();
    let cases: &[(&str, &[&str])] = &[
        (
            "mysql_type_bit.000001",
            &[concat!(
                r#"{"op":"insert","database":"mysql","table":"foo","ts_ms":1642940552000,"#,
                r#""position":"mysql_type_bit.000001:927","row":0,"#,
                r#""gtid":"fbda2ad0-7c46-11ec-ae30-4ef7efc81a2a:3","xid":51,"commit":true,"#,
                r#""primary_key":null,"before":null,"after":{"a":4,"b":"foo","c":32}}"#
            )],
        ),
        (
            "binlog-invisible-columns.000001",
            &[
                concat!(
                    r#"{"op":"insert","database":"mysql","table":"t1","ts_ms":1637667166000,"#,
                    r#""position":"binlog-invisible-columns.000001:1027","row":0,"#,
                    r#""gtid":"97c7af02-4c50-11ec-acd8-681842034964:3","xid":53,"commit":true,"#,
                    r#""primary_key":null,"before":null,"#,
                    r#""after":{"f1":1,"f2":2,"f3":-3,"f4":"4","f5":"BQ==","f6":6000000000}}"#
                ),
                concat!(
                    r#"{"op":"insert","database":"mysql","table":"t1","ts_ms":1637667198000,"#,
                    r#""position":"binlog-invisible-columns.000001:1360","row":0,"#,
                    r#""gtid":"97c7af02-4c50-11ec-acd8-681842034964:4","xid":54,"commit":true,"#,
                    r#""primary_key":null,"before":null,"#,
                    r#""after":{"f1":null,"f2":null,"f3":-33,"f4":"44","f5":"VQ==","f6":null}}"#
                ),
                concat!(
                    r#"{"op":"update","database":"mysql","table":"t1","ts_ms":1637667258000,"#,
                    r#""position":"binlog-invisible-columns.000001:1687","row":0,"#,
                    r#""gtid":"97c7af02-4c50-11ec-acd8-681842034964:5","xid":55,"commit":true,"#,
                    r#""primary_key":null,"#,
                    r#""before":{"f1":null,"f2":null,"f3":-33,"f4":"44","f5":"VQ==","f6":null},"#,
                    r#""after":{"f1":111,"f2":222,"f3":-333,"f4":"444","f5":"VQ==","f6":null}}"#
                ),
            ],
        ),
        (
            "rpl_unfiltered_hidden_gcol.000001",
            &[concat!(
                r#"{"op":"insert","database":"test","table":"t","ts_ms":1557756800000,"#,
                r#""position":"master-bin.000001:763","row":0,"gtid":null,"xid":158,"#,
                r#""commit":true,"primary_key":null,"before":null,"after":{"@1":1,"@3":"1"}}"#
            )],
        ),
        (
            "time_issue.000001",
            &[concat!(
                r#"{"op":"insert","database":"noria","table":"t","ts_ms":1746458055000,"#,
                r#""position":"time_issue.000001:358","row":0,"gtid":null,"xid":97694,"#,
                r#""commit":true,"primary_key":null,"before":null,"after":{"@1":"-507:48:27"}}"#
            )],
        ),
        (
            "binlog_transaction_with_GTID_TAG.000001",
            &[concat!(
                r#"{"op":"insert","database":"test","table":"orders","ts_ms":1770368687000,"#,
                r#""position":"binlog_transaction_with_GTID_TAG.000001:461","row":0,"#,
                r#""gtid":"55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3","xid":40,"commit":true,"#,
                r#""primary_key":null,"before":null,"after":{"@1":3,"@2":100,"@3":"250.00"}}"#
            )],
        ),
    ];
    for (file, expected) in cases {
        let (lines, result) = decoded(&dir.join(file)).await;
        result.unwrap_or_else(|e| panic!("{file}: {e}"));
        let expected: Vec<String> = expected.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(lines, expected, "{file}");
    }

    // Anonymous GTIDs (MySQL 5.7): the file's row changes were logged as statements, which
    // must stop decoding with the statement and its position, not pass unseen.
    let (lines, result) = decoded(&dir.join("binlog_transaction_with_anonymous_GTID.000001")).await;
    assert!(lines.is_empty());
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains("binlog_transaction_with_anonymous_GTID.000001:460")
            && error.contains("INSERT INTO t2"),
        "{error}"
    );
}

/// MySQL GTID sets from real files: the state starts from the file's PREVIOUS_GTIDS and every
/// transaction's GTID (tagged ones too) joins it at its boundary, which is what a checkpoint
/// records and what COM_BINLOG_DUMP_GTID resumes from.
#[tokio::test]
async fn mysql_gtid_sets_are_tracked_from_previous_gtids_through_each_transaction() {
    let dir = fixtures();
    for (file, last_gtid_of_an_event, expected) in [
        (
            "mysql_type_bit.000001",
            "fbda2ad0-7c46-11ec-ae30-4ef7efc81a2a:3",
            "fbda2ad0-7c46-11ec-ae30-4ef7efc81a2a:1-3",
        ),
        (
            "binlog_transaction_with_GTID_TAG.000001",
            "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3",
            // PREVIOUS_GTIDS holds :1-13 and :mytag:1-2; the file's one transaction adds
            // mytag:3, printed as MySQL prints tagged sets.
            "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-3",
        ),
    ] {
        let replay = replay_with(&dir.join(file), true).await;
        replay.result.unwrap();
        assert_eq!(
            replay.events.last().unwrap().gtid.as_deref(),
            Some(last_gtid_of_an_event)
        );
        assert_eq!(
            replay.gtids.last().unwrap().as_deref(),
            Some(expected),
            "{file}"
        );
    }
}
