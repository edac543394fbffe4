//! The `orders` table: one row per reservation. `UNIQUE (sku, phone)` makes a
//! second reservation for the same phone impossible even if the code were
//! wrong. Rows are inserted by the reservation statement (`reserve::tx`);
//! here they are read, and their voucher status recorded.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, Pool};
use drop_contract::OrderId;
use tokio_postgres::Error;

/// An order, as its holder may see it.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub sku: String,
    pub first_name: String,
    pub last_name: String,
    /// `reserved`, then `voucher_ready` once the voucher is stored; then
    /// `redeemed` or `cancelled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The product's pickup window.
    pub redeem_from: Option<DateTime<Utc>>,
    pub redeem_until: Option<DateTime<Utc>>,
}

pub async fn get(client: &Client, order_id: &OrderId) -> Result<Option<OrderRow>, Error> {
    let row = client
        .query_opt(
            "SELECT o.sku, o.first_name, o.last_name, o.status, o.created_at,
                    r.redeemed_at, o.cancelled_at, p.redeem_from, p.redeem_until
             FROM orders o
             JOIN products p ON p.sku = o.sku
             LEFT JOIN redemptions r ON r.order_id = o.order_id
             WHERE o.order_id = $1",
            &[&order_id.as_str()],
        )
        .await?;
    Ok(row.map(|row| OrderRow {
        sku: row.get(0),
        first_name: row.get(1),
        last_name: row.get(2),
        status: row.get(3),
        created_at: row.get(4),
        redeemed_at: row.get(5),
        cancelled_at: row.get(6),
        redeem_from: row.get(7),
        redeem_until: row.get(8),
    }))
}

/// Records that these orders' vouchers are stored. Only `reserved` orders
/// change, so a repeated message changes nothing. Returns how many changed.
pub async fn mark_voucher_ready(pool: &Pool, order_ids: &[OrderId]) -> anyhow::Result<u64> {
    let ids: Vec<&str> = order_ids.iter().map(OrderId::as_str).collect();
    let client = pool.get().await?;
    let updated = client
        .execute(
            "UPDATE orders SET status = 'voucher_ready'
             WHERE order_id = ANY($1) AND status = 'reserved'",
            &[&ids],
        )
        .await?;
    // A voucher stored after its order was cancelled (the orders message was
    // already queued) is deleted too: queue it again.
    client
        .execute(
            "INSERT INTO voucher_deletions (order_id)
             SELECT order_id FROM orders WHERE order_id = ANY($1) AND status = 'cancelled'
             ON CONFLICT (order_id) DO UPDATE SET next_attempt_at = now()",
            &[&ids],
        )
        .await?;
    Ok(updated)
}
