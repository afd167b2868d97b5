//! Acknowledgement tracking: from per-event acks, which arrive in any order across partition
//! keys, to the latest transaction boundary that is safe to commit.
//!
//! The source's output is a sequence of events and boundaries. Each event gets a sequence
//! number when it enters the sink; a boundary sits between two events. A boundary is
//! *committable* once every event before it is acknowledged. [`AckTracker`] keeps the
//! unresolved suffix and only ever advances along a contiguous acknowledged prefix, so the
//! committed position can never pass an event Kinesis has not acknowledged, and never goes back.
//!
//! The events between two boundaries are one *range* (their sequence numbers are
//! consecutive) with a count of the acknowledged ones: the tracker holds one slot per range and
//! per boundary, not per event, and a record acknowledges its events as runs of consecutive
//! numbers. A range resolves when all its events are acknowledged. Each event is acknowledged
//! once: the producer acknowledges an event as it drops it from its queue; a number outside
//! every unresolved range is refused.

use std::collections::VecDeque;

#[cfg(test)]
use crate::position::ResumePoint;
use crate::stream::Boundary;

/// The sequence number the sink gives each event, in source order.
pub(crate) type EventSeq = u64;

#[derive(Debug)]
enum Slot {
    /// The events `first..first + count`, of which `acked` are acknowledged.
    Events {
        first: EventSeq,
        count: u64,
        acked: u64,
    },
    /// Boxed: a boundary is far larger than a range, and most slots are ranges.
    Boundary(Box<Boundary>),
}

/// Tracks acknowledgements and yields committable boundaries. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    next_seq: EventSeq,
    slots: VecDeque<Slot>,
    /// Each range slot's first sequence number and absolute index in `slots` (its index plus
    /// `popped`), in order: where an acknowledgement finds its range.
    ranges: VecDeque<(EventSeq, usize)>,
    /// How many slots were popped from the front, to translate absolute indices.
    popped: usize,
    /// Events in unpopped ranges.
    unresolved: usize,
}

impl AckTracker {
    /// An empty tracker.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Registers the next event; returns its sequence number. It joins the last range when
    /// no boundary came since.
    pub(crate) fn push_event(&mut self) -> EventSeq {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unresolved += 1;
        if let Some(Slot::Events { count, .. }) = self.slots.back_mut() {
            *count += 1;
        } else {
            self.ranges.push_back((seq, self.popped + self.slots.len()));
            self.slots.push_back(Slot::Events {
                first: seq,
                count: 1,
                acked: 0,
            });
        }
        seq
    }

    /// Registers a transaction boundary after every event pushed so far.
    pub(crate) fn push_boundary(&mut self, boundary: impl Into<Boundary>) {
        self.slots
            .push_back(Slot::Boundary(Box::new(boundary.into())));
    }

    /// Marks one event acknowledged; see [`AckTracker::ack_run`].
    #[cfg(test)]
    pub(crate) fn ack(&mut self, seq: EventSeq) -> bool {
        self.ack_run(seq, 1)
    }

    /// Marks the `n` events `first..first + n` acknowledged (they may span ranges). A number
    /// that is in no unresolved range (never given, or its range already resolved) is an
    /// internal error, reported as `false` (the numbers before it are acknowledged).
    pub(crate) fn ack_run(&mut self, mut first: EventSeq, mut n: u64) -> bool {
        while n > 0 {
            // The last range starting at or before `first`.
            let index = self.ranges.partition_point(|(start, _)| *start <= first);
            let Some(&(_, absolute)) = index.checked_sub(1).and_then(|i| self.ranges.get(i)) else {
                return false;
            };
            let Some(Slot::Events {
                first: start,
                count,
                acked,
            }) = self.slots.get_mut(absolute - self.popped)
            else {
                return false;
            };
            let end = *start + *count;
            if first >= end {
                return false;
            }
            let here = n.min(end - first);
            if *acked + here > *count {
                return false;
            }
            *acked += here;
            first += here;
            n -= here;
        }
        true
    }

    /// Pops the resolved prefix and returns the last boundary in it, if any: the new
    /// acknowledged position.
    pub(crate) fn take_committable(&mut self) -> Option<Boundary> {
        let mut committable = None;
        loop {
            match self.slots.front() {
                Some(Slot::Events { count, acked, .. }) if acked == count => {
                    self.unresolved -= *count as usize;
                    self.slots.pop_front();
                    self.ranges.pop_front();
                    self.popped += 1;
                }
                Some(Slot::Boundary(_)) => {
                    if let Some(Slot::Boundary(position)) = self.slots.pop_front() {
                        committable = Some(*position);
                    }
                    self.popped += 1;
                }
                Some(Slot::Events { .. }) | None => break,
            }
        }
        committable
    }

