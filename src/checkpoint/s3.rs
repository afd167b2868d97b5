//! The checkpoint as an S3 object (`[checkpoint] url = "s3://bucket/key"`): what survives a
//! Fargate task, whose disk dies with it.
//!
//! A PutObject replaces the object whole or not at all, so a crash mid-write leaves the old
//! checkpoint; S3 reads after a successful write see the new one (strong read-after-write
//! consistency). The document is the same versioned JSON as the file store's.

use std::time::Duration;

use aws_sdk_s3::{error::DisplayErrorContext, primitives::ByteStream};

use super::{Checkpoint, CheckpointError, CheckpointStore};

/// How long one S3 call may take, retries by the SDK included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A checkpoint object in S3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
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
        }
    }

    fn error(&self, message: String) -> Box<dyn std::error::Error + Send + Sync> {
        message.into()
    }
}

#[async_trait::async_trait]
impl CheckpointStore for S3Store {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let read_error = |message: String| CheckpointError::Read {
            location: self.location(),
            source: self.error(message),
        };
        let call = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send();
        let output = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => {
                return Err(read_error(format!(
                    "no answer within {} s",
                    CALL_TIMEOUT.as_secs()
                )))
            }
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                if error.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                    return Ok(None);
                }
                return Err(read_error(DisplayErrorContext(&error).to_string()));
            }
        };
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|error| read_error(error.to_string()))?
            .into_bytes();
        Checkpoint::from_bytes(&bytes, &self.location()).map(Some)
    }

    async fn store(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let write_error = |message: String| CheckpointError::Write {
            location: self.location(),
            source: self.error(message),
        };
        let call = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(ByteStream::from(checkpoint.to_bytes()))
            .send();
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(write_error(format!(
                "no answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))),
            Ok(Err(error)) => Err(write_error(DisplayErrorContext(&error).to_string())),
            Ok(Ok(_)) => Ok(()),
        }
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}
