//! Partial JSON updates (PARTIAL_UPDATE_ROWS) through the reader code the live stream uses.
//!
//! `json.binlog.000001` (MySQL 8.0.22) ends with a real one: after
//! `UPDATE t SET json_col = JSON_REPLACE(json_col, '$.age', age + 1)` had been logged in full
//! (ages 24/32/40 to 25/33/41), the same statement was logged with
//! `binlog_row_value_options=PARTIAL_JSON` and `binlog_row_image=MINIMAL`: its before images
//! hold only `id`, its after images a `REPLACE $.age` diff with 26, 34 and 42. The daemon must
//! stop there, naming table, column and position. The test then gives that event the FULL
//! before images the server would have written (the full update's after images, byte for
//! byte) and checks the reconstructed documents against golden lines written from the SQL.

use std::path::{Path, PathBuf};

use mysql_common::binlog::{consts::BinlogChecksumAlg, events::Event};

use super::{file, tests::replay_with, SourceError};

const FIXTURE: &str = "json.binlog.000001";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mysql-binlogs")
        .join(FIXTURE)
}

/// The fixture's real partial update stops the reader: MINIMAL before images lack the
/// document the diff applies to, and no value is guessed.
#[tokio::test]
async fn a_partial_update_without_the_before_document_stops_naming_table_column_position() {
    let replay = replay_with(&fixture(), true).await;
    // Everything before it is read (6 inserts, 6 full updates); nothing of it is sent.
    assert_eq!(replay.events.len(), 12);
    let error = replay.result.unwrap_err();
    match &error {
        SourceError::Decode {
            table, position, ..
        } => {
            assert_eq!(table.to_string(), "mysql.t");
            assert_eq!(position.to_string(), format!("{FIXTURE}:3750"));
        }
        other => panic!("{other:?}"),
    }
    let text = format!("{error}: {}", error_chain(&error));
    for needed in ["@2", "binlog_row_image", "FULL"] {
        assert!(text.contains(needed), "{needed} missing from: {text}");
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!("{e}: "));
        source = e.source();
    }
    text
}

/// Length of one full row image of table `t` (`id` INT, `json_col` JSON, `name`
/// VARCHAR(100) utf8mb4, `age` INT; no NULLs): null bitmap, 4, 4 + n, 2 + n, 4.
fn full_image_len(image: &[u8]) -> usize {
    let json = u32::from_le_bytes(image[5..9].try_into().unwrap()) as usize;
    let at = 9 + json;
    let name = u16::from_le_bytes(image[at..at + 2].try_into().unwrap()) as usize;
    at + 2 + name + 4
}

/// The frame starting at `offset`.
fn frame_at(bytes: &[u8], offset: usize) -> &[u8] {
    let size = u32::from_le_bytes(bytes[offset + 9..offset + 13].try_into().unwrap()) as usize;
    &bytes[offset..offset + size]
}

