//! Capped exponential backoff with jitter: the delay between attempts, for the producer's
//! retries and the reader's reconnects alike. A leaf: it knows nothing of what is retried.

use std::time::Duration;

use rand::{Rng, RngExt};

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    /// The first delay's upper bound.
    pub(crate) initial: Duration,
    /// The largest delay.
    pub(crate) max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first retry): a uniformly random
    /// duration between half and all of `min(initial * 2^(attempt-1), max)`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::rng())
    }

    /// [`Backoff::delay`] with the jitter drawn from `rng`, so that a seeded caller (the
    /// producer's property tests) gets the same delays on every run.
    pub(crate) fn delay_with(&self, attempt: u32, rng: &mut dyn Rng) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self.initial.saturating_mul(1 << exponent).min(self.max);
        let half = ceiling / 2;
        half + rng.random_range(Duration::ZERO..=half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        for attempt in 1..40 {
            let delay = backoff.delay(attempt);
            assert!(delay <= backoff.max, "attempt {attempt}: {delay:?}");
        }
        assert!(backoff.delay(1) <= Duration::from_millis(100));
        assert!(backoff.delay(30) >= Duration::from_millis(2500));
    }
}
