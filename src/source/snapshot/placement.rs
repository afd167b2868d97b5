//! Where a chunk's rows go in the stream: the rule, proven on a model.
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
//! A change of the whole table between `at` and `now` (a TRUNCATE, or a DDL statement that
//! may have changed its columns) makes every row of the chunk suspect: the chunk is read
//! again, from the same key, in a new consistent read.
//!
//! Either way a consumer that applies the stream in order per key ends with the table's
//! state.
//!
//! # Watermarks (MySQL, or `snapshot.method = "watermark"`)
//!
//! MySQL does not say which binlog position a read saw. The driver then writes a low
//! watermark (an upsert of its row in `snapshot.signal_table`, committed on its own), reads
//! the chunk with one plain `SELECT`, and writes a high watermark. The chunk is placed with
//! `at` = where the low watermark's event ends, and only once the reader has read the high
//! watermark. Why that is right:
//! - Every transaction before the low watermark in the binlog is in the read. The low
//!   watermark is a committed write, and with `binlog_order_commits` (the default) a
//!   transaction is visible to new reads only in binlog order: when the watermark's commit
//!   returns, everything before it in the binlog is committed and visible, and the `SELECT`
//!   starts after that. (A position read with `SHOW MASTER STATUS` would not do: a
//!   transaction can be in the binlog and not yet visible.)
//! - No transaction after the high watermark is in the read: the `SELECT` has finished before
//!   the high watermark is written, so whatever it saw committed before, and so precedes the
//!   high watermark in the binlog.
//! - A transaction between the two may or may not be in the read: it is after `at`, so the
//!   rows whose keys it touched are dropped, exactly as for a reader past `at` above; its
//!   events, already in the stream (the reader has read up to the high watermark), carry
//!   those rows' newer state. Every other row of the chunk is the same at the high watermark
//!   as at the low one, so emitting it there is right.
//!
//! A table without a primary key cannot be placed this way (there is no key to drop rows by):
//! the watermark method refuses it by name. The reader records the keys of the table's changes (with their positions) from the
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

/// What a due chunk comes to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// The rows to emit here.
    Rows(Vec<SnapshotRow>),
    /// The table as a whole changed after the read (a TRUNCATE, a DDL): none of the rows can
    /// be trusted, read the same chunk again.
    Again,
}

/// The placement of one table's chunks.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// Keys (JSON objects, as the lines write them) of the table's changes since the current
    /// chunk was asked for, with the position of each change; `None` for a change of the
    /// whole table.
    changed: VecDeque<(BinlogPosition, Option<Vec<u8>>)>,
    pending: Option<Pending>,
    /// A DDL statement was read since the chunk was asked for: the read may have used the
    /// table's old definition, wherever the statement is.
    ddl: bool,
}

impl Placement {
    /// The reader asks for the next chunk at `now`: the chunk's read starts later, so its
    /// `at` is at or after `now`, and changes that end at or before `now` are in it: their
    /// record is dropped.
    pub(crate) fn asked(&mut self, now: &BinlogPosition) {
        self.ddl = false;
        while self.changed.front().is_some_and(|(position, _)| {
            matches!(
                position.try_cmp(now),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            )
        }) {
            self.changed.pop_front();
        }
    }

