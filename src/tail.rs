//! `binlog-kinesis tail`: reads the stream and prints its event lines, for the demo and for
//! people debugging a pipeline. Lines of one shard print in stream order; shards interleave.

use std::{io::Write, time::Duration};

use aws_sdk_kinesis::types::ShardIteratorType;
use tokio_util::sync::CancellationToken;

use crate::sink::client::{call_error, AwsKinesisClient, CallError};

/// Pause between polls of a shard with nothing new (GetRecords allows 5 calls/s per shard).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Prints every record's data to stdout until `stop` fires, or until nothing new arrived for
/// `idle_exit` (when set). Returns the number of lines printed.
pub async fn tail(
    client: &AwsKinesisClient,
    stream: &str,
    from_start: bool,
    idle_exit: Option<Duration>,
    stop: CancellationToken,
) -> Result<u64, CallError> {
    let sdk = client.sdk();
    let shards = sdk
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(call_error)?;
    let kind = if from_start {
        ShardIteratorType::TrimHorizon
    } else {
        ShardIteratorType::Latest
    };
    let mut iterators = Vec::new();
    for shard in shards.shards() {
        let iterator = sdk
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(kind.clone())
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
                let data = record.data().as_ref();
                lines += data.iter().filter(|b| **b == b'\n').count() as u64;
                // Output errors (a closed pipe) end the tail quietly.
                if out.write_all(data).and_then(|_| out.flush()).is_err() {
                    return Ok(lines);
                }
                got_any = true;
            }
            *slot = output.next_shard_iterator().map(str::to_owned);
        }
        if got_any {
            last_data = tokio::time::Instant::now();
        } else if idle_exit.is_some_and(|idle| last_data.elapsed() >= idle) {
            return Ok(lines);
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(lines),
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}
