//! `binlog-kinesis tail`: reads the stream and prints its event lines, for the demo and for
//! people debugging a pipeline or a consumer. Lines of one shard print in stream order; shards
//! interleave. It can start at the oldest record, now, or a moment; keep the lines of some
//! tables; and stop after so many lines or so long without new records, so it scripts well.

use std::{io::Write, time::Duration};

use aws_sdk_kinesis::{
    primitives::{DateTime, DateTimeFormat},
    types::ShardIteratorType,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{ConfigError, TableFilter},
    sink::client::{call_error, AwsKinesisClient, CallError},
};

/// Pause between polls of a shard with nothing new (GetRecords allows 5 calls/s per shard).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Where `tail` starts reading.
#[derive(Debug, Clone)]
pub enum StartAt {
    /// New records only.
    Now,
    /// The oldest record the stream keeps.
    Start,
    /// The first record that arrived at or after this moment.
    Timestamp(DateTime),
}

impl StartAt {
    /// `--from-timestamp`: RFC 3339 (`2026-11-30T12:00:00Z`) or milliseconds since the Unix
    /// epoch.
    pub fn timestamp(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(ms) = text.parse::<i64>() {
            return Ok(StartAt::Timestamp(DateTime::from_millis(ms)));
        }
        DateTime::from_str(text, DateTimeFormat::DateTime)
            .map(StartAt::Timestamp)
            .map_err(|_| {
                format!("{text:?} is not a time: use RFC 3339 (2026-11-30T12:00:00Z) or milliseconds since the Unix epoch")
            })
    }
}

/// What `tail` prints and when it stops.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where it starts.
    pub from: StartAt,
    /// Only the lines of these tables (`[filter]` patterns); `None`: every line.
    tables: Option<TableFilter>,
    /// Stop after printing this many lines.
    pub count: Option<u64>,
    /// Stop after this long without a new record.
    pub idle_exit: Option<Duration>,
}

impl Options {
    /// Options printing the lines of the tables `patterns` name (`db.table`, `*` wildcards;
    /// none: every table).
    pub fn new(
        from: StartAt,
        patterns: &[String],
        count: Option<u64>,
        idle_exit: Option<Duration>,
    ) -> Result<Self, ConfigError> {
        let tables = if patterns.is_empty() {
            None
        } else {
            Some(TableFilter::new(patterns, &[])?)
        };
        Ok(Self {
            from,
            tables,
            count,
            idle_exit,
        })
    }

    /// Whether `line` (one event line) is printed.
    fn keeps(&self, line: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct Head {
            database: String,
            table: String,
        }
        let Some(tables) = &self.tables else {
            return true;
        };
        serde_json::from_slice::<Head>(line)
            .is_ok_and(|head| tables.matches(&head.database, &head.table))
    }
}

/// Prints the event lines of every record that `options` keeps to stdout until `stop` fires,
/// or until `options` says to stop. Returns the number of lines printed.
pub async fn tail(
    client: &AwsKinesisClient,
    stream: &str,
    options: &Options,
    stop: CancellationToken,
) -> Result<u64, CallError> {
    let sdk = client.sdk();
    let shards = sdk
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(call_error)?;
    let (kind, timestamp) = match &options.from {
        StartAt::Now => (ShardIteratorType::Latest, None),
        StartAt::Start => (ShardIteratorType::TrimHorizon, None),
        StartAt::Timestamp(at) => (ShardIteratorType::AtTimestamp, Some(*at)),
    };
    let mut iterators = Vec::new();
    for shard in shards.shards() {
        let iterator = sdk
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(kind.clone())
            .set_timestamp(timestamp)
            .send()
            .await
            .map_err(call_error)?;
        iterators.push(iterator.shard_iterator().map(str::to_owned));
    }
    let mut lines = 0u64;
    let mut last_data = tokio::time::Instant::now();
    let stdout = std::io::stdout();
    loop {
        let mut got_any = false;
        for slot in iterators.iter_mut() {
            let Some(iterator) = slot.clone() else {
                continue;
            };
            let output = sdk
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await
                .map_err(call_error)?;
            let mut out = stdout.lock();
            for record in output.records() {
                got_any = true;
                for line in record.data().as_ref().split_inclusive(|b| *b == b'\n') {
                    if !options.keeps(line) {
                        continue;
                    }
                    // Output errors (a closed pipe) end the tail quietly.
                    if out.write_all(line).is_err() {
                        return Ok(lines);
                    }
                    lines += 1;
                    if options.count.is_some_and(|count| lines >= count) {
                        let _flushed: std::io::Result<()> = out.flush();
                        return Ok(lines);
                    }
                }
            }
            if out.flush().is_err() {
                return Ok(lines);
            }
            *slot = output.next_shard_iterator().map(str::to_owned);
        }
        if got_any {
            last_data = tokio::time::Instant::now();
        } else if options
            .idle_exit
            .is_some_and(|idle| last_data.elapsed() >= idle)
        {
            return Ok(lines);
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(lines),
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}
