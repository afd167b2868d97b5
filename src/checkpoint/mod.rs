//! Progress: which binlog position is safe to resume from, and saving it.
//!
//! Three positions matter, with the invariant `committed ≤ acknowledged ≤ read`:
//! - *read*: how far the source has read the binlog;
//! - *acknowledged*: the latest transaction boundary whose events, and all before them,
//!   Kinesis has acknowledged (computed by `tracker::AckTracker` inside the sink);
//! - *committed*: the acknowledged position last written to the store by `run`.
//!
//! The checkpoint only ever names a transaction boundary (the position just after an XID or
//! COMMIT event, after a DDL statement, or the start of a file after a rotation), so a resumed
//! stream never starts inside a transaction.
//!
//! # Store format
//!
//! A small versioned JSON document, `{"version":1,"position":"bin.000003:1234",...}`, written
//! atomically by `file::FileStore` (a local file, or an EFS volume on Fargate) or
//! [`s3::S3Store`] (an S3 object: what survives a Fargate task without a volume). A document
//! with an unknown version is an error, never silently ignored.

pub(crate) mod file;
pub mod s3;
pub(crate) mod tracker;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    config::{CheckpointConfig, CheckpointLocation},
    fence::Fence,
    metrics::Metrics,
    position::{BinlogPosition, GtidState, ResumePoint},
    stream::{Boundary, PreparedXa, SnapshotState},
};

/// The current checkpoint format version: 2 added `snapshot`. Version 1 documents still load
/// (as having no `snapshot`: every table the filter includes counts as covered, so an
/// upgrade never re-snapshots a database).
pub(crate) const CHECKPOINT_VERSION: u32 = 2;

/// The versions [`Checkpoint::from_bytes`] reads.
const READABLE_VERSIONS: std::ops::RangeInclusive<u64> = 1..=2;

/// A saved resume point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version; see [`CHECKPOINT_VERSION`].
    pub(crate) version: u32,
    /// The binlog position to resume from: always a transaction boundary.
    pub position: BinlogPosition,
    /// The GTID state at that boundary, when the server assigns GTIDs: what resumes on
    /// another server of the topology after a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gtid: Option<GtidState>,
    /// When it was written, in milliseconds since the Unix epoch (for people and alarms).
    pub(crate) updated_at_ms: u64,
    /// XA transactions prepared before `position` and not yet committed or rolled back: their
    /// rows are in the binlog before `position` but belong to the stream only at their
    /// `XA COMMIT`, so a resume reads them again from where they start. Absent when none (a
    /// version 1 document without it is unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) xa_prepared: Vec<PreparedXa>,
    /// Written by an instance's last write at a clean stop, before it let go of the instance
    /// lock: nothing of it can still reach the stream, so the next instance need not wait out
    /// its lease (see `crate::fence`). Absent (false) otherwise; every instance's first write
    /// clears it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) released: bool,
    /// Snapshot progress at `position` (version 2): the filter the stream covers, the tables
    /// still to read and how far the current one got. Absent with snapshots off, and in
    /// version 1 documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) snapshot: Option<SnapshotState>,
}

