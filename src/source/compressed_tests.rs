//! Compressed transactions (TRANSACTION_PAYLOAD) through the reader code the live stream uses:
//! the real MySQL 8.0.32 fixture, and transactions built from it (its own events, more rows,
//! compressed again with zstd) that are large, corrupt or cut off.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use mysql_common::binlog::events::{RowsEventData, TransactionPayloadEvent};

use super::{file, tests::decoded, tests::replay_with, SourceError};

/// The reader as the live stream drives it; the fixture's table map has no column names, so
/// they are `@1`, `@2`, ... as `decode` names them.
async fn replay(path: &Path) -> super::tests::Replay {
    replay_with(path, true).await
}

const FIXTURE: &str = "transaction_compression.000001";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mysql-binlogs")
        .join(FIXTURE)
}

/// The fixture's bytes up to its payload event, that event's frame, and the frames inside it.
struct Parts {
    prefix: Vec<u8>,
    payload: Vec<u8>,
    inner: Vec<Vec<u8>>,
}

fn parts() -> Parts {
    let bytes = std::fs::read(fixture()).unwrap();
    let mut events = file::EventFile::new(&bytes[..], bytes.len() as u64).unwrap();
    while let Some((offset, event)) = events.next_event().unwrap() {
        if event.header().event_type_raw() != 40 {
            continue;
        }
        let offset = offset as usize;
        let frame = bytes[offset..offset + event.header().event_size() as usize].to_vec();
        let payload: TransactionPayloadEvent<'_> = event.read_event().unwrap();
        let mut input = payload.decompressed().unwrap();
        let mut inner = Vec::new();
        while let Some(frame) = file::read_frame(&mut input, 1 << 30).unwrap() {
            inner.push(frame);
        }
        return Parts {
            prefix: bytes[..offset].to_vec(),
            payload: frame,
            inner,
        };
    }
    panic!("the fixture has no TRANSACTION_PAYLOAD event");
}

/// A length-encoded integer.
fn lenenc(value: u64) -> Vec<u8> {
    match value {
        0..=250 => vec![value as u8],
        251..=0xffff => [&[0xfc][..], &(value as u16).to_le_bytes()].concat(),
        0x1_0000..=0xff_ffff => [&[0xfd][..], &value.to_le_bytes()[..3]].concat(),
        _ => [&[0xfe][..], &value.to_le_bytes()[..]].concat(),
    }
}

