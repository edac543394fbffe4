//! The `outbox` table: one row per reservation batch, written in the
//! reservation's own transaction (`reserve::tx`) and deleted by the relay
//! once RabbitMQ confirmed its message.

use deadpool_postgres::{Client, Transaction};
use tokio_postgres::{Error, types::Type};

/// A row claimed for publishing.
pub struct Claimed {
    pub id: i64,
    /// The batch's lowest order id: the message id, so a consumer can tell
    /// a redelivery. Not for logs.
    pub message_id: String,
    /// An [`drop_contract::messages::OrdersMessage`], as JSON text.
    pub payload: String,
}

/// Claims up to `limit` rows, oldest first. `SKIP LOCKED`: replicas never
/// publish the same row at the same time, and never wait for each other.
pub async fn claim(tx: &Transaction<'_>, limit: i64) -> Result<Vec<Claimed>, Error> {
    let rows = tx
        .query_typed(
            "SELECT id, order_id, payload::text FROM outbox
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[(&limit, Type::INT8)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Claimed {
            id: row.get(0),
            message_id: row.get(1),
            payload: row.get(2),
        })
        .collect())
}

pub async fn delete(tx: &Transaction<'_>, ids: &[i64]) -> Result<(), Error> {
    tx.execute_typed(
        "DELETE FROM outbox WHERE id = ANY($1)",
        &[(&ids, Type::INT8_ARRAY)],
    )
    .await
    .map(|_| ())
}

/// Rows not yet published.
pub async fn backlog(client: &Client) -> Result<i64, Error> {
    let row = client.query_one("SELECT count(*) FROM outbox", &[]).await?;
    Ok(row.get(0))
}