impl Checkpoint {
    /// A checkpoint at `point`, stamped now, with no prepared XA transaction.
    pub fn new(point: ResumePoint) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            position: point.position,
            gtid: point.gtid.filter(|g| !g.is_empty()),
            updated_at_ms: now_ms(),
            xa_prepared: Vec::new(),
            released: false,
            snapshot: None,
        }
    }

    /// The same checkpoint, stamped now, marked released or not.
    pub(crate) fn restamped(&self, released: bool) -> Self {
        Self {
            updated_at_ms: now_ms(),
            released,
            ..self.clone()
        }
    }

    /// A checkpoint at `boundary`, with the XA transactions prepared and undecided there.
    pub(crate) fn at(boundary: &Boundary) -> Self {
        Self {
            xa_prepared: boundary.prepared.clone(),
            snapshot: boundary.snapshot.as_deref().cloned(),
            ..Self::new(boundary.point.clone())
        }
    }

    /// Where to resume.
    pub(crate) fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            position: self.position.clone(),
            gtid: self.gtid.clone(),
        }
    }

    /// The boundary it saved: where to resume, with the XA transactions undecided there.
    pub(crate) fn boundary(&self) -> Boundary {
        Boundary {
            point: self.resume_point(),
            binlog_ts: 0,
            prepared: self.xa_prepared.clone(),
            snapshot: self.snapshot.clone().map(Arc::new),
        }
    }

    /// The stored form: one line of JSON.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec(self).expect("a checkpoint serializes");
        text.push(b'\n');
        text
    }

    /// Reads the stored form, checking the version first so that a newer format is reported
    /// as such rather than as a parse error.
    pub(crate) fn from_bytes(bytes: &[u8], location: &str) -> Result<Self, CheckpointError> {
        let corrupt = |message: String| CheckpointError::Corrupt {
            location: location.to_owned(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if READABLE_VERSIONS.contains(&v) => {}
            Some(v) => return Err(corrupt(format!("unknown version {v}"))),
            None => return Err(corrupt("no version field".into())),
        }
        serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
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
    #[error("cannot read checkpoint {location}")]
    Read {
        /// The file or object.
        location: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Writing failed.
    #[error("cannot write checkpoint {location}")]
    Write {
        /// The file or object.
        location: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Another instance wrote the checkpoint since this one last read or wrote it (a
    /// conditional write was refused): permanent, never retried.
    #[error("checkpoint {location} was written by another instance since this one last read or wrote it; this one stops so that two instances never write the same stream")]
    Conflict {
        /// Where.
        location: String,
    },
    /// The document exists but is not a checkpoint this version understands.
    #[error("checkpoint {location} is not valid: {message}; fix or remove it, or start with --start-position or --from-end")]
    Corrupt {
        /// The file or object.
        location: String,
        /// What is wrong.
        message: String,
    },
}

impl CheckpointError {
    /// Whether trying again later could succeed (a timeout, a server fault, a full disk)
    /// rather than someone having to change something (a refused permission, a missing
    /// bucket, another instance's write, a corrupt document).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            CheckpointError::Read { source, .. } | CheckpointError::Write { source, .. } => {
                source.is_transient()
            }
            CheckpointError::Conflict { .. } | CheckpointError::Corrupt { .. } => false,
        }
    }
}

/// What failed underneath a read or write of the store, classified where it is born.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The call took longer than allowed.
    #[error("no answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// S3 answered with an error, or none (`status` is `None` when no response came).
    #[error("S3 call failed{}", .status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    S3 {
        /// The HTTP status of the answer.
        status: Option<u16>,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The probe's impossible write succeeded.
    #[error("a write that cannot match any object succeeded: the store does not honour conditional writes (If-Match), which the daemon relies on")]
    ConditionalWritesIgnored,
}

impl StoreError {
    /// See [`CheckpointError::is_transient`]. File errors are transient unless they name a
    /// permission, a missing folder or a read-only file system; S3 errors are transient
    /// without an answer, on 5xx and 429 (throttling), permanent on other 4xx (403 access
    /// denied, 404 no such bucket, 301 wrong region, 400).
    pub(crate) fn is_transient(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            StoreError::Io(error) => !matches!(
                error.kind(),
                PermissionDenied | NotFound | ReadOnlyFilesystem | InvalidInput | NotADirectory
            ),
            StoreError::TimedOut(_) => true,
            StoreError::S3 { status, .. } => match status {
                None => true,
                Some(status) => *status >= 500 || *status == 429,
            },
            StoreError::ConditionalWritesIgnored => false,
        }
    }
}

/// The store `config` names.
pub(crate) async fn open_store(config: &CheckpointConfig) -> Arc<dyn CheckpointStore> {
    match &config.location {
        CheckpointLocation::File(path) => Arc::new(file::FileStore::new(path.clone())),
        CheckpointLocation::S3 { bucket, key } => Arc::new(
            s3::S3Store::new(
                bucket,
                key,
                config.region.as_deref(),
                config.endpoint_url.as_deref(),
            )
            .await,
        ),
    }
}

/// Where checkpoints live.
#[async_trait::async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The saved checkpoint, or `None` when there is none yet.
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError>;
    /// Saves `checkpoint` atomically: after a crash, the old or the new one is there, whole.
    async fn store(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
    /// Checks, without changing the checkpoint, that this process may write it (`check`).
    async fn probe(&self) -> Result<(), CheckpointError>;
    /// Where it is, for messages.
    fn location(&self) -> String;
}

/// Consecutive failed interval writes tolerated before the run stops: a store that is down
/// for a moment (an S3 blip, a full disk being cleaned) only delays the checkpoint.
pub(crate) const MAX_CONSECUTIVE_WRITE_FAILURES: u32 = 12;