impl Parts {
    /// The fixture's transaction with its one rows event repeated `events` times, each holding
    /// its one row `rows` times.
    fn inner_with(&self, events: usize, rows: usize) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_inner(&mut out, events, rows, 0);
        out
    }

    /// As [`Self::inner_with`], into `out`, with `padding` ROWS_QUERY events of 64 KiB each
    /// (which the reader reads past) before the rows: a transaction much larger uncompressed.
    /// Returns the bytes written.
    fn write_inner(&self, out: &mut impl Write, events: usize, rows: usize, padding: usize) -> u64 {
        let fde = mysql_common::binlog::events::FormatDescriptionEvent::new(
            mysql_common::binlog::consts::BinlogVersion::Version4,
        );
        let mut written = 0u64;
        let mut put = |bytes: &[u8]| {
            out.write_all(bytes).unwrap();
            written += bytes.len() as u64;
        };
        for frame in &self.inner {
            if frame[4] != 30 {
                put(frame);
                continue;
            }
            let mut query = frame[..19].to_vec();
            query[4] = 29;
            query.push(0xff);
            query.resize(64 << 10, b'x');
            let size = query.len() as u32;
            query[9..13].copy_from_slice(&size.to_le_bytes());
            for _ in 0..padding {
                put(&query);
            }
            let event = file::decode_inner(&fde, frame).unwrap();
            let row_len = match event.read_data().unwrap().unwrap() {
                mysql_common::binlog::events::EventData::RowsEvent(
                    RowsEventData::WriteRowsEvent(rows),
                ) => rows.rows_data().len(),
                other => panic!("{other:?}"),
            };
            let head = &frame[..frame.len() - row_len];
            let row = &frame[frame.len() - row_len..];
            let mut big = head.to_vec();
            for _ in 0..rows {
                big.extend_from_slice(row);
            }
            let size = big.len() as u32;
            big[9..13].copy_from_slice(&size.to_le_bytes());
            // Each row its own value (the table's one INT column): 1, 2, 3, ...
            assert_eq!(row.len(), 5, "a null bitmap and an INT");
            for e in 0..events {
                for r in 0..rows {
                    let at = head.len() + r * 5 + 1;
                    let value = (e * rows + r + 1) as u32;
                    big[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
                put(&big);
            }
        }
        written
    }

    /// A binlog file: the fixture up to its payload, then a payload event holding `compressed`
    /// (which decompresses to `uncompressed` bytes), with a valid checksum.
    fn file_with(&self, compressed: &[u8], uncompressed: u64) -> Vec<u8> {
        let size = compressed.len() as u64;
        let mut data = vec![1];
        data.extend(lenenc(lenenc(size).len() as u64));
        data.extend(lenenc(size));
        data.extend([2, 1, 0, 3]);
        data.extend(lenenc(lenenc(uncompressed).len() as u64));
        data.extend(lenenc(uncompressed));
        data.push(0);
        data.extend_from_slice(compressed);
        let mut frame = self.payload[..19].to_vec();
        frame.extend(data);
        frame.extend([0; 4]);
        let event_size = frame.len() as u32;
        frame[9..13].copy_from_slice(&event_size.to_le_bytes());
        let end = self.prefix.len() as u32 + event_size;
        frame[13..17].copy_from_slice(&end.to_le_bytes());
        // The checksum, as the server computes it (over everything before it).
        let mut events = file::EventFile::new(&self.prefix[..], self.prefix.len() as u64).unwrap();
        let mut fde = None;
        while let Some((_, event)) = events.next_event().unwrap() {
            if event.header().event_type_raw() == 15 {
                fde = Some(event.fde().clone());
            }
        }
        let event = mysql_common::binlog::events::Event::read(&fde.unwrap(), &frame[..]).unwrap();
        let crc = event.calc_checksum(
            mysql_common::binlog::consts::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32,
        );
        let n = frame.len();
        frame[n - 4..].copy_from_slice(&crc.to_le_bytes());
        [self.prefix.clone(), frame].concat()
    }
}

fn write(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(FIXTURE);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The real fixture: the reader code under the live stream gives what `decode` gives, and
/// both give the golden line (one insert, `@1` = 1, at the payload's position with its XID).
#[tokio::test]
async fn the_live_reader_reads_a_compressed_transaction_as_decode_does() {
    let live = replay(&fixture()).await;
    live.result.unwrap();
    let (lines, result) = decoded(&fixture()).await;
    assert_eq!(result.unwrap(), 1);
    let golden = concat!(
        r#"{"op":"insert","database":"test","table":"tb1","ts_ms":1695159109000,"#,
        r#""position":"transaction_compression.000001:274","row":0,"gtid":null,"xid":462,"#,
        r#""commit":true,"primary_key":null,"before":null,"after":{"@1":1}}"#,
        "\n"
    );
    assert_eq!(lines, [golden]);
    let live: Vec<String> = live
        .events
        .iter()
        .map(|e| String::from_utf8(e.to_line()).unwrap())
        .collect();
    assert_eq!(live, lines);
    // The boundary is after the payload, never inside it.
    let parts = parts();
    let end = (parts.prefix.len() + parts.payload.len()) as u64;
    assert!(live_boundaries_include(&fixture(), end).await);
}

async fn live_boundaries_include(path: &Path, offset: u64) -> bool {
    replay(path)
        .await
        .boundaries
        .iter()
        .any(|b| b.offset() == offset)
}

/// Many rows events inside one payload: each row once, all at the payload's position, rows
/// numbered across the whole payload; the same lines from the live reader and `decode`.
#[tokio::test]
async fn rows_inside_a_payload_are_numbered_across_it_and_read_the_same_twice() {
    let parts = parts();
    let inner = parts.inner_with(3, 4);
    let compressed = zstd::encode_all(&inner[..], 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, &parts.file_with(&compressed, inner.len() as u64));
    let live = replay(&path).await;
    live.result.as_ref().unwrap();
    let rows: Vec<u32> = live.events.iter().map(|e| e.row).collect();
    assert_eq!(rows, (0..12).collect::<Vec<_>>());
    let position = format!("{FIXTURE}:{}", parts.prefix.len());
    assert!(live
        .events
        .iter()
        .all(|e| e.position.to_string() == position));
    let (lines, result) = decoded(&path).await;
    assert_eq!(result.unwrap(), 12);
    let live_lines: Vec<String> = live
        .events
        .iter()
        .map(|e| String::from_utf8(e.to_line()).unwrap())
        .collect();
    assert_eq!(live_lines, lines);
    // Read again (a restart from the boundary before it): the same positions and row numbers.
    let again = replay(&path).await;
    let again: Vec<String> = again
        .events
        .iter()
        .map(|e| String::from_utf8(e.to_line()).unwrap())
        .collect();
    assert_eq!(again, live_lines);
}

/// A payload that does not decompress, is cut off, or holds a cut-off event stops the reader
/// with an error naming the payload's position; no row of it is sent.
#[tokio::test]
async fn a_corrupt_payload_is_an_error_at_its_position_and_sends_nothing() {
    let parts = parts();
    let inner = parts.inner_with(2, 2);
    let compressed = zstd::encode_all(&inner[..], 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = compressed.iter().map(|b| b ^ 0x5a).collect();
    // Cut at the end of the first event: a zstd stream that ends cleanly, a transaction
    // without its rows and its XID.
    let first = u32::from_le_bytes(inner[9..13].try_into().unwrap()) as usize;
    let cut = zstd::encode_all(&inner[..first], 3).unwrap();
    let mut half_event = inner.clone();
    half_event.truncate(inner.len() - 3);
    let half_event = zstd::encode_all(&half_event[..], 3).unwrap();
    let cases: [(&str, Vec<u8>, u64, &str); 3] = [
        (
            "garbage",
            garbage,
            inner.len() as u64,
            "does not decompress",
        ),
        ("cut", cut, inner.len() as u64, "its header says"),
        ("half event", half_event, inner.len() as u64, "cut off"),
    ];
    for (name, payload, size, says) in cases {
        let path = write(&dir, &parts.file_with(&payload, size));
        let live = replay(&path).await;
        let error = live.result.unwrap_err();
        match &error {
            SourceError::UnsupportedEvent {
                event, position, ..
            } => {
                assert_eq!(event, "TRANSACTION_PAYLOAD", "{name}");
                assert_eq!(position.offset(), parts.prefix.len() as u64, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(error.to_string().contains(says), "{name}: {error}");
        assert!(live.events.is_empty(), "{name}: rows were sent");
    }
}

/// The bytes of memory this process has held at most (Linux `VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A compressed transaction of 1,000,000 rows (about 230 MB of lines, 130 MB uncompressed)
/// goes through the reader in bounded memory: every row once and in order, and the process's
/// peak RSS grows far less than holding the lines, or the uncompressed transaction, would take.
#[tokio::test]
async fn a_million_row_compressed_transaction_streams_in_bounded_memory() {
    let parts = parts();
    // Built streaming, so that this process never held the uncompressed transaction.
    let mut encoder = zstd::Encoder::new(Vec::new(), 3).unwrap();
    let uncompressed = parts.write_inner(&mut encoder, 1_000, 1_000, 2_000);
    let compressed = encoder.finish().unwrap();
    assert!(uncompressed > 128 << 20);
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, &parts.file_with(&compressed, uncompressed));
    drop(compressed);
    let before = peak_rss();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::stream::Message>(64);
    let counter = tokio::spawn(async move {
        let (mut rows, mut bytes, mut in_order) = (0u64, 0u64, true);
        while let Some(message) = rx.recv().await {
            for event in message.into_events() {
                let line = event.line.to_vec();
                let expected = format!(r#""row":{rows},"#);
                in_order &= line
                    .windows(expected.len())
                    .any(|w| w == expected.as_bytes());
                rows += 1;
                bytes += line.len() as u64;
            }
        }
        (rows, bytes, in_order)
    });
    let sent = super::decode_files(&[path], tx, false, None).await.unwrap();
    let (rows, bytes, in_order) = counter.await.unwrap();
    assert_eq!((sent, rows), (1_000_000, 1_000_000));
    assert!(in_order, "rows out of order");
    assert!(bytes > 200 << 20, "only {bytes} bytes of lines");
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "peak RSS grew by {} MiB while reading",
        grown >> 20
    );
}

/// A transaction reaches the sink in batches: each at most `BATCH_BYTES` of lines, in order,
/// far fewer channel operations than events. (A batch limited only by the lookahead, 8 MiB
/// here, made the channel hold 64 of them: the million-row test above caught it.)
#[tokio::test]
async fn a_transaction_reaches_the_sink_in_batches_bounded_in_bytes() {
    use crate::stream::{Message, BATCH_BYTES};
    let parts = parts();
    let inner = parts.inner_with(10, 500);
    let compressed = zstd::encode_all(&inner[..], 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, &parts.file_with(&compressed, inner.len() as u64));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(4);
    let collector = tokio::spawn(async move {
        let (mut batches, mut rows) = (Vec::new(), Vec::new());
        while let Some(message) = rx.recv().await {
            if let Message::Events(events) = &message {
                batches.push((
                    events.len(),
                    events.iter().map(|e| e.line.len()).sum::<usize>(),
                ));
            }
            for event in message.into_events() {
                rows.push(event.line.to_vec());
            }
        }
        (batches, rows)
    });
    let sent = super::decode_files(&[path], tx, false, None).await.unwrap();
    let (batches, rows) = collector.await.unwrap();
    assert_eq!((sent, rows.len()), (5_000, 5_000));
    for (n, line) in rows.iter().enumerate() {
        let expected = format!(r#""row":{n},"#);
        assert!(line
            .windows(expected.len())
            .any(|w| w == expected.as_bytes()));
    }
    let total: usize = batches.iter().map(|b| b.1).sum();
    assert!(total > 4 * BATCH_BYTES, "{total} bytes");
    assert!(
        batches
            .iter()
            .all(|&(n, bytes)| n == 1 || bytes <= BATCH_BYTES),
        "{batches:?}"
    );
    assert!(
        batches.len() <= total / BATCH_BYTES + 2,
        "{} batches",
        batches.len()
    );
}

/// A large transaction of many rows events: encoded on three threads or in place, the same
/// lines in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoding_pool_keeps_the_order_of_many_rows_events() {
    let parts = parts();
    let inner = parts.inner_with(200, 30);
    let compressed = zstd::encode_all(&inner[..], 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, &parts.file_with(&compressed, inner.len() as u64));
    let lines = |replay: super::tests::Replay| {
        replay.result.unwrap();
        replay
            .events
            .iter()
            .map(|e| String::from_utf8(e.to_line()).unwrap())
            .collect::<Vec<_>>()
    };
    let inline = lines(super::tests::replay_threads(&path, true, Some(0)).await);
    let pooled = lines(super::tests::replay_threads(&path, true, Some(3)).await);
    assert_eq!(inline.len(), 6_000);
    for (n, line) in inline.iter().enumerate() {
        assert!(
            line.contains(&format!(r#""after":{{"@1":{}}}"#, n + 1)),
            "{line}"
        );
    }
    assert_eq!(pooled, inline);
}
