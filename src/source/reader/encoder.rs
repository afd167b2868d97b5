//! Rows events encoded on a small pool of threads, their order kept.
//!
//! Encoding rows into JSON is most of the reader's work. With more than one core, each rows
//! event is encoded on a pool thread while the reader reads on; the results are taken back
//! strictly in the order the events were read, and only then does anything else happen to
//! them (signals, the transaction's lookahead, sending), so the output is exactly what
//! encoding in place gives.
//!
//! Invariants:
//! - Order: `pending` is a FIFO; a result is applied only at its head.
//! - Only rows events and table maps are read while rows are pending: any other event (a
//!   transaction's end, a DDL, a rotate, a GTID) first waits for every pending result, so
//!   nothing that depends on the rows (boundaries, snapshot placement, stopping between
//!   transactions) ever runs ahead of them. Each result is applied with the reader's
//!   position as it was when its event was read.
//! - Memory: at most [`MAX_PENDING`] events and [`MAX_PENDING_BYTES`] of their bytes wait
//!   (plus their encoded rows); past either the reader waits for the head.
//! - With one core (or when the pool cannot start) there is no pool: events are encoded in
//!   place, as before the pool existed.

use std::{collections::VecDeque, sync::Arc, thread};

use mysql_common::binlog::events::{Event, EventData};
use tokio::sync::oneshot;

use super::Reader;
use crate::{
    position::BinlogPosition,
    source::{
        decode::{self, DecodeError, EncodedRows},
        schema::TableSchema,
        SourceError,
    },
};

/// Most rows events waiting for their encoding.
const MAX_PENDING: usize = 32;
/// Most bytes of rows events waiting for their encoding.
const MAX_PENDING_BYTES: usize = 4 << 20;
/// Most threads in the pool.
const MAX_THREADS: usize = 3;

/// One rows event to encode.
struct Job {
    event: Event,
    schema: Arc<TableSchema>,
    max_row_bytes: usize,
    out: EncodedRows,
    reply: oneshot::Sender<(EncodedRows, Result<(), DecodeError>)>,
}

/// The pool: its threads end when it is dropped.
pub(super) struct EncodePool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl EncodePool {
    /// A pool of one thread fewer than the cores this process may use (at most
    /// [`MAX_THREADS`]); `None` with a single core.
    pub(super) fn for_this_machine() -> Option<Self> {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads((cores - 1).min(MAX_THREADS))
    }

    /// A pool of `threads` threads; `None` for 0 or when no thread can be started.
    pub(super) fn with_threads(threads: usize) -> Option<Self> {
        if threads == 0 {
            return None;
        }
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            let started = thread::Builder::new()
                .name(format!("encode-{n}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let Job {
                        event,
                        schema,
                        max_row_bytes,
                        mut out,
                        reply,
                    } = job;
                    let result = encode(&event, &schema, &mut out, max_row_bytes);
                    // The reader may have stopped waiting (a reconnect): nothing to do then.
                    let _gone: Result<(), _> = reply.send((out, result));
                });
            if let Err(error) = started {
                tracing::warn!(%error, "cannot start an encoding thread; encoding in place");
                return None;
            }
        }
        Some(Self { jobs })
    }
}

/// Encodes one rows event.
fn encode(
    event: &Event,
    schema: &TableSchema,
    out: &mut EncodedRows,
    max_row_bytes: usize,
) -> Result<(), DecodeError> {
    match event.read_data() {
        Ok(Some(EventData::RowsEvent(rows))) => {
            decode::encode_rows(schema, &rows, out, max_row_bytes)
        }
        // The reader parsed this event as a rows event before sending it.
        _ => Err(DecodeError::Truncated),
    }
}

/// A rows event handed to the pool, with what applying its rows needs.
pub(super) struct PendingRows {
    result: oneshot::Receiver<(EncodedRows, Result<(), DecodeError>)>,
    schema: Arc<TableSchema>,
    timestamp: u32,
    start: BinlogPosition,
    /// Where the reader was when the event was read.
    read_end: BinlogPosition,
    bytes: usize,
}

/// The rows events waiting for their encoding, in order.
#[derive(Default)]
pub(super) struct Pending {
    queue: VecDeque<PendingRows>,
    bytes: usize,
    /// Encoded-rows buffers to reuse.
    spare: Vec<EncodedRows>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Forgets every pending event (their transaction will be read again).
    pub(super) fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

impl Reader {
    /// This reader with a pool of `threads` encoding threads (none: encoding in place).
    #[cfg(test)]
    pub(in crate::source) fn with_encoder_threads(mut self, threads: usize) -> Self {
        self.encoder = EncodePool::with_threads(threads);
        self
    }

    /// Hands a rows event to the pool (the caller has checked there is one), after waiting for
    /// the head when too much is pending.
    pub(super) async fn submit_rows(
        &mut self,
        event: &Event,
        schema: Arc<TableSchema>,
        start: &BinlogPosition,
    ) -> Result<(), SourceError> {
        let bytes = event.data().len();
        while !self.pending.is_empty()
            && (self.pending.queue.len() >= MAX_PENDING
                || self.pending.bytes + bytes > MAX_PENDING_BYTES)
        {
            self.apply_head().await?;
        }
        let pool = self.encoder.as_ref().expect("a pool");
        let (reply, result) = oneshot::channel();
        let out = self.pending.spare.pop().unwrap_or_default();
        let job = Job {
            event: event.clone(),
            schema: Arc::clone(&schema),
            max_row_bytes: self.config.max_event_bytes,
            out,
            reply,
        };
        if pool.jobs.send(job).is_err() {
            return Err(SourceError::Protocol {
                message: "the encoding threads have stopped".into(),
            });
        }
        self.pending.bytes += bytes;
        self.pending.queue.push_back(PendingRows {
            result,
            schema,
            timestamp: event.header().timestamp(),
            start: start.clone(),
            read_end: self.read_end.clone(),
            bytes,
        });
        Ok(())
    }

    /// Waits for every pending rows event and applies them, in order.
    pub(in crate::source) async fn drain_rows(&mut self) -> Result<(), SourceError> {
        while !self.pending.is_empty() {
            self.apply_head().await?;
        }
        Ok(())
    }

    /// Waits for the head's encoding and applies its rows, with the reader's position as it
    /// was when the event was read.
    async fn apply_head(&mut self) -> Result<(), SourceError> {
        let Some(head) = self.pending.queue.pop_front() else {
            return Ok(());
        };
        self.pending.bytes -= head.bytes;
        let (encoded, result) = head.result.await.map_err(|_| SourceError::Protocol {
            message: "an encoding thread stopped".into(),
        })?;
        let now = std::mem::replace(&mut self.read_end, head.read_end);
        let applied = self
            .apply_rows(&head.schema, encoded, result, head.timestamp, &head.start)
            .await;
        self.read_end = now;
        let encoded = applied?;
        if self.pending.spare.len() < MAX_PENDING {
            self.pending.spare.push(encoded);
        }
        Ok(())
    }
}
