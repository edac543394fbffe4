//! Deletes the vouchers of cancelled orders from the bucket.
//!
//! A cancellation writes a row to `voucher_deletions` in its own
//! transaction (an outbox for the object store), so the deletion survives a
//! crash between the commit and the S3 call. This worker claims due rows
//! (`FOR UPDATE SKIP LOCKED`, so replicas share the work), deletes the
//! objects, and removes the rows; a failure is retried with a growing
//! delay. S3's DeleteObject answers 204 for a key that is already gone, so
//! a repeat is harmless, and a voucher the renderer stores after the
//! cancellation is queued again when its `vouchers_stored.v1` arrives
//! ([`crate::voucher_status`]). Before deleting what it claimed, the worker
//! commits its replication fence (`crate::db::fence`): a cancellation that a
//! failover can still take back never costs its customer the voucher.

use std::{sync::Arc, time::Duration};

use aws_sdk_s3::Client;
use deadpool_postgres::Pool;
use drop_contract::{
    OrderId,
    s3::{self, Endpoint, Limits, S3Settings},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::fence;

/// Rows claimed per pass.
const BATCH: i64 = 32;
/// How often due rows are looked for without a wake-up (retries, crashes).
const POLL: Duration = Duration::from_secs(5);

pub struct VoucherDeletions {
    pool: Pool,
    s3: Client,
    bucket: String,
    wakeup: Arc<Notify>,
    /// This worker's row in `replication_fence`.
    fence: String,
}

impl VoucherDeletions {
    pub fn new(pool: Pool, settings: &S3Settings, wakeup: Arc<Notify>) -> Self {
        let limits = Limits {
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            sdk_retries: false,
        };
        Self {
            pool,
            s3: s3::client(settings, Endpoint::Internal, limits, "order-api-deletions"),
            bucket: settings.bucket.clone(),
            wakeup,
            fence: fence::holder("voucher-deletions"),
        }
    }

    /// Works until `cancel`: after every wake-up, and every [`POLL`].
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            loop {
                match self.pass().await {
                    // A full batch: there may be more due now.
                    Ok(n) if n as i64 == BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "voucher deletion pass failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wakeup.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One batch of due rows; returns how many were claimed.
    async fn pass(&self) -> anyhow::Result<usize> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT order_id, attempts FROM voucher_deletions
                 WHERE next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1
                 FOR UPDATE SKIP LOCKED",
                &[&BATCH],
            )
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        fence::pass(&self.pool, &self.fence).await?;
        for row in &rows {
            let raw: String = row.get(0);
            let attempts: i32 = row.get(1);
            let Ok(order_id) = OrderId::parse(&raw) else {
                tx.execute("DELETE FROM voucher_deletions WHERE order_id = $1", &[&raw])
                    .await?;
                continue;
            };
            match self
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(order_id.voucher_key())
                .send()
                .await
            {
                Ok(_) => {
                    tx.execute(
                        "DELETE FROM voucher_deletions WHERE order_id = $1",
                        &[&order_id.as_str()],
                    )
                    .await?;
                    metrics::counter!("voucher_deletions_total", "outcome" => "deleted")
                        .increment(1);
                    tracing::info!(order = %order_id, "cancelled order's voucher deleted");
                }
                Err(e) => {
                    // 1 s, 2 s, 4 s … capped at 5 minutes.
                    let delay = 2f64.powi(attempts.min(9)).min(300.0);
                    tx.execute(
                        "UPDATE voucher_deletions
                         SET attempts = attempts + 1,
                             next_attempt_at = now() + make_interval(secs => $2)
                         WHERE order_id = $1",
                        &[&order_id.as_str(), &delay],
                    )
                    .await?;
                    metrics::counter!("voucher_deletions_total", "outcome" => "retry").increment(1);
                    tracing::warn!(order = %order_id, attempts, error = %aws_sdk_s3::error::DisplayErrorContext(&e),
                        "deleting a cancelled order's voucher failed; will retry");
                }
            }
        }
        tx.commit().await?;
        Ok(rows.len())
    }
}
