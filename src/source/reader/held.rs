//! The open transaction's events in the lookahead buffer, kept as the batches they will be
//! sent in.
//!
//! Events go into the last batch until it holds [`BATCH_BYTES`] of lines (a larger event
//! goes alone), so at the transaction's end each batch is sent as it is, one channel
//! operation each, without moving its events again. Invariants: events stay in the order they
//! were pushed; no batch is empty; `bytes` and `len` count every event held.

use crate::stream::{OutboundEvent, BATCH_BYTES};

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Held {
    batches: Vec<Vec<OutboundEvent>>,
    /// Bytes of lines in the last batch.
    last_bytes: usize,
    /// Bytes of lines in all of them.
    bytes: usize,
    len: usize,
}

impl Held {
    /// Adds `event` after the others.
    pub(super) fn push(&mut self, event: OutboundEvent) {
        let len = event.line.len();
        match self.batches.last_mut() {
            Some(batch) if self.last_bytes + len <= BATCH_BYTES => batch.push(event),
            last => {
                // A new batch, sized like the one before it.
                let mut batch = Vec::with_capacity(last.map_or(16, |batch| batch.len()));
                batch.push(event);
                self.batches.push(batch);
                self.last_bytes = 0;
            }
        }
        self.last_bytes += len;
        self.bytes += len;
        self.len += 1;
    }

    /// Bytes of the lines held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Stamps every event with the transaction's `xid`, and the last with `commit: true`.
    pub(super) fn finish(&mut self, xid: Option<u64>) {
        let last = self.len;
        for (index, event) in self.batches.iter_mut().flatten().enumerate() {
            event.line.finish(xid, index + 1 == last);
        }
    }

    /// Everything but the last event, which stays (so that it can carry `commit: true`).
    pub(super) fn take_all_but_last(&mut self) -> Held {
        let Some(last) = self.batches.last_mut().and_then(Vec::pop) else {
            return Held::default();
        };
        if self.batches.last().is_some_and(Vec::is_empty) {
            self.batches.pop();
        }
        let mut kept = Held::default();
        kept.push(last);
        let mut taken = std::mem::replace(self, kept);
        taken.bytes -= self.bytes;
        taken.len -= 1;
        taken.last_bytes = taken
            .batches
            .last()
            .map_or(0, |batch| batch.iter().map(|e| e.line.len()).sum());
        taken
    }

    /// The batches, in order.
    pub(super) fn into_batches(self) -> Vec<Vec<OutboundEvent>> {
        self.batches
    }

    /// The events, in order.
    pub(super) fn into_events(self) -> Vec<OutboundEvent> {
        self.batches.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::EventLine, event::TableName, position::BinlogPosition};

    fn event(n: usize, size: usize) -> OutboundEvent {
        let mut line = format!("{n}:").into_bytes();
        line.resize(size - 1, b'x');
        line.push(b'\n');
        OutboundEvent {
            table: TableName::new("db", "t"),
            key: "db.t".into(),
            position: BinlogPosition::new("b.000001", 4).unwrap(),
            line: EventLine::raw(line),
            moved_from: None,
        }
    }

    fn numbers(events: &[OutboundEvent]) -> Vec<usize> {
        events
            .iter()
            .map(|e| {
                let line = e.line.to_vec();
                let text = String::from_utf8_lossy(&line);
                text.split(':').next().unwrap().parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn events_fill_batches_of_at_most_batch_bytes_in_order() {
        let mut held = Held::default();
        let sizes = [100, 40_000, 30_000, 70_000, 10, 64 << 10, 8, 5_000];
        for (n, size) in sizes.iter().enumerate() {
            held.push(event(n, *size));
        }
        assert_eq!(held.len(), sizes.len());
        assert_eq!(held.bytes(), sizes.iter().sum::<usize>());
        let batches = held.into_batches();
        for batch in &batches {
            assert!(!batch.is_empty());
            let bytes: usize = batch.iter().map(|e| e.line.len()).sum();
            assert!(batch.len() == 1 || bytes <= BATCH_BYTES, "{bytes}");
        }
        let all: Vec<OutboundEvent> = batches.into_iter().flatten().collect();
        assert_eq!(numbers(&all), (0..sizes.len()).collect::<Vec<_>>());
    }

    #[test]
    fn all_but_the_last_event_can_be_taken_and_the_rest_goes_on() {
        let mut held = Held::default();
        for n in 0..1000 {
            held.push(event(n, 200));
        }
        let taken = held.take_all_but_last();
        assert_eq!((taken.len(), taken.bytes()), (999, 999 * 200));
        assert_eq!((held.len(), held.bytes()), (1, 200));
        assert_eq!(numbers(&taken.into_events()), (0..999).collect::<Vec<_>>());
        held.push(event(1000, 200));
        held.finish(Some(7));
        let lines: Vec<String> = held
            .into_events()
            .iter()
            .map(|e| String::from_utf8(e.line.to_vec()).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("999:"), "{}", lines[0]);
        let mut one = Held::default();
        assert_eq!(one.take_all_but_last().len(), 0);
        one.push(event(0, 10));
        assert_eq!(one.take_all_but_last().len(), 0);
        assert_eq!(one.len(), 1);
    }
}
