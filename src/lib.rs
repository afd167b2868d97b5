//! binlog-kinesis: a change-data-capture daemon that reads the MySQL/MariaDB binary log as a
//! replica and puts every committed row change, as one line of JSON, into an AWS Kinesis data
//! stream, in binlog order per table.
//!
//! # Layout, in pipeline order
//!
//! - [`source`]: the replication connection, binlog decoding, table schemas, the start
//!   position, table snapshots (chunked reads placed in the stream);
//! - [`event`] and [`stream`]: the JSON contract of one change event, and the messages
//!   between the stages (events, transaction boundaries, partition keys);
//! - [`sink`]: the Kinesis producer (records, batching, ordering, retries);
//! - [`checkpoint`]: acknowledgement tracking and the checkpoint store;
//! - [`config`], [`position`], [`metrics`], [`shutdown`], `fence`, `backoff`, [`report`]:
//!   what every stage shares (metrics also owns the CloudWatch publisher and the `/metrics`
//!   and `/health` listener);
//! - [`app`]: wiring only; [`check`] and [`tail`]: the other commands.
//!
//! A stage imports only what lies below it: `source`, `sink` and `checkpoint` share the
//! messages in [`stream`] and never import each other, except the sink's use of the
//! checkpoint's acknowledgement tracker (the checkpoint lies below the sink).
//! `tests/it/structure.rs` fails on an import cycle between top-level modules, on a stage
//! importing one above it, on a function over 100 lines and on a file over 700.
//!
//! # Guarantees
//!
//! Every event carries its binlog position; the checkpoint only advances to a transaction
//! boundary whose events, and all before them, Kinesis has acknowledged; at most one record
//! per partition key (a table, or a row) is in flight, so each key's changes land in binlog
//! order. After a clean stop and restart nothing is lost or repeated; after a crash nothing is
//! lost, and only changes after the last checkpoint repeat.
//!
//! # Visibility
//!
//! Items are `pub(crate)` unless `main.rs` or the integration tests use them, so the compiler
//! reports dead code; `unreachable_pub` keeps a `pub` item from hiding in a private module.

#![deny(missing_docs, unreachable_pub)]

pub mod app;
pub(crate) mod backoff;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod event;
pub(crate) mod fence;
pub mod metrics;
pub mod position;
pub mod report;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod stream;
pub mod tail;
