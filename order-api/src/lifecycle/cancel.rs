//! A holder gives their unit back.
//!
//! Locks in the reserver's order: the product's row first (the lock every
//! change of its units takes, `db::products`), then the order's. A
//! reservation batch holding the product's row may be inserting an order for
//! this very phone, which waits on this order's index entry; taking the
//! order's row first would deadlock with it. Under the product's lock the
//! unit goes back (`reserved - 1`, never below zero, so stock never exceeds
//! its total), the order becomes `cancelled`, its voucher's deletion is
//! queued and an audit row written, all in one transaction. The reserver
//! reads `stock - reserved` under the same lock, so the unit is sold again
//! exactly once.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use drop_contract::OrderId;
use serde_json::json;

use crate::db::audit::{self, Actor};

#[derive(Debug)]
pub enum Cancelled {
    /// Cancelled now; `units` is what the product has left afterwards.
    Now {
        sku: String,
        product_name: String,
        units: i32,
        cancelled_at: DateTime<Utc>,
    },
    /// It already was: the same answer again.
    Before { cancelled_at: DateTime<Utc> },
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no such order")]
    NotFound,
    #[error("already redeemed")]
    AlreadyRedeemed,
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
}

pub async fn cancel(pool: &Pool, order_id: &OrderId) -> Result<Cancelled, CancelError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // An order's SKU never changes: read it without a lock, to know which
    // product row to lock first.
    let sku: String = tx
        .query_opt(
            "SELECT sku FROM orders WHERE order_id = $1",
            &[&order_id.as_str()],
        )
        .await?
        .ok_or(CancelError::NotFound)?
        .get(0);
    let product_name: String = tx
        .query_one(
            "SELECT name FROM products WHERE sku = $1 FOR UPDATE",
            &[&sku],
        )
        .await?
        .get(0);
    let order = tx
        .query_one(
            "SELECT status, cancelled_at FROM orders WHERE order_id = $1 FOR UPDATE",
            &[&order_id.as_str()],
        )
        .await?;
    let status: String = order.get(0);
    match status.as_str() {
        "redeemed" => return Err(CancelError::AlreadyRedeemed),
        "cancelled" => {
            tx.rollback().await?;
            return Ok(Cancelled::Before {
                cancelled_at: order.get(1),
            });
        }
        _ => {}
    }
    let cancelled_at: DateTime<Utc> = tx
        .query_one(
            "UPDATE orders SET status = 'cancelled', cancelled_at = now()
             WHERE order_id = $1 RETURNING cancelled_at",
            &[&order_id.as_str()],
        )
        .await?
        .get(0);
    let units: i32 = tx
        .query_one(
            "UPDATE products SET reserved = greatest(reserved - 1, 0), updated_at = now()
             WHERE sku = $1 RETURNING stock - reserved",
            &[&sku],
        )
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO voucher_deletions (order_id) VALUES ($1)
         ON CONFLICT (order_id) DO UPDATE SET next_attempt_at = now()",
        &[&order_id.as_str()],
    )
    .await?;
    audit::record(
        &tx,
        Actor::Customer,
        "order.cancel",
        order_id.as_str(),
        json!({"sku": sku}),
    )
    .await?;
    tx.commit().await?;
    Ok(Cancelled::Now {
        sku,
        product_name,
        units,
        cancelled_at,
    })
}
