//! Progress: which binlog position is safe to resume from, and saving it.
//!
//! Three positions matter, with the invariant `committed ≤ acknowledged ≤ read`:
//! - *read*: how far the source has read the binlog;
//! - *acknowledged*: the latest transaction boundary whose events, and all before them,
//!   Kinesis has acknowledged (computed by [`tracker::AckTracker`] inside the sink);
//! - *committed*: the acknowledged position last written to the store by [`run`].
//!
//! The checkpoint only ever names a transaction boundary (the position just after an XID or
//! COMMIT event, after a DDL statement, or the start of a file after a rotation), so a resumed
//! stream never starts inside a transaction.
//!
//! # Store format
//!
//! A small versioned JSON document, `{"version":1,"position":"bin.000003:1234",...}`, written
//! atomically by [`file::FileStore`]. A file with an unknown version is an error, never
//! silently ignored.

pub mod file;
pub mod tracker;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::position::{BinlogPosition, GtidState, ResumePoint};

/// The current checkpoint format version.
pub const CHECKPOINT_VERSION: u32 = 1;

/// A saved resume point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version; see [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// The binlog position to resume from: always a transaction boundary.
    pub position: BinlogPosition,
    /// The GTID state at that boundary, when the server assigns GTIDs: what resumes on
    /// another server of the topology after a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<GtidState>,
    /// When it was written, in milliseconds since the Unix epoch (for people and alarms).
    pub updated_at_ms: u64,
}

impl Checkpoint {
    /// A checkpoint at `point`, stamped now.
    pub fn new(point: ResumePoint) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            position: point.position,
            gtid: point.gtid.filter(|g| !g.is_empty()),
            updated_at_ms: now_ms(),
        }
    }

    /// Where to resume.
    pub fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            position: self.position.clone(),
            gtid: self.gtid.clone(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading failed.
    #[error("cannot read checkpoint {path:?}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing failed.
    #[error("cannot write checkpoint {path:?}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a checkpoint this version understands.
    #[error("checkpoint {path:?} is not valid: {message}; fix or remove it, or start with --start-position or --from-end")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Where checkpoints live.
#[async_trait::async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The saved checkpoint, or `None` when there is none yet.
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError>;
    /// Saves `checkpoint` atomically: after a crash, the old or the new one is there, whole.
    async fn store(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
}

/// Writes the acknowledged positions that arrive on `acknowledged` to `store`, at most once per
/// `interval` and once more when the channel closes. Returns the last position written.
///
/// This task is never cancelled: it ends only when the sink, the channel's only sender, has
/// finished, so no acknowledgement is lost at shutdown.
pub async fn run(
    store: &dyn CheckpointStore,
    interval: Duration,
    mut acknowledged: mpsc::Receiver<ResumePoint>,
) -> Result<Option<ResumePoint>, CheckpointError> {
    let mut latest: Option<ResumePoint> = None;
    let mut written: Option<ResumePoint> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            position = acknowledged.recv() => match position {
                Some(position) => latest = Some(position),
                None => break,
            },
            _ = ticker.tick() => {
                write_if_changed(store, &latest, &mut written).await?;
            }
        }
    }
    write_if_changed(store, &latest, &mut written).await?;
    Ok(written)
}

async fn write_if_changed(
    store: &dyn CheckpointStore,
    latest: &Option<ResumePoint>,
    written: &mut Option<ResumePoint>,
) -> Result<(), CheckpointError> {
    if let Some(position) = latest {
        if written.as_ref() != Some(position) {
            store.store(&Checkpoint::new(position.clone())).await?;
            tracing::debug!(%position, "checkpoint written");
            *written = Some(position.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frozen format: a checkpoint written by version 1 must stay readable. If this fails, add a
    /// new version and a migration; do not change this text.
    #[test]
    fn version_1_format_is_frozen() {
        let text =
            r#"{"version":1,"position":"mariadb-bin.000003:4321","updated_at_ms":1763712000000}"#;
        let checkpoint: Checkpoint = serde_json::from_str(text).unwrap();
        assert_eq!(checkpoint.position.to_string(), "mariadb-bin.000003:4321");
        assert_eq!(serde_json::to_string(&checkpoint).unwrap(), text);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_on_interval_and_once_more_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let store = file::FileStore::new(dir.path().join("c.json"));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(async move { run(&store, Duration::from_secs(5), rx).await });
        tx.send(ResumePoint::at("b.000001:100".parse().unwrap()))
            .await
            .unwrap();
        tx.send(ResumePoint {
            position: "b.000001:200".parse().unwrap(),
            gtid: Some("0-1-9".parse().unwrap()),
        })
        .await
        .unwrap();
        drop(tx);
        let written = task.await.unwrap().unwrap();
        assert_eq!(written.unwrap().to_string(), "b.000001:200 (gtid 0-1-9)");
        let loaded = file::FileStore::new(dir.path().join("c.json"))
            .load()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded.position.to_string(), "b.000001:200");
        assert_eq!(loaded.gtid.unwrap().to_string(), "0-1-9");
    }
}
