//! Rebuilds every copy of the flag from PostgreSQL, at startup and then
//! every `STOCK_RECONCILE_SECS`: Redis may have lost its data (restart,
//! eviction) or missed a write while it was down, and a replica may have
//! missed an announcement.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use super::{ProductFlag, Stock};
use crate::{db::products, domain::Sku};

/// One pass.
///
/// A snapshot can be overtaken: a restock may commit (and announce
/// "available") between the SELECT and the writes below. Writing the older
/// "sold out" over it would refuse sales until the next pass, so a pass that
/// saw any change during its snapshot leaves "sold out" corrections to the
/// next pass. Corrections towards "available" are always safe: a stale
/// "available" costs one database round trip.
pub async fn reconcile(stock: &Stock, pool: &Pool) -> anyhow::Result<()> {
    let flag = &stock.flag;
    let before = flag.changes();
    let client = pool.get().await?;
    for product in products::all_remaining(&client).await? {
        metrics::gauge!("stock_remaining", "sku" => product.sku.clone())
            .set(f64::from(product.units));
        let Ok(sku) = Sku::parse(&product.sku) else {
            continue;
        };
        let truth = ProductFlag {
            name: product.name,
            available: product.units > 0,
        };
        let in_redis = flag.read_redis(&sku).await.ok().flatten();
        if in_redis.as_ref() != Some(&truth) || flag.local(&sku).as_ref() != Some(&truth) {
            if !truth.available && flag.changes() != before {
                tracing::debug!(sku = %sku, "flag changed during reconcile; sold-out correction deferred");
                continue;
            }
            stock.record(&sku, truth).await;
        }
    }
    Ok(())
}

/// Reconciles now, then every `every`, until `cancel`.
pub fn spawn_reconciler(stock: Arc<Stock>, pool: Pool, every: Duration, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = reconcile(&stock, &pool).await {
                tracing::warn!(error = %e, "stock flag reconcile failed");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}
