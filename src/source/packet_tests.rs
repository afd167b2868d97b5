//! Corrupt replication packets: the vendored driver refuses an event whose length does not
//! match its header (or that is too short for its checksum) instead of letting
//! `mysql_common`'s `Event::read` panic on it (`mysql_async::binlog_event_fits`, checked on
//! every packet of the live stream before it is parsed).

use std::panic::{catch_unwind, AssertUnwindSafe};

use mysql_common::binlog::{consts::BinlogVersion, EventStreamReader};

/// The events of a real MySQL 8.0.26 binlog file with CRC32 checksums, as the server sends them (one
/// per packet, after the 0x00 byte).
fn frames() -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mysql-binlogs/binlog-invisible-columns.000001");
    let bytes = std::fs::read(path).unwrap();
    let mut frames = Vec::new();
    let mut at = 4;
    while at + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        frames.push(bytes[at..at + size].to_vec());
        at += size;
    }
    frames
}

/// A reader past the file's format description (so it expects CRC32 checksums).
fn reader(frames: &[Vec<u8>]) -> EventStreamReader {
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    reader.read(&frames[0][..]).unwrap().unwrap();
    reader
}

/// Whether reading `frame` panics (on a fresh copy of the reader's state).
fn panics(frames: &[Vec<u8>], frame: &[u8]) -> bool {
    let mut reader = reader(frames);
    catch_unwind(AssertUnwindSafe(|| {
        // An error is fine here; only a panic is not.
        let _read: std::io::Result<_> = reader.read(frame);
    }))
    .is_err()
}

#[test]
fn every_real_event_fits_and_a_cut_or_resized_one_is_refused_before_it_can_panic() {
    let frames = frames();
    assert!(frames.len() > 5);
    let reader = reader(&frames);
    assert!(matches!(
        reader.get_fde().footer().get_checksum_alg(),
        Ok(Some(
            mysql_common::binlog::consts::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32
        ))
    ));
    for frame in &frames {
        assert!(mysql_async::binlog_event_fits(reader.get_fde(), frame));
    }
    // Regression: a packet shorter than its header's size panicked the reader thread
    // (`read_exact(..).unwrap()` in `mysql_common`); the guard refuses it.
    let event = &frames[2];
    let cut = &event[..event.len() - 1];
    assert!(panics(&frames, cut), "mysql_common panics on this packet");
    assert!(!mysql_async::binlog_event_fits(reader.get_fde(), cut));
    // Every cut, every header size, and events shorter than a checksum: whatever the guard
    // lets through reads without a panic.
    for frame in &frames[1..] {
        let mut variants: Vec<Vec<u8>> = (0..frame.len()).map(|n| frame[..n].to_vec()).collect();
        for size in [
            0u32,
            1,
            18,
            19,
            20,
            22,
            23,
            frame.len() as u32 + 1,
            u32::MAX,
        ] {
            let mut resized = frame.clone();
            resized[9..13].copy_from_slice(&size.to_le_bytes());
            variants.push(resized.clone());
            resized.truncate((size as usize).min(resized.len()));
            variants.push(resized);
        }
        for variant in variants {
            if mysql_async::binlog_event_fits(reader.get_fde(), &variant) {
                assert!(!panics(&frames, &variant), "{variant:?}");
            }
        }
    }
}
