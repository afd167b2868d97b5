//! What to do after a failed put: the classification table for Kinesis error codes, the
//! producer's backoff between attempts, and the shard write quota as time.
//!
//! Classification happens here, once, where the error is born: every other part of the sink
//! only sees [`RetryAction`].

use std::time::Duration;

use crate::backoff::Backoff;

/// What a failure means for the record or call it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Try again after a backoff: a server-side fault, a network problem.
    Retry,
    /// Try again after a backoff: the shard's write quota was exceeded (counted apart, as
    /// `ThrottledRecords`).
    Throttled,
    /// Stop: retrying cannot succeed until someone changes something.
    Fail,
}

/// Classifies a Kinesis error by its code (per-record `ErrorCode` or the call's error code)
/// and, for calls, the HTTP status.
pub(crate) fn classify(code: Option<&str>, http_status: Option<u16>) -> RetryAction {
    match code {
        Some("ProvisionedThroughputExceededException") => RetryAction::Throttled,
        Some(
            "InternalFailure"
            | "InternalFailureException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "KMSThrottlingException"
            | "ThrottlingException"
            | "Throttling"
            | "LimitExceededException"
            | "RequestTimeout"
            | "RequestTimeoutException"
            // Temporary credentials rotate; the SDK's provider fetches new ones on the next call.
            | "ExpiredTokenException"
            | "ExpiredToken",
        ) => RetryAction::Retry,
        Some(
            "ResourceNotFoundException"
            | "AccessDeniedException"
            | "InvalidArgumentException"
            | "ValidationException"
            | "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSInvalidStateException"
            | "KMSNotFoundException"
            | "KMSOptInRequired"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken",
        ) => RetryAction::Fail,
        _ => match http_status {
            Some(status) if status >= 500 || status == 429 => RetryAction::Retry,
            Some(status) if (400..500).contains(&status) => RetryAction::Fail,
            // No status: the request never got an answer (connection refused, timeout).
            _ => RetryAction::Retry,
        },
    }
}

/// The producer's default backoff: 100 ms doubling up to 5 s.
pub(crate) const DEFAULT_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// Kinesis's write quota per shard: bytes per second (data and partition keys).
pub(crate) const SHARD_BYTES_PER_SECOND: u64 = 1 << 20;

/// Kinesis's write quota per shard: records per second.
pub(crate) const SHARD_RECORDS_PER_SECOND: u64 = 1000;

/// How much of a shard's write quota a record of `bytes` (data and key) takes, as time: the
/// time the shard needs to refill it, with a small margin for clock skew between here and
/// Kinesis.
pub(crate) fn quota_time(bytes: usize) -> Duration {
    let by_bytes = Duration::from_secs_f64(bytes as f64 / SHARD_BYTES_PER_SECOND as f64);
    let by_records = Duration::from_secs(1) / SHARD_RECORDS_PER_SECOND as u32;
    by_bytes.max(by_records).mul_f64(1.02)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_faults_are_retried() {
        for code in [
            "InternalFailure",
            "KMSThrottlingException",
            "ExpiredTokenException",
        ] {
            assert_eq!(
                classify(Some(code), Some(400)),
                RetryAction::Retry,
                "{code}"
            );
        }
        assert_eq!(
            classify(Some("ProvisionedThroughputExceededException"), Some(400)),
            RetryAction::Throttled,
            "counted as throttling, and retried"
        );
        assert_eq!(classify(None, Some(503)), RetryAction::Retry);
        assert_eq!(classify(None, None), RetryAction::Retry);
        assert_eq!(
            classify(Some("SomethingNew"), Some(500)),
            RetryAction::Retry
        );
    }

    #[test]
    fn missing_streams_and_denied_access_stop() {
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "InvalidArgumentException",
            "ValidationException",
            "KMSDisabledException",
            "UnrecognizedClientException",
        ] {
            assert_eq!(classify(Some(code), Some(400)), RetryAction::Fail, "{code}");
        }
        assert_eq!(classify(Some("SomethingNew"), Some(403)), RetryAction::Fail);
    }

    #[test]
    fn quota_time_is_the_shard_refill_time() {
        assert!(quota_time(1 << 20) >= Duration::from_secs(1));
        assert!(quota_time(1 << 20) < Duration::from_millis(1050));
        assert!(quota_time(512 << 10) >= Duration::from_millis(500));
        // A small record takes a record's share: 1 ms.
        assert!(quota_time(100) >= Duration::from_millis(1));
        assert!(quota_time(100) < Duration::from_millis(2));
    }
}
