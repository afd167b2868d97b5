//! Kinesis request limits as constants, and the pure rules that pack events into records and
//! records into PutRecords calls.
//!
//! A record holds one or more consecutive event lines of one partition key, each ending with
//! `\n` (Firehose concatenates records with no separator, so the newline must be in the data).
//! A record never exceeds the configured maximum, partition key included.

/// Records per PutRecords call (AWS limit).
pub(crate) const MAX_RECORDS_PER_CALL: usize = 500;

/// Bytes per PutRecords call, data and partition keys (AWS limit: 5 MiB).
pub(crate) const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;

/// How many leading events (of the line lengths `lines`) fit in one record for a key of
/// `key_len` bytes, given `max_record_bytes` and at most `max_events`, and their bytes. Returns
/// 0 only when the first event alone is too large.
pub(crate) fn events_in_record(
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
pub(crate) fn fits_in_call(n_records: usize, call_bytes: usize, record_bytes: usize) -> bool {
    n_records < MAX_RECORDS_PER_CALL && call_bytes + record_bytes <= MAX_BYTES_PER_CALL
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

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
