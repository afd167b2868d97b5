//! Acknowledgement tracking: from per-event acks, which arrive in any order across partition
//! keys, to the latest transaction boundary that is safe to commit.
//!
//! The source's output is a sequence of events and boundaries. Each event gets a sequence
//! number when it enters the sink; a boundary sits between two events. A boundary is
//! *committable* once every event before it is acknowledged. [`AckTracker`] keeps the
//! unresolved suffix and only ever advances along a contiguous acknowledged prefix, so the
//! committed position can never pass an event Kinesis has not acknowledged, and never goes back.

use std::collections::VecDeque;

#[cfg(test)]
use crate::position::ResumePoint;
use crate::stream::Boundary;

/// The sequence number the sink gives each event, in source order.
pub(crate) type EventSeq = u64;

#[derive(Debug)]
enum Slot {
    Pending,
    Acked,
    /// Boxed: one slot per event, and most slots are events; a boundary inline would make
    /// every slot its size.
    Boundary(Box<Boundary>),
}

/// Tracks acknowledgements and yields committable boundaries. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    /// Sequence number of `slots[0]` if it is an event; events and boundaries interleave, so
    /// each event slot's sequence number is `first_seq` plus the events before it.
    first_seq: EventSeq,
    next_seq: EventSeq,
    slots: VecDeque<Slot>,
    /// Index in `slots` of each unresolved event, relative: `event_index[seq - first_seq]`.
    event_index: VecDeque<usize>,
    /// How many slots were popped from the front, to translate absolute indices.
    popped: usize,
}

/// What the tracker holds per unresolved event, for memory accounting.
pub(crate) const BYTES_PER_EVENT: usize =
    std::mem::size_of::<Slot>() + std::mem::size_of::<usize>();

impl AckTracker {
    /// An empty tracker.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Registers the next event; returns its sequence number.
    pub(crate) fn push_event(&mut self) -> EventSeq {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.event_index.push_back(self.popped + self.slots.len());
        self.slots.push_back(Slot::Pending);
        seq
    }

    /// Registers a transaction boundary after every event pushed so far.
    pub(crate) fn push_boundary(&mut self, boundary: impl Into<Boundary>) {
        self.slots
            .push_back(Slot::Boundary(Box::new(boundary.into())));
    }

    /// Marks an event acknowledged. Acknowledging an unknown or already resolved event is an
    /// internal error, reported as `false`.
    pub(crate) fn ack(&mut self, seq: EventSeq) -> bool {
        let Some(relative) = seq.checked_sub(self.first_seq) else {
            return false;
        };
        let Some(&absolute) = self.event_index.get(relative as usize) else {
            return false;
        };
        match self.slots.get_mut(absolute - self.popped) {
            Some(slot @ Slot::Pending) => {
                *slot = Slot::Acked;
                true
            }
            _ => false,
        }
    }

    /// Pops the resolved prefix and returns the last boundary in it, if any: the new
    /// acknowledged position.
    pub(crate) fn take_committable(&mut self) -> Option<Boundary> {
        let mut committable = None;
        loop {
            match self.slots.front() {
                Some(Slot::Acked) => {
                    self.slots.pop_front();
                    self.event_index.pop_front();
                    self.first_seq += 1;
                    self.popped += 1;
                }
                Some(Slot::Boundary(_)) => {
                    if let Some(Slot::Boundary(position)) = self.slots.pop_front() {
                        committable = Some(*position);
                    }
                    self.popped += 1;
                }
                Some(Slot::Pending) | None => break,
            }
        }
        committable
    }

    /// Events not yet acknowledged or not yet popped.
    pub(crate) fn unresolved_events(&self) -> usize {
        self.event_index.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn position(n: u64) -> ResumePoint {
        ResumePoint::at(crate::position::BinlogPosition::new("b.000001", 4 + n).unwrap())
    }

    #[test]
    fn boundary_waits_for_every_event_before_it() {
        let mut tracker = AckTracker::new();
        let a = tracker.push_event();
        let b = tracker.push_event();
        tracker.push_boundary(position(1));
        let c = tracker.push_event();
        tracker.push_boundary(position(2));
        assert!(tracker.ack(b));
        assert_eq!(tracker.take_committable(), None);
        assert!(tracker.ack(c));
        assert_eq!(tracker.take_committable(), None);
        assert!(tracker.ack(a));
        assert_eq!(
            tracker.take_committable().map(|b| b.point),
            Some(position(2))
        );
        assert!(!tracker.ack(a), "double ack must be refused");
        assert_eq!(tracker.unresolved_events(), 0);
    }

    #[test]
    fn boundaries_without_events_commit_at_once() {
        let mut tracker = AckTracker::new();
        tracker.push_boundary(position(1));
        tracker.push_boundary(position(2));
        assert_eq!(
            tracker.take_committable().map(|b| b.point),
            Some(position(2))
        );
        assert_eq!(tracker.take_committable(), None);
    }

    proptest! {
        /// For any interleaving of events and boundaries and any ack order, the committed
        /// position is always the last boundary whose preceding events are all acknowledged,
        /// and it never moves back.
        #[test]
        fn commits_only_a_contiguous_acknowledged_prefix(
            layout in prop::collection::vec(prop::bool::weighted(0.7), 1..80),
            ack_order_seed in prop::collection::vec(any::<u32>(), 80),
        ) {
            let mut tracker = AckTracker::new();
            let mut events = Vec::new();
            let mut boundaries = Vec::new(); // (number of events before, position)
            for (i, is_event) in layout.iter().enumerate() {
                if *is_event {
                    events.push(tracker.push_event());
                } else {
                    tracker.push_boundary(position(i as u64));
                    boundaries.push((events.len(), position(i as u64)));
                }
            }
            let mut order: Vec<usize> = (0..events.len()).collect();
            for (i, seed) in ack_order_seed.iter().enumerate().take(order.len()) {
                let j = (*seed as usize) % order.len();
                order.swap(i, j);
            }
            let mut acked = vec![false; events.len()];
            let mut last: Option<ResumePoint> = tracker.take_committable().map(|b| b.point);
            let expected = |acked: &[bool]| {
                let prefix = acked.iter().take_while(|a| **a).count();
                boundaries.iter().filter(|(n, _)| *n <= prefix).map(|(_, p)| p.clone()).next_back()
            };
            for index in order {
                prop_assert!(tracker.ack(events[index]));
                acked[index] = true;
                if let Some(position) = tracker.take_committable().map(|b| b.point) {
                    if let Some(previous) = &last {
                        prop_assert_eq!(previous.position.try_cmp(&position.position), Some(std::cmp::Ordering::Less));
                    }
                    last = Some(position);
                }
                prop_assert_eq!(&last, &expected(&acked));
            }
            prop_assert_eq!(last, boundaries.last().map(|(_, p)| p.clone()));
        }
    }
}
