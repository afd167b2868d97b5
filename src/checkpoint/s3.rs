//! The checkpoint as an S3 object (`[checkpoint] url = "s3://bucket/key"`): what survives a
//! Fargate task, whose disk dies with it.
//!
//! A PutObject replaces the object whole or not at all, so a crash mid-write leaves the old
//! checkpoint; S3 reads after a successful write see the new one (strong read-after-write
//! consistency). The document is the same versioned JSON as the file store's.
//!
//! # Conditional writes
//!
//! Every write is conditional on the object being the one this store last read or wrote
//! (`If-Match` its ETag, or `If-None-Match: *` when there was none): an object another instance
//! wrote since is never replaced ([`CheckpointError::Conflict`]).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_sdk_s3::{error::SdkError, primitives::ByteStream};

use super::{Checkpoint, CheckpointError, CheckpointStore, StoreError};

/// How long one S3 call may take, retries by the SDK included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A checkpoint object in S3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    /// The ETag as last read or written: `Some(None)` when there was no object, `None` before
    /// the first read or write (the first write is then unconditional).
    seen: Arc<Mutex<Option<Option<String>>>>,
}

impl S3Store {
    /// A store for `s3://bucket/key`; `endpoint_url` (an emulator, a VPC endpoint) switches
    /// to path-style addressing, which every S3-compatible endpoint understands.
    pub async fn new(
        bucket: &str,
        key: &str,
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Self {
        let sdk_config = crate::config::aws_sdk_config(region, None).await;
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk_config);
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url).force_path_style(true);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Option<Option<String>>> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_error(&self, source: StoreError) -> CheckpointError {
        CheckpointError::Read {
            location: self.location(),
            source,
        }
    }

    fn write_error(&self, source: StoreError) -> CheckpointError {
        CheckpointError::Write {
            location: self.location(),
            source,
        }
    }
}

#[async_trait::async_trait]
impl CheckpointStore for S3Store {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let call = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send();
        let output = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => return Err(self.read_error(StoreError::TimedOut(CALL_TIMEOUT))),
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                if error.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                    *self.seen() = Some(None);
                    return Ok(None);
                }
                return Err(self.read_error(s3_error(error)));
            }
        };
        let etag = output.e_tag().map(str::to_owned);
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|error| {
                self.read_error(StoreError::S3 {
                    status: None,
                    source: Box::new(error),
                })
            })?
            .into_bytes();
        let checkpoint = Checkpoint::from_bytes(&bytes, &self.location())?;
        *self.seen() = Some(etag);
        Ok(Some(checkpoint))
    }

    async fn store(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(ByteStream::from(checkpoint.to_bytes()));
        let expected = self.seen().clone();
        request = match expected {
            Some(Some(etag)) => request.if_match(etag),
            Some(None) => request.if_none_match("*"),
            None => request,
        };
        match tokio::time::timeout(CALL_TIMEOUT, request.send()).await {
            Err(_) => Err(self.write_error(StoreError::TimedOut(CALL_TIMEOUT))),
            // 412: the object is not the one last seen; 409: another conditional write to it
            // is under way. Either way another instance writes it.
            Ok(Err(error))
                if error
                    .raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
            {
                Err(CheckpointError::Conflict {
                    location: self.location(),
                })
            }
            Ok(Err(error)) => Err(self.write_error(s3_error(error))),
            Ok(Ok(output)) => {
                *self.seen() = Some(output.e_tag().map(str::to_owned));
                Ok(())
            }
        }
    }

    /// A PutObject that can never succeed: `If-Match` an ETag no object has. S3 checks the
    /// permission first, so 412 (the object is there) or 404 (it is not) says this task may
    /// write the key, and the checkpoint is untouched; 403 says it may not.
    async fn probe(&self) -> Result<(), CheckpointError> {
        let call = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match("\"binlog-kinesis-check\"")
            .body(ByteStream::from_static(b""))
            .send();
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(self.write_error(StoreError::TimedOut(CALL_TIMEOUT))),
            Ok(Ok(_)) => Err(self.write_error(StoreError::ConditionalWritesIgnored)),
            Ok(Err(error))
                if error
                    .raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 404 | 412)) =>
            {
                Ok(())
            }
            // The key cannot be written: s3:PutObject on it is needed.
            Ok(Err(error)) => Err(self.write_error(s3_error(error))),
        }
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// An SDK error with the HTTP status of its answer, if one came.
fn s3_error<E>(error: SdkError<E, aws_smithy_runtime_api::http::Response>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::S3 {
        status: error.raw_response().map(|r| r.status().as_u16()),
        source: Box::new(error),
    }
}
