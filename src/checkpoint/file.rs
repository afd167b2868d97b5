//! The checkpoint as a local file, written atomically: temporary file, fsync, rename, fsync of
//! the directory. A crash leaves either the old or the new checkpoint, never a torn one.

use std::path::{Path, PathBuf};

use super::{Checkpoint, CheckpointError, CheckpointStore};

/// A checkpoint file.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path`; its directory is created on the first write.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load_sync(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Read {
                    location: self.location(),
                    source: source.into(),
                })
            }
        };
        Checkpoint::from_bytes(&text, &self.location()).map(Some)
    }

    fn store_sync(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let write_error = |source: std::io::Error| CheckpointError::Write {
            location: self.location(),
            source: source.into(),
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(write_error)?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = checkpoint.to_bytes();
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp).map_err(write_error)?;
            file.write_all(&text).map_err(write_error)?;
            file.sync_all().map_err(write_error)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(write_error)?;
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

    fn location(&self) -> String {
        self.path.display().to_string()
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
        assert!(!dir.path().join("sub/checkpoint.json.tmp").exists());
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
        std::fs::write(&path, r#"{"version":2,"position":"b.000001:4"}"#).unwrap();
        let error = store.load().await.unwrap_err();
        assert!(error.to_string().contains("unknown version 2"), "{error}");
    }
}
