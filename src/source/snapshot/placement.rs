//! Where a chunk's rows go in the stream (issue 14, step 3: the rule, proven on a model; the
//! reader does not call it yet).
//!
//! A chunk read in a consistent read holds the table's rows as of binlog position `at`: every
//! change before `at` is in them, none after. The reader emits the rows between two
//! transactions, at a point `now` of its own:
//! - `now` before `at` (the reader lags): the rows wait until the reader reaches `at`, so they
//!   follow every change they include and precede every change they do not;
//! - `now` at or after `at` (the reader was ahead when the read began, or passed `at` while
//!   the rows were read): the changes of the table between `at` and `now` are already in the
//!   stream, after `at`, and the rows know nothing of them. A row whose key such a change
//!   touched (its before or its after image) is dropped: the change already carries its newer
//!   state (row images are full), or its deletion. Every other row is, at `now`, what it was
//!   at `at`, so emitting it at `now` is the same as at `at`.
//!
//! Either way a consumer that applies the stream in order per key ends with the table's
//! state. The reader records the keys of the table's changes (with their positions) from the
//! moment it asks for a chunk; the chunk's read starts after that moment, so `at` is not
//! before the first recorded change that matters, and the record is bounded by the changes
//! of one table during one chunk read. The model test below replays random interleavings of
//! writes, reads and a lagging or leading reader, and checks the per-key fold against the
//! table.

use std::collections::{HashSet, VecDeque};

use super::SnapshotRow;
use crate::position::BinlogPosition;

/// The rows of one chunk waiting for their place.
#[derive(Debug)]
struct Pending {
    at: BinlogPosition,
    rows: Vec<SnapshotRow>,
}

/// The placement of one table's chunks.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// Keys (JSON objects, as the lines write them) of the table's changes since the current
    /// chunk was asked for, with the position of each change.
    changed: VecDeque<(BinlogPosition, Vec<u8>)>,
    pending: Option<Pending>,
}

impl Placement {
    /// The reader asks for the next chunk at `now`: changes before it cannot be after the
    /// chunk's `at`, so their record is dropped.
    pub(crate) fn asked(&mut self, now: &BinlogPosition) {
        while self
            .changed
            .front()
            .is_some_and(|(position, _)| position.try_cmp(now) == Some(std::cmp::Ordering::Less))
        {
            self.changed.pop_front();
        }
    }

