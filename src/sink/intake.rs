//! The producer's intake: messages from the source onto the partition keys' queues.
//!
//! Each event gets its sequence number in the tracker as it is queued (events between two
//! boundaries form one tracker range); a batch is taken with one clock reading and one key
//! lookup per run of events on the same key. An event larger than a record is refused here
//! (`kinesis.oversize`), before it takes a number, so a skipped one never holds a boundary.

use std::{collections::VecDeque, sync::Arc};

use tokio::time::Instant;

use super::{KeyState, Producer, Queued, SinkConfig, SinkError};
use crate::{
    config::Oversize,
    metrics::Metrics,
    stream::{Message, OutboundEvent},
};

impl Producer {
    /// Takes one message from the source.
    pub(super) fn accept(&mut self, item: Message) -> Result<(), SinkError> {
        match item {
            Message::Boundary(position) => self.tracker.push_boundary(position),
            Message::Comment(_) => {}
            Message::Event(event) => self.accept_events([event])?,
            Message::Events(events) => self.accept_events(events)?,
        }
        Ok(())
    }

    /// Events onto their keys' queues, each with its sequence number: one clock reading for
    /// them all, and one key lookup per run of events on the same key.
    fn accept_events(
        &mut self,
        events: impl IntoIterator<Item = OutboundEvent>,
    ) -> Result<(), SinkError> {
        let arrived = Instant::now();
        let mut events = events.into_iter().peekable();
        while let Some(event) = events.next() {
            let Some(event) = self.admit(event)? else {
                continue;
            };
            let key = Arc::clone(&event.key);
            let Self {
                keys,
                tracker,
                buffered_bytes,
                waiting,
                config,
                metrics,
                ..
            } = self;
            let state = keys.entry(Arc::clone(&key)).or_insert_with(|| KeyState {
                table: event.table.clone(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                in_flight: 0,
                attempts: 0,
                not_before: None,
                last_sent: None,
                throttled_at: None,
            });
            if state.in_flight == 0 {
                waiting.insert(Arc::clone(&key));
            }
            let mut next = Some(event);
            while let Some(event) = next {
                let len = event.line.len();
                let cost = event.line.heap_bytes() + std::mem::size_of::<Queued>();
                *buffered_bytes += cost;
                state.queued_bytes += len;
                state.queue.push_back(Queued {
                    seq: tracker.push_event(),
                    line: event.line,
                    len,
                    cost,
                    arrived,
                });
                // The rest of the run on this key, past any oversized event it holds.
                next = None;
                while let Some(event) = events.next_if(|e| same_key(&e.key, &key)) {
                    if let Some(event) = admit(config, metrics, event)? {
                        next = Some(event);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// `event`, or `None` when it is larger than a record may be and skipped.
    fn admit(&self, event: OutboundEvent) -> Result<Option<OutboundEvent>, SinkError> {
        admit(&self.config, &self.metrics, event)
    }
}

/// Whether two partition keys are the same (events of one table share the key's text).
fn same_key(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// `event`, or `None` when it is larger than a record may be and `kinesis.oversize` skips
/// it: it then takes no sequence number, so the boundaries around it commit as if it had been
/// delivered. With `oversize = "fail"` it is an error.
fn admit(
    config: &SinkConfig,
    metrics: &Metrics,
    event: OutboundEvent,
) -> Result<Option<OutboundEvent>, SinkError> {
    let size = event.line.len() + event.key.len();
    if size <= config.max_record_bytes {
        return Ok(Some(event));
    }
    if config.oversize == Oversize::Fail {
        return Err(SinkError::EventTooLarge {
            table: event.table,
            position: event.position,
            size,
            limit: config.max_record_bytes,
        });
    }
    metrics.oversize_skipped.add(1);
    let primary_key = event.line.primary_key().unwrap_or("null");
    tracing::warn!(table = %event.table, position = %event.position, primary_key, size, limit = config.max_record_bytes, "skipping an event larger than a record may be (kinesis.oversize = \"skip\")");
    Ok(None)
}
