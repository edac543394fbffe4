//! The outbox relay: every outbox row is published to RabbitMQ with publisher
//! confirms, and deleted only after the broker confirmed it (in the same
//! transaction that claimed it). A row is one reservation batch: the orders
//! one reservation statement inserted, all of one SKU, published as one
//! message (docs/design.md, "Orders accepted"). So the claim, the publish,
//! the confirm and the delete are paid per batch, not per order: in
//! `make bench` that took reservations at C=64 from about 12,300 to 15,000/s.
//!
//! The reserver wakes the relay right after each commit, so at rest the first
//! publish attempt follows the commit within microseconds. After a pass that
//! found rows but fewer than a full batch, the relay lingers (`OUTBOX_LINGER_MS`,
//! 50 ms) before the next: under a drop, passes then carry dozens of rows
//! instead of one or two, and their fixed cost (a transaction, its commit, the
//! confirms) is paid less often. In `make bench` that took reservations at
//! C=64 from about 10,500 to 12,000/s, with the relay still keeping up. A
//! timer catches anything left behind (a crash between commit and publish,
//! RabbitMQ down), with exponential backoff while the broker is unreachable.
//! Orders keep being accepted meanwhile: they simply wait in the table.
//!
//! Before publishing a claim the relay commits its replication fence
//! (`db::fence`): nothing that a failover can still take back is published.
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED`, so replicas never publish
//! the same row at the same time. A crash after the confirm but before the
//! delete can publish a row twice; consumers are idempotent (at-least-once).

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use futures::future::join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::Broker,
    db::{fence, outbox},
};

const BATCH: i64 = 500;
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Relay {
    pool: Pool,
    broker: Arc<Broker>,
    wakeup: Arc<Notify>,
    linger: Duration,
    /// This relay's row in `replication_fence`.
    fence: String,
}

impl Relay {
    pub fn new(pool: Pool, broker: Arc<Broker>, wakeup: Arc<Notify>, linger: Duration) -> Self {
        Self {
            pool,
            broker,
            wakeup,
            linger,
            fence: fence::holder("outbox"),
        }
    }

    /// Runs until `cancel`; the pass in progress at that moment completes.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.pass().await {
                Ok(n) if n as i64 == BATCH => continue, // more are waiting
                Ok(n) => {
                    backoff = Duration::from_millis(100);
                    // Let the next rows gather; at rest (n == 0) just wait.
                    if n > 0 && !self.linger.is_zero() {
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(self.linger) => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "outbox relay pass failed");
                    metrics::counter!("outbox_publish_errors_total").increment(1);
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// Claims up to `BATCH` rows, publishes them, waits for the confirms and
    /// deletes the confirmed ones. Returns how many were claimed.
    async fn pass(&self) -> anyhow::Result<usize> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = outbox::claim(&tx, BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Only what a synchronous standby holds is published (db/fence.rs).
        fence::pass(&self.pool, &self.fence).await?;
        let started = std::time::Instant::now();
        let channel = self.broker.channel().await?;
        // All publishes are queued at once: lapin hands each to its I/O
        // thread and resolves it once written, so awaiting them one by one
        // would cost two thread hand-offs per order. Queued together, they
        // are written in a few syscalls, in order (each takes its delivery
        // tag when first polled, and join_all polls them in order).
        let published = join_all(rows.iter().map(|row| {
            self.broker
                .publish_order(&channel, &row.message_id, row.payload.as_bytes())
        }))
        .await;
        let mut pending = Vec::with_capacity(rows.len());
        let mut failed = None;
        for (row, result) in rows.iter().zip(published) {
            match result {
                Ok(confirm) => pending.push((row.id, confirm)),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            self.broker.reset().await;
            // Confirms for what was sent still count.
            tracing::warn!(error = %e, "publish failed mid-batch");
        }
        let (ids, confirms): (Vec<i64>, Vec<_>) = pending.into_iter().unzip();
        let results = tokio::time::timeout(CONFIRM_TIMEOUT, join_all(confirms)).await;
        let confirmed: Vec<i64> = match results {
            Ok(results) => ids
                .into_iter()
                .zip(results)
                .filter_map(|(id, r)| matches!(r, Ok(c) if c.is_ack()).then_some(id))
                .collect(),
            Err(_) => {
                self.broker.reset().await;
                Vec::new()
            }
        };
        if !confirmed.is_empty() {
            outbox::delete(&tx, &confirmed).await?;
        }
        tx.commit().await?;
        metrics::counter!("outbox_published_total").increment(confirmed.len() as u64);
        metrics::histogram!("outbox_publish_seconds").record(started.elapsed().as_secs_f64());
        if confirmed.len() < rows.len() {
            anyhow::bail!(
                "{} of {} outbox rows were not confirmed",
                rows.len() - confirmed.len(),
                rows.len()
            );
        }
        Ok(rows.len())
    }
}

/// Samples the backlog (unpublished rows) into the `outbox_backlog` gauge.
pub fn spawn_backlog_gauge(pool: Pool, every: Duration, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            if let Ok(client) = pool.get().await
                && let Ok(backlog) = outbox::backlog(&client).await
            {
                metrics::gauge!("outbox_backlog").set(backlog as f64);
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}