/// The fixture with its partial update given FULL before images.
fn with_full_before_images() -> Vec<u8> {
    let bytes = std::fs::read(fixture()).unwrap();
    let (full, partial) = (frame_at(&bytes, 2612), frame_at(&bytes, 3750));
    assert_eq!((full[4], partial[4]), (31, 39), "event types");
    // Rows start after: header 19, table id 6, flags 2, extra-data length 2 (= 2, none),
    // column count 1 (4), and one byte per image bitmap.
    let rows = |frame: &[u8]| frame[19 + 6 + 2 + 2 + 1 + 2..frame.len() - 4].to_vec();
    let full_rows = rows(full);
    let partial_rows = rows(partial);
    let mut new_rows = Vec::new();
    let (mut f, mut p) = (0, 0);
    for _ in 0..6 {
        // The full update: before image, then after image (the partial update's before).
        f += full_image_len(&full_rows[f..]);
        let after_len = full_image_len(&full_rows[f..]);
        new_rows.extend_from_slice(&full_rows[f..f + after_len]);
        f += after_len;
        // The partial update: before = null bitmap + id; after = options, partial bits,
        // null bitmap (3 columns), json diffs, name, age.
        let id = &partial_rows[p + 1..p + 5];
        p += 5;
        let (options, bits) = (partial_rows[p], partial_rows[p + 1]);
        assert_eq!((options, bits), (1, 1), "a partial JSON column");
        let diffs = u32::from_le_bytes(partial_rows[p + 3..p + 7].try_into().unwrap()) as usize;
        let name_at = p + 7 + diffs;
        let name = u16::from_le_bytes(partial_rows[name_at..name_at + 2].try_into().unwrap());
        let end = name_at + 2 + usize::from(name) + 4;
        new_rows.extend_from_slice(&[1, 1, 0]);
        new_rows.extend_from_slice(id);
        new_rows.extend_from_slice(&partial_rows[p + 3..end]);
        p = end;
    }
    assert_eq!((f, p), (full_rows.len(), partial_rows.len()));
    let mut frame = partial[..19 + 6 + 2 + 2 + 1].to_vec();
    frame.extend_from_slice(&[0x0f, 0x0f]);
    frame.extend(new_rows);
    frame.extend([0; 4]);
    let size = frame.len() as u32;
    frame[9..13].copy_from_slice(&size.to_le_bytes());
    frame[13..17].copy_from_slice(&(3750 + size).to_le_bytes());
    let mut events = file::EventFile::new(&bytes[..], bytes.len() as u64).unwrap();
    let (_, first) = events.next_event().unwrap().unwrap();
    let event = Event::read(first.fde(), &frame[..]).unwrap();
    let crc = event.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
    let n = frame.len();
    frame[n - 4..].copy_from_slice(&crc.to_le_bytes());
    [&bytes[..3750], &frame[..], &bytes[3750 + partial.len()..]].concat()
}

/// With FULL before images the diffs are applied: ordinary updates whose after documents are
/// the before documents with `$.age` replaced, as the statement did. (The timestamp and XID
/// are the fixture's event header and XID event: 1615797869 and 53.)
#[tokio::test]
async fn partial_updates_with_full_before_images_become_whole_documents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FIXTURE);
    std::fs::write(&path, with_full_before_images()).unwrap();
    let replay = replay_with(&path, true).await;
    replay.result.as_ref().unwrap();
    let lines: Vec<String> = replay.events[12..]
        .iter()
        .map(|e| String::from_utf8(e.to_line()).unwrap())
        .collect();
    let golden: Vec<String> = [
        (1, "Joe", "xxxxxxxxxx", 25),
        (2, "Sue", "yyyyyyyyyy", 33),
        (3, "Pete", "zzzzzzzzzz", 41),
        (4, "Joe", "xxxxxxxxxx", 25),
        (5, "Sue", "yyyyyyyyyy", 33),
        (6, "Pete", "zzzzzzzzzz", 41),
    ]
    .iter()
    .enumerate()
    .map(|(row, (id, name, data, age))| {
        let image = |age: u32| {
            format!(
                r#"{{"@1":{id},"@2":{{"age":{age},"data":"{data}","name":"{name}"}},"@3":"{name}","@4":{age}}}"#
            )
        };
        format!(
            concat!(
                r#"{{"op":"update","database":"mysql","table":"t","ts_ms":1615797869000,"#,
                r#""position":"json.binlog.000001:3750","row":{},"gtid":null,"xid":53,"#,
                r#""commit":{},"primary_key":null,"before":{},"after":{}}}"#,
                "\n"
            ),
            row,
            row == 5,
            image(*age),
            image(age + 1)
        )
    })
    .collect();
    assert_eq!(lines, golden);
    // `decode` reads the same file to the same lines.
    let (decoded, result) = super::tests::decoded(&path).await;
    assert_eq!(result.unwrap(), 18);
    assert_eq!(decoded[12..], lines[..]);
}
