//! The `scanners` table: the devices at the pickup counters. A token is
//! stored only as its SHA-256, and looked up by it.

use deadpool_postgres::{Client, Transaction};
use tokio_postgres::Error;

/// A scanner whose token is valid.
#[derive(Debug, Clone)]
pub struct Scanner {
    pub scanner_id: String,
    pub name: String,
}

/// The scanner holding this token, unless it was revoked.
pub async fn by_token(client: &Client, token_sha256: &[u8]) -> Result<Option<Scanner>, Error> {
    let row = client
        .query_opt(
            "SELECT scanner_id, name FROM scanners WHERE token_sha256 = $1 AND revoked_at IS NULL",
            &[&token_sha256],
        )
        .await?;
    Ok(row.map(|row| Scanner {
        scanner_id: row.get(0),
        name: row.get(1),
    }))
}

pub async fn insert(
    tx: &Transaction<'_>,
    scanner_id: &str,
    name: &str,
    token_sha256: &[u8],
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO scanners (scanner_id, name, token_sha256) VALUES ($1, $2, $3)",
        &[&scanner_id, &name, &token_sha256],
    )
    .await
    .map(|_| ())
}

/// Revokes a scanner. `None`: no such scanner; `Some(true)`: revoked now;
/// `Some(false)`: it already was.
pub async fn revoke(tx: &Transaction<'_>, scanner_id: &str) -> Result<Option<bool>, Error> {
    let row = tx
        .query_opt(
            "WITH target AS (
                 SELECT scanner_id, revoked_at FROM scanners WHERE scanner_id = $1 FOR UPDATE
             ), revoked AS (
                 UPDATE scanners s SET revoked_at = now()
                 FROM target t WHERE s.scanner_id = t.scanner_id AND t.revoked_at IS NULL
                 RETURNING s.scanner_id
             )
             SELECT EXISTS (SELECT 1 FROM revoked) FROM target",
            &[&scanner_id],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}
