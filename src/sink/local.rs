//! A local stand-in for Kinesis (`[sink] kind = "stdout"` or `"file"`): records are written,
//! in the order the producer completes them, to standard output or appended to a file, and
//! acknowledged once flushed. The producer in front of it is the same (ordering, batching,
//! acknowledgements, checkpoints), so this is how to run the pipeline without AWS, and how to
//! measure the pipeline's own limit.
//!
//! Each record's data is whole event lines, so the output is NDJSON.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::{
    client::{CallError, KinesisClient, Record, RecordOutcome},
    retry::RetryAction,
};

/// Writes records to a local destination.
pub struct LocalClient {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    name: String,
}

impl std::fmt::Debug for LocalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClient")
            .field("name", &self.name)
            .finish()
    }
}

impl LocalClient {
    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self {
            out: Arc::new(Mutex::new(Box::new(std::io::BufWriter::new(
                std::io::stdout(),
            )))),
            name: "standard output".into(),
        }
    }

    /// Appends to `path`, creating it (and its directory) if needed.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            out: Arc::new(Mutex::new(Box::new(std::io::BufWriter::new(file)))),
            name: PathBuf::from(path).display().to_string(),
        })
    }
}

#[async_trait::async_trait]
impl KinesisClient for LocalClient {
    fn destination(&self, _stream: &str) -> String {
        format!("the local sink ({})", self.name)
    }

    fn refusal_hint(&self) -> &'static str {
        ""
    }

    async fn put_records(
        &self,
        _stream: &str,
        records: Vec<Record>,
    ) -> Result<Vec<RecordOutcome>, CallError> {
        let out = Arc::clone(&self.out);
        let n_records = records.len();
        // Writing may block (a full pipe, a slow disk): off the async workers.
        let written = tokio::task::spawn_blocking(move || {
            let mut out = out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for record in &records {
                out.write_all(&record.data)?;
            }
            out.flush()
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|result| result);
        match written {
            Ok(()) => Ok(vec![RecordOutcome::Written; n_records]),
            // A closed pipe or a full disk does not heal by retrying the same write.
            Err(error) => Err(CallError {
                action: RetryAction::Fail,
                code: None,
                message: format!("cannot write to {}: {error}", self.name),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_records_as_lines_and_acknowledges_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/events.ndjson");
        let client = LocalClient::file(&path).unwrap();
        let record = |key: &str, data: &str| Record {
            partition_key: key.into(),
            data: data.as_bytes().to_vec(),
        };
        let outcomes = client
            .put_records(
                "s",
                vec![
                    record("a", "{\"n\":1}\n{\"n\":2}\n"),
                    record("b", "{\"n\":3}\n"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(outcomes, vec![RecordOutcome::Written; 2]);
        client
            .put_records("s", vec![record("a", "{\"n\":4}\n")])
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n"
        );
    }

    /// Regression (issue 11, item 12): a local sink that cannot write says so, instead of
    /// blaming a Kinesis stream.
    #[tokio::test]
    async fn a_failed_write_names_the_local_sink_not_a_stream() {
        let client = Arc::new(LocalClient::file(Path::new("/dev/full")).unwrap());
        let (input_tx, input_rx) = tokio::sync::mpsc::channel(4);
        let (ack_tx, _ack_rx) = tokio::sync::mpsc::channel(4);
        let config = crate::sink::SinkConfig {
            stream: "cdc-events".into(),
            max_record_bytes: 1 << 20,
            linger: std::time::Duration::ZERO,
            max_buffered_bytes: 1 << 20,
            max_events_per_record: usize::MAX,
            backoff: crate::sink::retry::DEFAULT_BACKOFF,
            oversize: crate::config::Oversize::Fail,
            call_timeout: std::time::Duration::from_secs(10),
        };
        let sink = tokio::spawn(crate::sink::run(
            config,
            client,
            input_rx,
            ack_tx,
            Arc::new(crate::metrics::Metrics::default()),
            Arc::new(crate::fence::Fence::always_open()),
        ));
        input_tx
            .send(crate::stream::Message::Event(
                crate::stream::OutboundEvent {
                    table: crate::event::TableName::new("db", "t"),
                    key: "db.t".into(),
                    position: "b.000001:4".parse().unwrap(),
                    line: crate::event::EventLine::raw(b"{}\n".to_vec()),
                    moved_from: None,
                },
            ))
            .await
            .unwrap();
        drop(input_tx);
        let error = sink.await.unwrap().unwrap_err().to_string();
        assert!(
            error.contains("local sink (/dev/full)") && !error.contains("kinesis"),
            "{error}"
        );
    }
}
