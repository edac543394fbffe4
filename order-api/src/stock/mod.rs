//! The "stock available" flag: a hint that lets the API answer `sold_out`
//! without touching PostgreSQL, which stays the only truth.
//!
//! - [`flag`]: the flag itself, in process and in Dragonfly/Redis, shared
//!   between replicas by pub/sub.
//! - [`reconciler`]: rebuilds it from PostgreSQL at startup and every
//!   `STOCK_RECONCILE_SECS`.
//! - [`announce`]: tells browsers on `stock.<sku>` when it flips.
//!
//! [`Stock::record`] is the one way a fact learnt from PostgreSQL reaches all
//! of them. A stale "available" costs one database round trip that answers
//! sold out. A stale "sold out" would refuse a sale, so every path that can
//! make stock available again (restock, reconcile) records it explicitly.

mod announce;
mod flag;
mod reconciler;

use std::sync::Arc;

pub use announce::Announcer;
pub use flag::{Flip, ProductFlag, StockFlag};
pub use reconciler::spawn_reconciler;

use crate::domain::Sku;

/// The flag and the browsers' announcements, together.
pub struct Stock {
    pub flag: Arc<StockFlag>,
    announcer: Announcer,
}

impl Stock {
    pub fn new(flag: Arc<StockFlag>, announcer: Announcer) -> Self {
        Self { flag, announcer }
    }

    /// Records a fact learnt from PostgreSQL: this replica at once, then
    /// Redis and the other replicas, then, if it changed, browsers. The
    /// remote steps are best effort and never fail the caller.
    pub async fn record(&self, sku: &Sku, value: ProductFlag) {
        if self.flag.share(sku, &value).await {
            metrics::counter!("stock_flag_flips_total", "available" => value.available.to_string())
                .increment(1);
            self.announcer.stock_changed(sku, value.available).await;
        }
    }
}
