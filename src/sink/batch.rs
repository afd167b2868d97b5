//! Kinesis request limits as constants, and the pure rules that pack events into records and
//! records into PutRecords calls.
//!
//! A record holds one or more consecutive event lines of one partition key, each ending with
//! `\n` (Firehose concatenates records with no separator, so the newline must be in the data).
//! A record never exceeds the configured maximum, partition key included.

/// Records per PutRecords call (AWS limit).
pub const MAX_RECORDS_PER_CALL: usize = 500;

/// Bytes per PutRecords call, data and partition keys (AWS limit: 5 MiB).
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;

/// Characters in a partition key (AWS limit).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// The partition key of an event: its table (`database.table`), or with `by_primary_key` its
/// table and key values (`database.table/{"id":7}`), so that each row keeps its order while a
/// hot table spreads over shards. `primary_key` is the row's key as a JSON object. A key longer
/// than Kinesis allows has its values replaced by their SHA-256
/// (`database.table/#<64 hex digits>`): stable across restarts and versions, never truncated
/// into a collision. A table without a primary key keeps the table key.
pub fn partition_key(
    table: &TableName,
    primary_key: Option<&[u8]>,
    by_primary_key: bool,
) -> Arc<str> {
    let Some(values) = primary_key.filter(|_| by_primary_key) else {
        return table.shared();
    };
    let values = String::from_utf8_lossy(values);
    let key = format!("{table}/{values}");
    if key.chars().count() <= MAX_PARTITION_KEY_CHARS {
        return key.into();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(values.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{table}/#{hex}").into()
}

/// How many leading events (of the line lengths `lines`) fit in one record for a key of
/// `key_len` bytes, given `max_record_bytes` and at most `max_events`, and their bytes. Returns
/// 0 only when the first event alone is too large.
pub fn events_in_record(
    lines: impl IntoIterator<Item = usize>,
    key_len: usize,
    max_record_bytes: usize,
    max_events: usize,
) -> (usize, usize) {
    let mut count = 0;
    let mut bytes = key_len;
    for line in lines.into_iter().take(max_events) {
        if bytes + line > max_record_bytes {
            break;
        }
        bytes += line;
        count += 1;
    }
    (count, bytes - key_len)
}

/// Whether a record of `record_bytes` (data plus key) still fits in a call that already holds
/// `n_records` records and `call_bytes` bytes.
pub fn fits_in_call(n_records: usize, call_bytes: usize, record_bytes: usize) -> bool {
    n_records < MAX_RECORDS_PER_CALL && call_bytes + record_bytes <= MAX_BYTES_PER_CALL
}

use std::sync::Arc;

use crate::event::TableName;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn partition_keys_are_the_table_or_the_row_and_long_ones_are_hashed() {
        let table = TableName::new("shop", "orders");
        let pk = br#"{"id":7,"region":"eu"}"#.as_slice();
        assert_eq!(&*partition_key(&table, Some(pk), false), "shop.orders");
        assert_eq!(&*partition_key(&table, None, true), "shop.orders");
        assert_eq!(
            &*partition_key(&table, Some(pk), true),
            r#"shop.orders/{"id":7,"region":"eu"}"#
        );
        let long = serde_json::to_vec(&serde_json::json!({"id": "x".repeat(300)})).unwrap();
        let key = partition_key(&table, Some(&long), true);
        assert_eq!(key.len(), "shop.orders/#".len() + 64);
        assert!(key.starts_with("shop.orders/#"));
        assert_eq!(key, partition_key(&table, Some(&long), true), "stable");
        // Golden: the hash is part of the stream's contract (keys must not move between
        // versions).
        let expected = {
            use sha2::{Digest, Sha256};
            let hex: String = Sha256::digest(&long)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("shop.orders/#{hex}")
        };
        assert_eq!(&*key, expected);
        let other = serde_json::to_vec(&serde_json::json!({"id": "y".repeat(300)})).unwrap();
        assert_ne!(key, partition_key(&table, Some(&other), true));
    }

    #[test]
    fn packs_consecutive_events_up_to_the_limit() {
        let lines = [40, 40, 40];
        let (count, bytes) = events_in_record(lines, 10, 100, usize::MAX);
        assert_eq!((count, bytes), (2, 80));
        let (count, _) = events_in_record(lines, 10, 49, usize::MAX);
        assert_eq!(count, 0, "an event larger than a record must not be packed");
        let (count, bytes) = events_in_record(lines, 10, 1000, 1);
        assert_eq!((count, bytes), (1, 40), "max_events_per_record");
    }

    proptest! {
        #[test]
        fn a_record_never_exceeds_the_limit(
            sizes in prop::collection::vec(1usize..3000, 1..50),
            key_len in 1usize..256,
            max in 1024usize..10_000,
        ) {
            let (count, bytes) = events_in_record(sizes.iter().copied(), key_len, max, usize::MAX);
            prop_assert!(bytes + key_len <= max);
            prop_assert_eq!(bytes, sizes[..count].iter().sum::<usize>());
            if count < sizes.len() {
                prop_assert!(bytes + key_len + sizes[count] > max, "stopped early");
            }
        }

        #[test]
        fn a_call_never_exceeds_the_limits(sizes in prop::collection::vec(1usize..1_100_000, 1..800)) {
            let (mut n, mut bytes) = (0, 0);
            for size in sizes {
                if fits_in_call(n, bytes, size) {
                    n += 1;
                    bytes += size;
                }
            }
            prop_assert!(n <= MAX_RECORDS_PER_CALL && bytes <= MAX_BYTES_PER_CALL);
        }
    }
}
