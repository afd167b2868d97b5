//! What to do after a failed put: the classification table for Kinesis error codes, and the
//! backoff between attempts.
//!
//! Classification happens here, once, where the error is born: every other part of the sink
//! only sees [`RetryAction`].

use std::time::Duration;

use rand::{Rng, RngCore};

/// What a failure means for the record or call it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Try again after a backoff: throttling, a server-side fault, a network problem.
    Retry,
    /// Stop: retrying cannot succeed until someone changes something.
    Fail,
}

/// Classifies a Kinesis error by its code (per-record `ErrorCode` or the call's error code)
/// and, for calls, the HTTP status.
pub fn classify(code: Option<&str>, http_status: Option<u16>) -> RetryAction {
    match code {
        Some(
            "ProvisionedThroughputExceededException"
            | "InternalFailure"
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

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

/// The producer's default backoff: 100 ms doubling up to 5 s.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first retry): a uniformly random
    /// duration between half and all of `min(initial * 2^(attempt-1), max)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::rng())
    }

    /// [`Backoff::delay`] with the jitter drawn from `rng`, so that a seeded caller (the
    /// producer's property tests) gets the same delays on every run.
    pub fn delay_with(&self, attempt: u32, rng: &mut dyn RngCore) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self.initial.saturating_mul(1 << exponent).min(self.max);
        let half = ceiling / 2;
        half + rng.random_range(Duration::ZERO..=half)
    }
}

/// Kinesis's write quota per shard: bytes per second (data and partition keys).
pub const SHARD_BYTES_PER_SECOND: u64 = 1 << 20;

/// Kinesis's write quota per shard: records per second.
pub const SHARD_RECORDS_PER_SECOND: u64 = 1000;

/// How much of a shard's write quota a record of `bytes` (data and key) takes, as time: the
/// time the shard needs to refill it, with a small margin for clock skew between here and
/// Kinesis.
pub fn quota_time(bytes: usize) -> Duration {
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
            "ProvisionedThroughputExceededException",
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

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = DEFAULT_BACKOFF;
        for attempt in 1..40 {
            let delay = backoff.delay(attempt);
            assert!(delay <= backoff.max, "attempt {attempt}: {delay:?}");
        }
        assert!(backoff.delay(1) <= Duration::from_millis(100));
        assert!(backoff.delay(30) >= Duration::from_millis(2500));
    }
}
