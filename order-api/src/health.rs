//! Readiness that does not compete with requests.
//!
//! `/readyz` must not borrow from the request pool: at peak, or during a
//! failover, a probe waiting for a pooled connection would fail on every
//! replica at once, and the load balancer would take them all out, even
//! though sold-out answers need no database. So a background task checks
//! PostgreSQL on a connection of its own, every `PROBE_EVERY` plus a random
//! part (replicas do not probe in step), and `/readyz` reads its last
//! verdict. One slow or failed check changes nothing; `FAILURES_TO_UNREADY`
//! in a row do. One success makes the replica ready again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use rand::Rng;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const FAILURES_TO_UNREADY: u32 = 3;

#[derive(Default)]
pub struct DbHealth {
    /// False until the first check succeeds.
    healthy: AtomicBool,
    failures: AtomicU32,
}

impl DbHealth {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    fn record(&self, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::SeqCst);
            self.healthy.store(true, Ordering::SeqCst);
        } else if self.failures.fetch_add(1, Ordering::SeqCst) + 1 >= FAILURES_TO_UNREADY {
            self.healthy.store(false, Ordering::SeqCst);
        }
    }

    /// Probes until `cancel`.
    pub fn spawn(pg: tokio_postgres::Config, cancel: CancellationToken) -> Arc<Self> {
        let health = Arc::new(Self::default());
        let me = Arc::clone(&health);
        tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            loop {
                let ok = tokio::time::timeout(PROBE_TIMEOUT, probe(&pg, &mut client))
                    .await
                    .unwrap_or(false);
                if !ok {
                    client = None;
                }
                me.record(ok);
                metrics::gauge!("db_ready").set(if me.is_healthy() { 1.0 } else { 0.0 });
                let jitter = rand::rng().random_range(0..500);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(PROBE_EVERY + Duration::from_millis(jitter)) => {}
                }
            }
        });
        health
    }
}

async fn probe(pg: &tokio_postgres::Config, client: &mut Option<tokio_postgres::Client>) -> bool {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        match pg.connect(NoTls).await {
            Ok((c, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                *client = Some(c);
            }
            Err(_) => return false,
        }
    }
    match client {
        Some(c) => c.simple_query("SELECT 1").await.is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_does_not_flap_readiness() {
        let h = DbHealth::default();
        assert!(!h.is_healthy(), "not ready before the first check");
        h.record(true);
        h.record(false);
        h.record(false);
        assert!(h.is_healthy(), "two failures in a row are tolerated");
        h.record(false);
        assert!(!h.is_healthy(), "the third in a row turns it unready");
        h.record(true);
        assert!(h.is_healthy(), "one success is enough to come back");
    }
}