    /// Events not yet acknowledged or not yet popped.
    pub(crate) fn unresolved_events(&self) -> usize {
        self.unresolved
    }

    /// Slots held (ranges and boundaries): what the tracker's memory grows with.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
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

    #[test]
    fn events_between_boundaries_are_one_range_and_runs_span_ranges() {
        let mut tracker = AckTracker::new();
        let first = tracker.push_event();
        for _ in 0..999 {
            tracker.push_event();
        }
        tracker.push_boundary(position(1));
        for _ in 0..500 {
            tracker.push_event();
        }
        tracker.push_boundary(position(2));
        assert_eq!(tracker.slots(), 4, "two ranges and two boundaries");
        assert_eq!(tracker.unresolved_events(), 1500);
        assert!(
            tracker.ack_run(first + 10, 990),
            "the rest of the first range"
        );
        assert!(!tracker.ack_run(first + 1500, 1), "never given");
        assert_eq!(
            tracker.take_committable(),
            None,
            "events 0..10 are not acknowledged"
        );
        assert!(tracker.ack_run(first, 10));
        assert_eq!(
            tracker.take_committable().map(|b| b.point),
            Some(position(1))
        );
        assert!(!tracker.ack_run(first + 5, 1), "its range is resolved");
        assert!(tracker.ack_run(first + 1000, 499));
        assert_eq!(tracker.take_committable(), None);
        assert!(tracker.ack(first + 1499));
        assert_eq!(
            tracker.take_committable().map(|b| b.point),
            Some(position(2))
        );
        assert_eq!(tracker.unresolved_events(), 0);
        assert_eq!(tracker.slots(), 0);
    }

    #[test]
    fn a_run_across_a_boundary_acknowledges_both_ranges() {
        let mut tracker = AckTracker::new();
        let a = tracker.push_event();
        tracker.push_event();
        tracker.push_boundary(position(1));
        tracker.push_event();
        tracker.push_boundary(position(2));
        assert!(!tracker.ack_run(a + 3, 1), "never given");
        assert!(tracker.ack_run(a, 3));
        assert!(
            !tracker.ack(a + 2),
            "more acknowledgements than its range has events"
        );
        assert_eq!(
            tracker.take_committable().map(|b| b.point),
            Some(position(2))
        );
        assert!(!tracker.ack_run(a, 1));
    }

    /// A tracker fed events (`true`) and boundaries (`false`) as `layout` says; returns it,
    /// the events' numbers, and each boundary with the number of events before it.
    fn laid_out(layout: &[bool]) -> (AckTracker, Vec<EventSeq>, Vec<(usize, ResumePoint)>) {
        let mut tracker = AckTracker::new();
        let mut events = Vec::new();
        let mut boundaries = Vec::new();
        for (i, is_event) in layout.iter().enumerate() {
            if *is_event {
                events.push(tracker.push_event());
            } else {
                tracker.push_boundary(position(i as u64));
                boundaries.push((events.len(), position(i as u64)));
            }
        }
        (tracker, events, boundaries)
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
            let (mut tracker, events, boundaries) = laid_out(&layout);
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

        /// The same with events acknowledged as runs of consecutive numbers (a record's
        /// events on one key), the runs in any order.
        #[test]
        fn runs_commit_only_a_contiguous_acknowledged_prefix(
            layout in prop::collection::vec(prop::bool::weighted(0.8), 1..120),
            cuts in prop::collection::vec(any::<bool>(), 120),
            ack_order_seed in prop::collection::vec(any::<u32>(), 120),
        ) {
            let (mut tracker, events, boundaries) = laid_out(&layout);
            // Cut the events into runs of consecutive numbers.
            let mut runs: Vec<(usize, usize)> = Vec::new();
            for (i, cut) in cuts.iter().enumerate().take(events.len()) {
                match runs.last_mut() {
                    Some((_, n)) if !cut || i == 0 => *n += 1,
                    _ => runs.push((i, 1)),
                }
            }
            for (i, seed) in ack_order_seed.iter().enumerate().take(runs.len()) {
                let j = (*seed as usize) % runs.len();
                runs.swap(i, j);
            }
            let mut acked = vec![false; events.len()];
            let mut last = None;
            for (start, n) in runs {
                prop_assert!(tracker.ack_run(events[start], n as u64));
                acked[start..start + n].iter_mut().for_each(|a| *a = true);
                if let Some(point) = tracker.take_committable().map(|b| b.point) {
                    last = Some(point);
                }
                let prefix = acked.iter().take_while(|a| **a).count();
                let expected = boundaries.iter().filter(|(n, _)| *n <= prefix).map(|(_, p)| p.clone()).next_back();
                prop_assert_eq!(&last, &expected);
            }
            prop_assert_eq!(tracker.unresolved_events(), 0);
        }
    }
}