    /// The reader sent a change of the table that ends at `position` (its transaction's end,
    /// or any position inside it: a transaction is wholly before or wholly after a read's
    /// `at`), touching `keys` (the before and the after key of an update; one key otherwise).
    pub(crate) fn changed<'a>(
        &mut self,
        position: &BinlogPosition,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) {
        for key in keys {
            self.changed
                .push_back((position.clone(), Some(key.to_vec())));
        }
    }

    /// The reader read a change of the whole table that ends at `position`: a TRUNCATE, or a
    /// DDL statement (which may have changed its columns).
    pub(crate) fn reset(&mut self, position: &BinlogPosition) {
        self.changed.push_back((position.clone(), None));
    }

    /// The reader read a DDL statement: the chunk asked for may have been read with the
    /// table's definition from before it (the driver describes a table again only when asked
    /// after a DDL), so it is read again, whether the statement is before or after `at`.
    pub(crate) fn ddl(&mut self) {
        self.ddl = true;
    }

    /// A chunk read at `at` arrived.
    pub(crate) fn arrived(&mut self, at: BinlogPosition, rows: Vec<SnapshotRow>) {
        debug_assert!(self.pending.is_none(), "one chunk at a time");
        self.pending = Some(Pending { at, rows });
    }

    /// Whether a chunk is waiting for its place.
    #[cfg(test)]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops the waiting chunk and the record of changes (the reader stops reading this
    /// table, or reads it again from its start).
    pub(crate) fn clear(&mut self) {
        self.pending = None;
        self.changed.clear();
        self.ddl = false;
    }

    /// Between two transactions, at `now` (the end of the last event read): what the waiting
    /// chunk comes to, if its place has come; see the module docs.
    pub(crate) fn due(&mut self, now: &BinlogPosition) -> Option<Due> {
        let pending = self.pending.as_ref()?;
        if now.try_cmp(&pending.at) == Some(std::cmp::Ordering::Less) {
            return None;
        }
        let Pending { at, rows } = self.pending.take()?;
        if self.ddl {
            return Some(Due::Again);
        }
        // A change that ends after `at` is not in the read. Not known to end at or before it
        // (incomparable positions): treated as after, which only ever drops a row whose key
        // has a change in the stream.
        let after_read = self.changed.iter().filter(|(position, _)| {
            !matches!(
                position.try_cmp(&at),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            )
        });
        let mut stale: HashSet<&[u8]> = HashSet::new();
        for (_, key) in after_read {
            match key {
                Some(key) => {
                    stale.insert(key.as_slice());
                }
                None => return Some(Due::Again),
            }
        }
        Some(Due::Rows(
            rows.into_iter()
                .filter(|row| !stale.contains(row.place_key()))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// One write of the model.
    #[derive(Debug, Clone, Copy)]
    enum Write {
        /// A key and the value it leaves (`None`: deleted).
        Set(u8, Option<u32>),
        /// Every row deleted at once.
        Truncate,
    }

    fn key(k: u8) -> Vec<u8> {
        format!("{{\"id\":{k}}}").into_bytes()
    }

    fn row(k: u8, v: u32) -> SnapshotRow {
        SnapshotRow {
            primary_key: key(k),
            unique_key: Vec::new(),
            after: format!("{{\"id\":{k},\"v\":{v}}}").into_bytes(),
        }
    }

    fn at(index: usize) -> BinlogPosition {
        BinlogPosition::new("bin.000001", 4 + index as u64 * 100).unwrap()
    }

    /// What the stream carries, in order (one table: one partition key).
    #[derive(Debug, Clone, PartialEq)]
    enum Item {
        Change(u8, Option<u32>),
        Truncate,
        Row(u8, u32),
    }

    /// Replays `writes` through a reader that asks for chunks of `chunk` keys (in key order)
    /// and gets each after `read_delay` more writes were committed and `arrival_delay` more
    /// were read; returns the stream, the table at the end, and every row placed where the
    /// table did not hold it (a row must be the table's state where it is placed, not only
    /// be overwritten into the right end state).
    fn replay(
        writes: &[Write],
        chunk: u8,
        read_delay: usize,
        arrival_delay: usize,
        reader_lag: usize,
    ) -> Replay {
        let mut stream = Vec::new();
        let mut misplaced = Vec::new();
        let mut placement = Placement::default();
        // The table after the first `n` writes.
        let table_at = |n: usize| {
            let mut table = BTreeMap::new();
            for write in &writes[..n] {
                match *write {
                    Write::Set(k, Some(v)) => {
                        table.insert(k, v);
                    }
                    Write::Set(k, None) => {
                        table.remove(&k);
                    }
                    Write::Truncate => table.clear(),
                }
            }
            table
        };
        let mut next_key: u16 = 0;
        // (writes committed when the read happens, reader index when it arrives, chunk range)
        let mut in_flight: Option<(usize, usize, u16, u16)> = None;
        // The range of the chunk waiting for its place.
        let mut waiting: Option<(u16, u16)> = None;
        let mut read_upto = 0usize; // the reader has read this many writes
        let committed = |read: usize| (read + reader_lag).min(writes.len());
        loop {
            // Between transactions at `read_upto`.
            let now = at(read_upto);
            match placement.due(&now) {
                Some(Due::Rows(rows)) => {
                    for r in rows {
                        let v: serde_json::Value = serde_json::from_slice(&r.after).unwrap();
                        let id = v["id"].as_u64().unwrap() as u8;
                        let value = v["v"].as_u64().unwrap() as u32;
                        if table_at(read_upto).get(&id) != Some(&value) {
                            misplaced.push(format!("row {id}={value} after {read_upto} writes"));
                        }
                        stream.push(Item::Row(id, value));
                    }
                    waiting = None;
                }
                Some(Due::Again) => {
                    // The same range again.
                    next_key = waiting.take().expect("a chunk was waiting").0;
                }
                None => {}
            }
            if in_flight.is_none() && !placement.is_pending() && next_key < 256 {
                placement.asked(&now);
                let committed_at_read = (committed(read_upto) + read_delay).min(writes.len());
                let high = (next_key + u16::from(chunk)).min(256);
                in_flight = Some((committed_at_read, read_upto + arrival_delay, next_key, high));
                next_key = high;
            }
            if let Some((c, arrive_at, low, high)) = in_flight {
                if read_upto >= arrive_at.min(writes.len()) {
                    let rows: Vec<SnapshotRow> = table_at(c)
                        .iter()
                        .filter(|(k, _)| (low..high).contains(&u16::from(**k)))
                        .map(|(k, v)| row(*k, *v))
                        .collect();
                    placement.arrived(at(c), rows);
                    waiting = Some((low, high));
                    in_flight = None;
                    continue;
                }
            }
            if read_upto == writes.len() {
                if in_flight.is_none() && !placement.is_pending() && next_key >= 256 {
                    break;
                }
                // Idle at the end: the chunk in flight arrives now.
                if let Some((c, _, low, high)) = in_flight {
                    in_flight = Some((c, read_upto, low, high));
                }
                continue;
            }
            // Write `i` ends at `at(i + 1)`; a read after `c` writes is at `at(c)`.
            match writes[read_upto] {
                Write::Set(k, v) => {
                    placement.changed(&at(read_upto + 1), [key(k).as_slice()]);
                    stream.push(Item::Change(k, v));
                }
                Write::Truncate => {
                    placement.reset(&at(read_upto + 1));
                    stream.push(Item::Truncate);
                }
            }
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
        /// The stream, in order.
        stream: Vec<Item>,
        /// The table after every write.
        table: BTreeMap<u8, u32>,
        /// Rows placed where the table did not hold them.
        misplaced: Vec<String>,
    }

    /// The state a consumer ends with, applying the items in order.
    fn fold(stream: &[Item]) -> BTreeMap<u8, u32> {
        let mut state = BTreeMap::new();
        for item in stream {
            match item {
                Item::Change(k, Some(v)) | Item::Row(k, v) => {
                    state.insert(*k, *v);
                }
                Item::Change(k, None) => {
                    state.remove(k);
                }
                Item::Truncate => state.clear(),
            }
        }
        state
    }

    fn write() -> impl Strategy<Value = Write> {
        prop_oneof![
            60 => (0u8..=255, proptest::option::of(0u32..1000)).prop_map(|(k, v)| Write::Set(k, v)),
            1 => Just(Write::Truncate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the interleaving of writes (truncates included), reads, and a lagging or
        /// leading reader, the fold of the stream is the table, and every row is placed where
        /// the table held it.
        #[test]
        fn the_stream_folds_to_the_table(
            writes in proptest::collection::vec(write(), 0..300),
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
        placement.changed(&at(2), [key(7).as_slice()]);
        placement.arrived(at(1), vec![row(7, 1), row(8, 2)]);
        assert_eq!(placement.due(&at(2)), Some(Due::Rows(vec![row(8, 2)])));
    }

    /// A chunk read before a TRUNCATE and due after it is read again.
    #[test]
    fn a_chunk_read_before_a_truncate_is_read_again() {
        let mut placement = Placement::default();
        placement.asked(&at(0));
        placement.reset(&at(2));
        placement.arrived(at(1), vec![row(7, 1)]);
        assert_eq!(placement.due(&at(3)), Some(Due::Again));
        placement.asked(&at(3));
        placement.arrived(at(3), vec![]);
        assert_eq!(placement.due(&at(3)), Some(Due::Rows(vec![])));
    }

    /// A change that ends exactly where the read is, is in it: the row stays (it used to be
    /// dropped, so a row changed before the read and never again was missing from the
    /// snapshot, though its change kept the fold right).
    #[test]
    fn a_change_that_ends_where_the_read_is_is_in_it() {
        let mut placement = Placement::default();
        placement.asked(&at(0));
        placement.changed(&at(1), [key(7).as_slice()]);
        placement.arrived(at(1), vec![row(7, 1)]);
        assert_eq!(placement.due(&at(1)), Some(Due::Rows(vec![row(7, 1)])));
    }

    /// A DDL statement read after the ask reads the chunk again even when it is before the
    /// read's position: the read may have used the old definition.
    #[test]
    fn a_ddl_after_the_ask_reads_the_chunk_again_wherever_it_is() {
        let mut placement = Placement::default();
        placement.asked(&at(0));
        placement.ddl();
        placement.arrived(at(5), vec![row(1, 1)]);
        assert_eq!(placement.due(&at(5)), Some(Due::Again));
        placement.asked(&at(5));
        placement.arrived(at(5), vec![row(1, 1)]);
        assert_eq!(placement.due(&at(5)), Some(Due::Rows(vec![row(1, 1)])));
    }

    /// A chunk read ahead of the reader waits for its place.
    #[test]
    fn a_chunk_ahead_of_the_reader_waits() {
        let mut placement = Placement::default();
        placement.asked(&at(0));
        placement.arrived(at(5), vec![row(1, 1)]);
        assert!(placement.due(&at(4)).is_none());
        assert_eq!(placement.due(&at(5)), Some(Due::Rows(vec![row(1, 1)])));
    }
}