/// Writes the acknowledged positions that arrive on `acknowledged` to `store`, at most once per
/// `interval` and once more when the channel closes. Returns the last position written, or
/// `saved` (what the store already holds, the run's start) when none was.
///
/// A failed interval write is logged and tried again at the next interval; after
/// [`MAX_CONSECUTIVE_WRITE_FAILURES`] in a row, or when the final write fails, the error ends
/// the run (the position then resumes from the last checkpoint that was written).
///
/// This task is never cancelled: it ends only when the sink, the channel's only sender, has
/// finished, so no acknowledgement is lost at shutdown.
pub(crate) async fn run(
    store: &dyn CheckpointStore,
    writer: Writer<'_>,
    saved: Option<Checkpoint>,
    mut acknowledged: mpsc::Receiver<Boundary>,
    metrics: &Metrics,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let Writer {
        interval,
        fence,
        timeout,
    } = writer;
    let mut latest: Option<Boundary> = None;
    let mut written: Option<Checkpoint> = saved;
    let mut failures = 0;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            position = acknowledged.recv() => match position {
                Some(position) => latest = Some(position),
                None => break,
            },
            _ = ticker.tick() => {
                match write_if_changed(store, &latest, &mut written, metrics, fence, timeout).await {
                    Ok(()) => failures = 0,
                    // Another instance owns the checkpoint now, or someone must change
                    // something (a permission, the bucket): never retried.
                    Err(error) if !error.is_transient() => return Err(error),
                    Err(error) if failures + 1 < MAX_CONSECUTIVE_WRITE_FAILURES => {
                        failures += 1;
                        tracing::warn!(error = %crate::report::error_chain(&error), failures, "checkpoint write failed; trying again at the next interval");
                    }
                    Err(error) => return Err(error),
                }
            }
        }
    }
    write_if_changed(store, &latest, &mut written, metrics, fence, timeout).await?;
    Ok(written)
}

/// How the checkpoint task writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    /// How often it writes the latest acknowledged boundary.
    pub(crate) interval: Duration,
    /// It writes only while this is open: never without the instance lock.
    pub(crate) fence: &'a Fence,
    /// The longest one write may take.
    pub(crate) timeout: Duration,
}

/// Writes `checkpoint` if the fence is open, bounded by `timeout`; `Ok(false)` when fenced.
pub(crate) async fn store_fenced(
    store: &dyn CheckpointStore,
    checkpoint: &Checkpoint,
    fence: &Fence,
    timeout: Duration,
) -> Result<bool, CheckpointError> {
    if !fence.is_open() {
        return Ok(false);
    }
    match tokio::time::timeout(timeout, store.store(checkpoint)).await {
        Ok(result) => result.map(|()| true),
        Err(_) => Err(CheckpointError::Write {
            location: store.location(),
            source: StoreError::TimedOut(timeout),
        }),
    }
}

