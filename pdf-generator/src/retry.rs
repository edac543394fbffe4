//! Retrying one operation: exponential backoff with bounded jitter, a cap on
//! attempts, and a stop when the process shuts down.
//!
//! The retry budget is a product decision, not a tuning knob: with the default
//! `MAX_ATTEMPTS=8` the seven waits add up to at least ~73 s (nominal 91 s), so
//! an object store that is away for 20-30 s (a restart, a failover) costs a few
//! slow vouchers rather than dead letters. The jitter is ±20 % instead of "full
//! jitter" because full jitter can shrink the whole budget towards zero, and
//! the budget is what we promise; ±20 % is still enough to spread a burst of
//! replicas that all failed at the same instant.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Fraction of each delay that is randomised in both directions.
    pub jitter: f64,
}

impl Backoff {
    /// For S3 and publish retries of one message.
    pub const RETRY: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(30),
        jitter: 0.2,
    };

    /// For reconnecting to RabbitMQ: quick first tries (a broker restart takes
    /// a few seconds), capped low so we are back soon after it is.
    pub const RECONNECT: Backoff = Backoff {
        base: Duration::from_millis(250),
        max: Duration::from_secs(5),
        jitter: 0.2,
    };

    /// The wait before retry number `retry` (0 for the first retry), without jitter.
    pub fn nominal(&self, retry: u32) -> Duration {
        // 2^20 s is far beyond any cap; stop doubling there to avoid overflow.
        let factor = 2u32.saturating_pow(retry.min(20));
        self.base.saturating_mul(factor).min(self.max)
    }

    pub fn delay(&self, retry: u32) -> Duration {
        let nominal = self.nominal(retry);
        let spread = rand::rng().random_range(-self.jitter..=self.jitter);
        nominal.mul_f64(1.0 + spread)
    }

    /// The smallest total wait before `attempts` attempts are used up.
    #[cfg(test)]
    pub fn min_budget(&self, attempts: u32) -> Duration {
        (0..attempts.saturating_sub(1))
            .map(|r| self.nominal(r).mul_f64(1.0 - self.jitter))
            .sum()
    }
}

/// Why a retried operation did not succeed.
#[derive(Debug)]
pub enum RetryError<E> {
    /// The error says retrying cannot help (e.g. access denied).
    Permanent(E),
    /// Every attempt failed with a transient error; this is the last one.
    Exhausted(E),
    /// Shutdown began while waiting to retry. The caller hands the message
    /// back to the broker instead of holding shutdown for a minute.
    Cancelled,
}

/// Runs `op` up to `max_attempts` times, waiting `backoff` between attempts
/// that failed with an error `is_transient` accepts. `operation` labels the
/// `retries_total` metric and the log line.
pub async fn retry<T, E, F, Fut>(
    operation: &'static str,
    backoff: Backoff,
    max_attempts: u32,
    cancel: &CancellationToken,
    is_transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 1;
    loop {
        let err = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !is_transient(&err) {
            return Err(RetryError::Permanent(err));
        }
        if attempt >= max_attempts {
            return Err(RetryError::Exhausted(err));
        }
        let wait = backoff.delay(attempt - 1);
        tracing::warn!(operation, attempt, max_attempts, wait_ms = wait.as_millis() as u64, error = %err, "transient failure, retrying");
        metrics::counter!(crate::metrics::RETRIES, "operation" => operation).increment(1);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return Err(RetryError::Cancelled),
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::RETRY;
        let waits: Vec<u64> = (0..9).map(|r| b.nominal(r).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(b.nominal(u32::MAX), b.max);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::RETRY;
        for retry in 0..8 {
            let nominal = b.nominal(retry).as_secs_f64();
            for _ in 0..200 {
                let d = b.delay(retry).as_secs_f64();
                assert!(d >= nominal * 0.8 - 1e-9 && d <= nominal * 1.2 + 1e-9);
            }
        }
    }

    #[test]
    fn default_budget_outlasts_an_object_store_restart() {
        // design.md: MAX_ATTEMPTS defaults to 8; an S3 outage of 20 s (plus the
        // restart itself) must not dead-letter anything.
        let budget = Backoff::RETRY.min_budget(8);
        assert!(budget > Duration::from_secs(60), "{budget:?}");
        // ...and a poisoned dependency still gives up within a few minutes.
        let ceiling: Duration = (0..7).map(|r| Backoff::RETRY.nominal(r).mul_f64(1.2)).sum();
        assert!(ceiling < Duration::from_secs(120), "{ceiling:?}");
    }

    fn fast() -> Backoff {
        Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
            jitter: 0.2,
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let mut calls = 0;
        let out = retry(
            "test",
            fast(),
            5,
            &CancellationToken::new(),
            |_: &String| true,
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(format!("fail {n}"))
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert!(matches!(out, Ok(3)));
    }

    #[tokio::test]
    async fn stops_at_the_attempt_cap() {
        let mut calls = 0;
        let out: Result<(), _> = retry(
            "test",
            fast(),
            4,
            &CancellationToken::new(),
            |_: &String| true,
            || {
                calls += 1;
                async { Err("down".to_owned()) }
            },
        )
        .await;
        assert!(matches!(out, Err(RetryError::Exhausted(_))));
        assert_eq!(calls, 4);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let out: Result<(), _> = retry(
            "test",
            fast(),
            4,
            &CancellationToken::new(),
            |_: &String| false,
            || {
                calls += 1;
                async { Err("denied".to_owned()) }
            },
        )
        .await;
        assert!(matches!(out, Err(RetryError::Permanent(_))));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn shutdown_interrupts_the_wait() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let slow = Backoff {
            base: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        };
        let out: Result<(), _> = retry(
            "test",
            slow,
            4,
            &cancel,
            |_: &String| true,
            || async { Err("down".to_owned()) },
        )
        .await;
        assert!(matches!(out, Err(RetryError::Cancelled)));
    }

    #[test]
    fn one_attempt_means_no_wait() {
        assert_eq!(Backoff::RETRY.min_budget(1), Duration::ZERO);
    }
}
