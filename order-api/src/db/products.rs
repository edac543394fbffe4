//! The `products` table: one row per SKU, with its total `stock` and the
//! units `reserved` so far. `CHECK (reserved <= stock)` makes overselling
//! impossible even if the code were wrong.
//!
//! The row lock (`FOR UPDATE`) on a product is what serialises everything
//! that changes its units, on every replica: the reserver and a restock take
//! it the same way. The reservation statement that bumps `reserved` lives with
//! the rest of the reservation transaction (`reserve::tx`), because it writes
//! three tables in one round trip.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, Transaction};
use tokio_postgres::Error;

/// Takes the product's row lock for a reservation batch: its name and the
/// units left. Prepared once per connection (the reserver's hot path).
pub const LOCK_FOR_RESERVATION: &str =
    "SELECT name, stock - reserved FROM products WHERE sku = $1 FOR UPDATE";

/// A product as the sold-out flag sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remaining {
    pub sku: String,
    pub name: String,
    /// `stock - reserved`.
    pub units: i32,
}

/// One product's units left, without a lock. `None` for an unknown SKU.
pub async fn remaining(client: &Client, sku: &str) -> Result<Option<Remaining>, Error> {
    let row = client
        .query_opt(
            "SELECT name, stock - reserved FROM products WHERE sku = $1",
            &[&sku],
        )
        .await?;
    Ok(row.map(|row| Remaining {
        sku: sku.to_owned(),
        name: row.get(0),
        units: row.get(1),
    }))
}

/// Every product's units left, for the reconciler.
pub async fn all_remaining(client: &Client) -> Result<Vec<Remaining>, Error> {
    let rows = client
        .query("SELECT sku, name, stock - reserved FROM products", &[])
        .await?;
    Ok(rows
        .iter()
        .map(|row| Remaining {
            sku: row.get(0),
            name: row.get(1),
            units: row.get(2),
        })
        .collect())
}

/// Takes the row lock for a restock and returns the units reserved, or
/// `None` if the product does not exist yet.
pub async fn lock_reserved(tx: &Transaction<'_>, sku: &str) -> Result<Option<i32>, Error> {
    let row = tx
        .query_opt(
            "SELECT reserved FROM products WHERE sku = $1 FOR UPDATE",
            &[&sku],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// A product's pickup window; either bound may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Creates the product, or sets its name, total stock and pickup window.
pub async fn upsert(
    tx: &Transaction<'_>,
    sku: &str,
    name: &str,
    stock: i32,
    window: &Window,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO products (sku, name, stock, redeem_from, redeem_until) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, stock = EXCLUDED.stock,
             redeem_from = EXCLUDED.redeem_from, redeem_until = EXCLUDED.redeem_until,
             updated_at = now()",
        &[&sku, &name, &stock, &window.from, &window.until],
    )
    .await
    .map(|_| ())
}