async fn write_if_changed(
    store: &dyn CheckpointStore,
    latest: &Option<Boundary>,
    written: &mut Option<Checkpoint>,
    metrics: &Metrics,
    fence: &Fence,
    timeout: Duration,
) -> Result<(), CheckpointError> {
    if let Some(boundary) = latest {
        let position = &boundary.point;
        // Snapshot progress moves without the position moving (chunks placed while the
        // server is idle): either change is worth a write.
        let unchanged = written.as_ref().is_some_and(|w| {
            &w.resume_point() == position && w.snapshot.as_ref() == boundary.snapshot.as_deref()
        });
        if !unchanged {
            let checkpoint = Checkpoint::at(boundary);
            if !store_fenced(store, &checkpoint, fence, timeout).await? {
                tracing::warn!(%position, "not writing the checkpoint: this instance's hold on the instance lock is in doubt");
                return Ok(());
            }
            tracing::debug!(%position, "checkpoint written");
            metrics.checkpoint_written(&position.position, boundary.binlog_ts);
            *written = Some(checkpoint);
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

    /// The prepared XA list is optional: present only when there is one, so version 1
    /// documents without it read and write unchanged.
    #[test]
    fn prepared_xa_transactions_are_an_optional_field_of_version_1() {
        let text = r#"{"version":1,"position":"mariadb-bin.000003:4321","updated_at_ms":1763712000000,"xa_prepared":[{"xid":"X'7831',X'',1","position":"mariadb-bin.000003:950"}]}"#;
        let checkpoint: Checkpoint = serde_json::from_str(text).unwrap();
        assert_eq!(
            checkpoint.xa_prepared[0].position.to_string(),
            "mariadb-bin.000003:950"
        );
        assert_eq!(serde_json::to_string(&checkpoint).unwrap(), text);
    }

    /// Frozen format of version 2: snapshot progress. Both versions read through
    /// `from_bytes`; a version 1 document has no snapshot part.
    #[test]
    fn version_2_format_is_frozen_and_version_1_still_loads() {
        let text = r#"{"version":2,"position":"mariadb-bin.000003:4321","updated_at_ms":1763712000000,"snapshot":{"covered":{"include":["shop.*"],"exclude":["shop.tmp_*"]},"pending":[{"table":"shop.orders","id":"initial-1763712000000","after":[{"int":5000}],"rows":5000},{"table":"shop.users","id":"initial-1763712000000"}]}}"#;
        let checkpoint = Checkpoint::from_bytes(text.as_bytes(), "t").unwrap();
        let snapshot = checkpoint.snapshot.as_ref().unwrap();
        assert_eq!(snapshot.pending[0].table.to_string(), "shop.orders");
        assert_eq!(snapshot.pending[0].rows, 5000);
        assert!(!snapshot.pending[1].started());
        assert_eq!(serde_json::to_string(&checkpoint).unwrap(), text);
        let round = Checkpoint::at(&checkpoint.boundary());
        assert_eq!(round.snapshot, checkpoint.snapshot);
        assert_eq!(round.version, CHECKPOINT_VERSION);
        let old = Checkpoint::from_bytes(
            br#"{"version":1,"position":"mariadb-bin.000003:4321","updated_at_ms":1}"#,
            "t",
        )
        .unwrap();
        assert_eq!(old.snapshot, None);
    }

    /// Regression (issue 14): snapshot progress at an unchanged position (chunks placed while
    /// the server is idle) is written; it was not, as only the position was compared, so a
    /// restart read the whole table again.
    #[tokio::test(start_paused = true)]
    async fn snapshot_progress_at_the_same_position_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = file::FileStore::new(dir.path().join("c.json"));
        let start = ResumePoint::at("b.000001:4".parse().unwrap());
        let state = |rows: u64| {
            let mut table = crate::stream::PendingTable::new(
                crate::event::TableName::new("shop", "items"),
                "initial-1",
            );
            table.rows = rows;
            Some(Arc::new(SnapshotState {
                covered: crate::stream::Covered {
                    include: vec![],
                    exclude: vec![],
                },
                pending: vec![table],
            }))
        };
        let mut claim = Checkpoint::new(start.clone());
        claim.snapshot = state(0).as_deref().cloned();
        let (tx, rx) = mpsc::channel(8);
        tx.send(Boundary {
            snapshot: state(500),
            ..Boundary::from(start.clone())
        })
        .await
        .unwrap();
        drop(tx);
        run(&store, writer(), Some(claim), rx, &Metrics::default())
            .await
            .unwrap();
        let saved = store.load().await.unwrap().expect("written");
        assert_eq!(saved.snapshot.unwrap().pending[0].rows, 500);
    }

    /// Regression (issue 11, item 2): with nothing acknowledged, the run's saved start is what
    /// the checkpoint holds, and what a cut-short drain reports (it said "(none)").
    #[tokio::test(start_paused = true)]
    async fn with_nothing_acknowledged_the_saved_start_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = file::FileStore::new(dir.path().join("c.json"));
        let start = ResumePoint::at("b.000001:4".parse().unwrap());
        let (tx, rx) = mpsc::channel(8);
        drop(tx);
        let written = run(
            &store,
            writer(),
            Some(Checkpoint::new(start.clone())),
            rx,
            &Metrics::default(),
        )
        .await
        .unwrap();
        assert_eq!(written.map(|c| c.resume_point()), Some(start));
        assert!(
            store.load().await.unwrap().is_none(),
            "nothing new to write"
        );
    }

    /// A store whose writes all fail with the error `fail` makes, counting them.
    struct Failing {
        fail: fn() -> StoreError,
        writes: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl CheckpointStore for Failing {
        async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
            Ok(None)
        }
        async fn store(&self, _: &Checkpoint) -> Result<(), CheckpointError> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(CheckpointError::Write {
                location: self.location(),
                source: (self.fail)(),
            })
        }
        async fn probe(&self) -> Result<(), CheckpointError> {
            Ok(())
        }
        fn location(&self) -> String {
            "failing".into()
        }
    }

    /// Writes to `store` with a boundary acknowledged and the sender kept open, until `run`
    /// gives up; returns how many writes it tried.
    async fn writes_until_it_stops(store: &Failing) -> usize {
        let (tx, rx) = mpsc::channel(8);
        tx.send(ResumePoint::at("b.000001:100".parse().unwrap()).into())
            .await
            .unwrap();
        let error = run(store, writer(), None, rx, &Metrics::default())
            .await
            .unwrap_err();
        assert!(matches!(error, CheckpointError::Write { .. }), "{error}");
        drop(tx);
        store.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Issue 13: a store that answers access denied or no such bucket stops the run at once;
    /// it used to be retried 12 times, a minute of a run that could never checkpoint.
    #[tokio::test(start_paused = true)]
    async fn a_refused_store_stops_at_once_and_a_failing_one_is_retried() {
        let status = |status| StoreError::S3 {
            status: Some(status),
            source: "refused".into(),
        };
        let denied = Failing {
            fail: || StoreError::S3 {
                status: Some(403),
                source: "AccessDenied".into(),
            },
            writes: Default::default(),
        };
        assert_eq!(writes_until_it_stops(&denied).await, 1);
        let down = Failing {
            fail: || StoreError::S3 {
                status: Some(503),
                source: "SlowDown".into(),
            },
            writes: Default::default(),
        };
        assert_eq!(
            writes_until_it_stops(&down).await,
            MAX_CONSECUTIVE_WRITE_FAILURES as usize
        );
        for (error, transient) in [
            (status(403), false),
            (status(404), false),
            (status(301), false),
            (status(400), false),
            (status(500), true),
            (status(503), true),
            (status(429), true),
            (
                StoreError::S3 {
                    status: None,
                    source: "dispatch failure".into(),
                },
                true,
            ),
            (StoreError::TimedOut(Duration::from_secs(1)), true),
            (StoreError::ConditionalWritesIgnored, false),
            (
                StoreError::Io(std::io::ErrorKind::PermissionDenied.into()),
                false,
            ),
            (StoreError::Io(std::io::ErrorKind::StorageFull.into()), true),
        ] {
            assert_eq!(error.is_transient(), transient, "{error:?}");
        }
    }

    fn writer() -> Writer<'static> {
        static OPEN: std::sync::OnceLock<Fence> = std::sync::OnceLock::new();
        Writer {
            interval: Duration::from_secs(5),
            fence: OPEN.get_or_init(Fence::always_open),
            timeout: Duration::from_secs(10),
        }
    }

    /// A fenced-off instance (its hold on the lock in doubt) writes no checkpoint.
    #[tokio::test(start_paused = true)]
    async fn nothing_is_written_while_the_fence_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = file::FileStore::new(dir.path().join("c.json"));
        let fence = Fence::new();
        let (tx, rx) = mpsc::channel(8);
        tx.send(ResumePoint::at("b.000001:100".parse().unwrap()).into())
            .await
            .unwrap();
        drop(tx);
        let writer = Writer {
            fence: &fence,
            ..writer()
        };
        let written = run(&store, writer, None, rx, &Metrics::default())
            .await
            .unwrap();
        assert_eq!(written, None);
        assert!(store.load().await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn writes_on_interval_and_once_more_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let store = file::FileStore::new(dir.path().join("c.json"));
        let (tx, rx) = mpsc::channel(8);
        let task =
            tokio::spawn(async move { run(&store, writer(), None, rx, &Metrics::default()).await });
        tx.send(ResumePoint::at("b.000001:100".parse().unwrap()).into())
            .await
            .unwrap();
        tx.send(
            ResumePoint {
                position: "b.000001:200".parse().unwrap(),
                gtid: Some("0-1-9".parse().unwrap()),
            }
            .into(),
        )
        .await
        .unwrap();
        drop(tx);
        let written = task.await.unwrap().unwrap();
        assert_eq!(
            written.unwrap().resume_point().to_string(),
            "b.000001:200 (gtid 0-1-9)"
        );
        let loaded = file::FileStore::new(dir.path().join("c.json"))
            .load()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded.position.to_string(), "b.000001:200");
        assert_eq!(loaded.gtid.unwrap().to_string(), "0-1-9");
    }
}
