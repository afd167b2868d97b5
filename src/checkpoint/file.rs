//! The checkpoint as a local file, written atomically: temporary file, fsync, rename, fsync of
//! the directory. A crash leaves either the old or the new checkpoint, never a torn one.
//!
//! # Conditional writes
//!
//! The store remembers the file's content as it last read or wrote it, and refuses to replace
//! a file that changed since ([`CheckpointError::Conflict`]): another instance sharing the file
//! (on EFS) has written it, so this one's hold on the stream is gone. The comparison and the
//! rename are two steps, so two writers racing within that moment are not told apart; the
//! instance lock's lease (`crate::fence`) is what keeps them from racing.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use super::{Checkpoint, CheckpointError, CheckpointStore, StoreError};

/// A checkpoint file.
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    path: PathBuf,
    /// The content as last read or written: `Some(None)` when there was no file, `None` before
    /// the first read or write (the first write is then unconditional).
    seen: Arc<Mutex<Option<Option<Vec<u8>>>>>,
}

impl FileStore {
    /// A store at `path`; its directory is created on the first write.
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Option<Option<Vec<u8>>>> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn load_sync(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                *self.seen() = Some(None);
                return Ok(None);
            }
            Err(source) => {
                return Err(CheckpointError::Read {
                    location: self.location(),
                    source: StoreError::Io(source),
                })
            }
        };
        let checkpoint = Checkpoint::from_bytes(&text, &self.location())?;
        *self.seen() = Some(Some(text));
        Ok(Some(checkpoint))
    }

    /// The checkpoint's folder, created if missing (as the first write needs it).
    fn dir(&self) -> Result<PathBuf, CheckpointError> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|source| self.write_error(source))?;
        Ok(dir)
    }

    fn write_error(&self, source: std::io::Error) -> CheckpointError {
        CheckpointError::Write {
            location: self.location(),
            source: StoreError::Io(source),
        }
    }

    fn store_sync(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let write_error = |source: std::io::Error| self.write_error(source);
        let dir = self.dir()?;
        // A temporary file of this process's own: two instances never share one.
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".tmp.{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let text = checkpoint.to_bytes();
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp).map_err(write_error)?;
            file.write_all(&text).map_err(write_error)?;
            file.sync_all().map_err(write_error)?;
        }
        let expected = self.seen().clone();
        if let Some(expected) = expected {
            let current = match std::fs::read(&self.path) {
                Ok(current) => Some(current),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    std::fs::remove_file(&tmp).ok();
                    return Err(write_error(error));
                }
            };
            if current != expected {
                std::fs::remove_file(&tmp).ok();
                return Err(CheckpointError::Conflict {
                    location: self.location(),
                });
            }
        }
        std::fs::rename(&tmp, &self.path).map_err(write_error)?;
        *self.seen() = Some(Some(text));
        // The rename is only durable once the directory entry is on disk.
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl CheckpointStore for FileStore {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.load_sync())
            .await
            .expect("the checkpoint reader does not panic")
    }

    async fn store(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let (this, checkpoint) = (self.clone(), checkpoint.clone());
        tokio::task::spawn_blocking(move || this.store_sync(&checkpoint))
            .await
            .expect("the checkpoint writer does not panic")
    }

    async fn probe(&self) -> Result<(), CheckpointError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.probe_sync())
            .await
            .expect("the checkpoint probe does not panic")
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

impl FileStore {
    /// Creates (and removes) a file beside the checkpoint, creating its directory as a first
    /// write would.
    fn probe_sync(&self) -> Result<(), CheckpointError> {
        let write_error = |source: std::io::Error| self.write_error(source);
        let probe = self
            .dir()?
            .join(format!(".binlog-kinesis-check.{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(write_error)?;
        std::fs::remove_file(&probe).map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("sub/checkpoint.json"));
        assert_eq!(store.load().await.unwrap(), None);
        let first = Checkpoint::new(crate::position::ResumePoint::at(
            "b.000001:4".parse().unwrap(),
        ));
        store.store(&first).await.unwrap();
        let second = Checkpoint::new(crate::position::ResumePoint::at(
            "b.000002:900".parse().unwrap(),
        ));
        store.store(&second).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(second));
        let leftovers = std::fs::read_dir(dir.path().join("sub")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    /// Regression (issue 11, item 4): a store whose file another instance wrote since it last
    /// read or wrote it refuses to write over it.
    #[tokio::test]
    async fn a_file_another_instance_wrote_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let at = |offset: u64| {
            Checkpoint::new(crate::position::ResumePoint::at(
                crate::position::BinlogPosition::new("b.000001", offset).unwrap(),
            ))
        };
        let (old, new) = (FileStore::new(&path), FileStore::new(&path));
        assert_eq!(old.load().await.unwrap(), None);
        assert_eq!(new.load().await.unwrap(), None);
        old.store(&at(100)).await.unwrap();
        assert!(matches!(
            new.store(&at(50)).await,
            Err(CheckpointError::Conflict { .. })
        ));
        // The new instance reads it, then owns it: the old one's next write is refused.
        new.load().await.unwrap();
        new.store(&at(200)).await.unwrap();
        assert!(matches!(
            old.store(&at(300)).await,
            Err(CheckpointError::Conflict { .. })
        ));
        let stored = new.load().await.unwrap().unwrap();
        assert_eq!(stored.position.offset(), 200);
        new.store(&at(400)).await.unwrap();
    }

    /// Regression (issue 12, item 4): `check` passed a checkpoint location that could not be
    /// written.
    #[tokio::test]
    async fn the_probe_fails_where_the_checkpoint_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("new/sub/c.json"));
        store.probe().await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("new/sub"))
                .unwrap()
                .count(),
            0
        );
        let error = FileStore::new("/proc/nope/c.json")
            .probe()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("/proc/nope/c.json"), "{error}");
    }

    #[tokio::test]
    async fn a_corrupt_or_future_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let store = FileStore::new(&path);
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            store.load().await,
            Err(CheckpointError::Corrupt { .. })
        ));
        std::fs::write(&path, r#"{"version":3,"position":"b.000001:4"}"#).unwrap();
        let error = store.load().await.unwrap_err();
        assert!(error.to_string().contains("unknown version 3"), "{error}");
    }
}
