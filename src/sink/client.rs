//! The seam between the producer and Kinesis: [`KinesisClient`], implemented for the AWS SDK
//! by [`AwsKinesisClient`] and, in tests, by scripted fakes that throttle, fail records
//! partially or refuse calls.

use aws_sdk_kinesis::{
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::Blob,
    types::{PutRecordsRequestEntry, StreamStatus},
};

use super::retry::{classify, RetryAction};
use crate::config::KinesisConfig;

/// One Kinesis record to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The partition key (`database.table`).
    pub partition_key: String,
    /// One or more event lines, each ending with `\n`.
    pub data: Vec<u8>,
}

/// The result of one record in a PutRecords call, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Kinesis stored the record.
    Written,
    /// Kinesis did not store it.
    Failed {
        /// The per-record `ErrorCode`.
        code: String,
        /// The per-record `ErrorMessage`.
        message: String,
    },
}

/// A whole call failed: no record of it is known to be stored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("kinesis call failed ({}): {message}", code.as_deref().unwrap_or("no error code"))]
pub struct CallError {
    /// Retry or stop.
    pub action: RetryAction,
    /// The AWS error code, when the service answered with one.
    pub code: Option<String>,
    /// What happened, for the log.
    pub message: String,
}

/// Puts records into a stream.
#[async_trait::async_trait]
pub trait KinesisClient: Send + Sync + 'static {
    /// One PutRecords call. On `Ok`, the outcomes are in request order, one per record.
    async fn put_records(
        &self,
        stream: &str,
        records: Vec<Record>,
    ) -> Result<Vec<RecordOutcome>, CallError>;

    /// What the records go to, for messages: the stream, or a local outlet.
    fn destination(&self, stream: &str) -> String {
        format!("kinesis stream {stream:?}")
    }

    /// What to check when the destination refuses records for good.
    fn refusal_hint(&self) -> &'static str {
        "; check that the stream exists and that this task may write to it"
    }

    /// Fails unless `stream` exists and accepts writes; called once at startup. Returns what
    /// the stream says about itself.
    async fn check_stream(&self, _stream: &str) -> Result<StreamInfo, CallError> {
        Ok(StreamInfo::default())
    }
}

/// What a stream says about itself at startup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's largest record (data plus partition key), when it reports one: 1 MiB by
    /// default, up to 10 MiB where raised with UpdateMaxRecordSize.
    pub max_record_bytes: Option<usize>,
}

/// The AWS SDK client, configured from `[kinesis]` and the default credential chain.
#[derive(Debug, Clone)]
pub struct AwsKinesisClient {
    sdk: aws_sdk_kinesis::Client,
}

impl AwsKinesisClient {
    /// Builds the client: region and endpoint from the config when set, otherwise the AWS
    /// default chain (environment, profile, ECS task role).
    pub async fn new(config: &KinesisConfig) -> Self {
        let sdk_config =
            crate::config::aws_sdk_config(config.region.as_deref(), config.endpoint_url.as_deref())
                .await;
        Self {
            sdk: aws_sdk_kinesis::Client::new(&sdk_config),
        }
    }

    /// The underlying SDK client, for the reader (`tail`) and preflight checks.
    pub fn sdk(&self) -> &aws_sdk_kinesis::Client {
        &self.sdk
    }

    /// The stream's status (`ACTIVE`, `CREATING`, ...) and, when it reports one, its maximum
    /// record size in bytes, from DescribeStreamSummary.
    pub(crate) async fn stream_status(
        &self,
        stream: &str,
    ) -> Result<(StreamStatus, Option<usize>), CallError> {
        let output = self
            .sdk
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(call_error)?;
        let summary = output.stream_description_summary();
        Ok((
            summary
                .map(|s| s.stream_status().clone())
                .unwrap_or_else(|| StreamStatus::from("UNKNOWN")),
            summary
                .and_then(|s| s.max_record_size_in_kib())
                .and_then(|kib| usize::try_from(kib).ok())
                .filter(|kib| *kib > 0)
                .map(|kib| kib * 1024),
        ))
    }
}

/// Turns an SDK error into a classified [`CallError`].
pub(crate) fn call_error<E>(error: SdkError<E, aws_smithy_runtime_api::http::Response>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().map(str::to_owned);
    let action = if matches!(error, SdkError::ConstructionFailure(_)) {
        RetryAction::Fail
    } else {
        classify(code.as_deref(), status)
    };
    // The chain of causes, without the SDK's debug dump; the dump goes to the debug log.
    tracing::debug!(error = %DisplayErrorContext(&error), "kinesis call failed");
    let mut message = crate::report::error_chain(&error);
    if message.contains("no credentials found") || message.contains("CredentialsNotLoaded") {
        message = "no AWS credentials found (tried the environment, the profile files, web identity, the ECS task role and EC2 instance metadata); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with a task role".into();
        return CallError {
            action: RetryAction::Fail,
            code,
            message,
        };
    }
    CallError {
        action,
        code,
        message,
    }
}

#[async_trait::async_trait]
impl KinesisClient for AwsKinesisClient {
    async fn check_stream(&self, stream: &str) -> Result<StreamInfo, CallError> {
        match self.stream_status(stream).await? {
            (StreamStatus::Active | StreamStatus::Updating, max_record_bytes) => {
                Ok(StreamInfo { max_record_bytes })
            }
            (status, _) => Err(CallError {
                action: RetryAction::Fail,
                code: None,
                message: format!("the stream is {status}, not ACTIVE"),
            }),
        }
    }

    async fn put_records(
        &self,
        stream: &str,
        records: Vec<Record>,
    ) -> Result<Vec<RecordOutcome>, CallError> {
        let n_records = records.len();
        let entries = records
            .into_iter()
            .map(|record| {
                PutRecordsRequestEntry::builder()
                    .partition_key(record.partition_key)
                    .data(Blob::new(record.data))
                    .build()
                    .map_err(|error| CallError {
                        action: RetryAction::Fail,
                        code: None,
                        message: format!("cannot build a PutRecords entry: {error}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .sdk
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(call_error)?;
        let results = output.records();
        if results.len() != n_records {
            // The answer cannot be matched to the request; nothing can be assumed stored.
            return Err(CallError {
                action: RetryAction::Retry,
                code: None,
                message: format!(
                    "PutRecords answered {} results for {n_records} records",
                    results.len()
                ),
            });
        }
        Ok(results
            .iter()
            .map(|entry| match entry.error_code() {
                Some(code) => RecordOutcome::Failed {
                    code: code.to_owned(),
                    message: entry.error_message().unwrap_or_default().to_owned(),
                },
                None => RecordOutcome::Written,
            })
            .collect())
    }
}