    /// The reader read a change of the table at `position`, touching `keys` (the before and
    /// the after key of an update; one key otherwise).
    pub(crate) fn changed<'a>(
        &mut self,
        position: &BinlogPosition,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) {
        for key in keys {
            self.changed.push_back((position.clone(), key.to_vec()));
        }
    }

    /// A chunk read at `at` arrived.
    pub(crate) fn arrived(&mut self, at: BinlogPosition, rows: Vec<SnapshotRow>) {
        debug_assert!(self.pending.is_none(), "one chunk at a time");
        self.pending = Some(Pending { at, rows });
    }

    /// Whether a chunk is waiting for its place.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Between two transactions, at `now` (the end of the last event read): the rows to emit
    /// here, if the waiting chunk's place has come; see the module docs.
    pub(crate) fn due(&mut self, now: &BinlogPosition) -> Option<Vec<SnapshotRow>> {
        let pending = self.pending.as_ref()?;
        if now.try_cmp(&pending.at) == Some(std::cmp::Ordering::Less) {
            return None;
        }
        let Pending { at, rows } = self.pending.take()?;
        let stale: HashSet<&[u8]> = self
            .changed
            .iter()
            .filter(|(position, _)| position.try_cmp(&at) != Some(std::cmp::Ordering::Less))
            .map(|(_, key)| key.as_slice())
            .collect();
        Some(
            rows.into_iter()
                .filter(|row| !stale.contains(row.primary_key.as_slice()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// One write of the model: key, and the value it leaves (`None`: deleted).
    type Write = (u8, Option<u32>);

    fn key(k: u8) -> Vec<u8> {
        format!("{{\"id\":{k}}}").into_bytes()
    }

    fn row(k: u8, v: u32) -> SnapshotRow {
        SnapshotRow {
            primary_key: key(k),
            after: format!("{{\"id\":{k},\"v\":{v}}}").into_bytes(),
        }
    }

    fn at(index: usize) -> BinlogPosition {
        BinlogPosition::new("bin.000001", 4 + index as u64 * 100).unwrap()
    }

    /// What the stream carries, per key, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Item {
        Change(u8, Option<u32>),
        Row(u8, u32),
    }

    /// Replays `writes` through a reader that asks for chunks of `chunk` keys (in key order)
    /// and gets each after `read_delay` more writes were committed and `arrival_delay` more
    /// were read; returns the stream per key, the table at the end, and every row placed
    /// where the table did not hold it (a row must be the table's state where it is placed,
    /// not only be overwritten into the right end state).
    fn replay(
        writes: &[Write],
        chunk: u8,
        read_delay: usize,
        arrival_delay: usize,
        reader_lag: usize,
    ) -> Replay {
        let mut stream: BTreeMap<u8, Vec<Item>> = BTreeMap::new();
        let mut misplaced = Vec::new();
        let mut placement = Placement::default();
        // The table after the first `n` writes.
        let table_at = |n: usize| {
            let mut table = BTreeMap::new();
            for (k, v) in &writes[..n] {
                match v {
                    Some(v) => table.insert(*k, *v),
                    None => table.remove(k),
                };
            }
            table
        };
        let mut next_key: u16 = 0;
        // (writes committed when the read happens, reader index when it arrives)
        let mut in_flight: Option<(usize, usize, u8)> = None;
        let mut read_upto = 0usize; // the reader has read this many writes
        let committed = |read: usize| (read + reader_lag).min(writes.len());
        loop {
            // Between transactions at `read_upto`.
            let now = at(read_upto);
            if let Some(rows) = placement.due(&now) {
                for r in rows {
                    let v: serde_json::Value = serde_json::from_slice(&r.after).unwrap();
                    let id = v["id"].as_u64().unwrap() as u8;
                    let value = v["v"].as_u64().unwrap() as u32;
                    if table_at(read_upto).get(&id) != Some(&value) {
                        misplaced.push(format!("row {id}={value} after {read_upto} writes"));
                    }
                    stream.entry(id).or_default().push(Item::Row(id, value));
                }
            }
            if in_flight.is_none() && !placement.is_pending() && next_key < 256 {
                placement.asked(&now);
                let committed_at_read = (committed(read_upto) + read_delay).min(writes.len());
                in_flight = Some((committed_at_read, read_upto + arrival_delay, chunk));
            }
            if let Some((c, arrive_at, n)) = in_flight {
                if read_upto >= arrive_at.min(writes.len()) {
                    let table = table_at(c);
                    let high = (next_key + u16::from(n)).min(256);
                    let rows: Vec<SnapshotRow> = table
                        .iter()
                        .filter(|(k, _)| u16::from(**k) >= next_key && u16::from(**k) < high)
                        .map(|(k, v)| row(*k, *v))
                        .collect();
                    next_key = high;
                    placement.arrived(at(c), rows);
                    in_flight = None;
                    continue;
                }
            }
            if read_upto == writes.len() {
                if in_flight.is_none() && !placement.is_pending() && next_key >= 256 {
                    break;
                }
                // Idle at the end: the chunk in flight arrives now.
                if let Some((c, _, n)) = in_flight {
                    in_flight = Some((c, read_upto, n));
                }
                continue;
            }
            let (k, v) = writes[read_upto];
            placement.changed(&at(read_upto), [key(k).as_slice()]);
            stream.entry(k).or_default().push(Item::Change(k, v));
            read_upto += 1;
        }
        Replay {
            stream,
            table: table_at(writes.len()),
            misplaced,
        }
    }

    /// What [`replay`] saw.
    struct Replay {
        /// The stream, per key.
        stream: BTreeMap<u8, Vec<Item>>,
        /// The table after every write.
        table: BTreeMap<u8, u32>,
        /// Rows placed where the table did not hold them.
        misplaced: Vec<String>,
    }

    /// The state a consumer ends with, applying each key's items in order.
    fn fold(stream: &BTreeMap<u8, Vec<Item>>) -> BTreeMap<u8, u32> {
        let mut state = BTreeMap::new();
        for (k, items) in stream {
            for item in items {
                match item {
                    Item::Change(_, Some(v)) | Item::Row(_, v) => {
                        state.insert(*k, *v);
                    }
                    Item::Change(_, None) => {
                        state.remove(k);
                    }
                }
            }
        }
        state
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the interleaving of writes, reads, and a lagging or leading reader, the
        /// per-key fold of the stream is the table, and every row is placed where the table
        /// held it.
        #[test]
        fn the_stream_folds_to_the_table(
            writes in proptest::collection::vec((0u8..=255, proptest::option::of(0u32..1000)), 0..300),
            chunk in 1u8..=64,
            read_delay in 0usize..20,
            arrival_delay in 0usize..20,
            reader_lag in 0usize..20,
        ) {
            let replay = replay(&writes, chunk, read_delay, arrival_delay, reader_lag);
            prop_assert_eq!(fold(&replay.stream), replay.table);
            prop_assert!(replay.misplaced.is_empty(), "{:?}", replay.misplaced);
        }
    }

    /// Without the drop of changed keys, a row read before a change and placed after it would
    /// undo the change: the model catches it.
    #[test]
    fn a_stale_row_is_dropped_not_placed_after_its_change() {
        let mut placement = Placement::default();
        placement.asked(&at(0));
        placement.changed(&at(1), [key(7).as_slice()]);
        placement.arrived(at(1), vec![row(7, 1), row(8, 2)]);
        let rows = placement.due(&at(2)).unwrap();
        assert_eq!(rows, vec![row(8, 2)]);
    }

    /// A chunk read ahead of the reader waits for its place.
    #[test]
    fn a_chunk_ahead_of_the_reader_waits() {
        let mut placement = Placement::default();
        placement.asked(&at(0));
        placement.arrived(at(5), vec![row(1, 1)]);
        assert!(placement.due(&at(4)).is_none());
        assert_eq!(placement.due(&at(5)).unwrap(), vec![row(1, 1)]);
    }
}
