//! One scan at a counter, decided once.
//!
//! The transaction, in order:
//! 1. claims the scanner's nonce (`redemption_nonces`, primary key
//!    `(scanner_id, nonce)`): a concurrent request with the same nonce waits
//!    on that key, then finds the stored answer and replays it;
//! 2. locks the order's row (`FOR UPDATE`), which a cancellation also
//!    locks, so the two never both succeed;
//! 3. decides: cancelled, already redeemed, outside the window, or redeemed
//!    now, inserting into `redemptions`, whose primary key is the order id,
//!    so a second redemption cannot be stored even if this code were wrong;
//! 4. stores the answer under the nonce, and an audit row.
//!
//! An invalid code rolls everything back: nothing is stored for it.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use drop_contract::voucher_code::ScannedCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::db::{
    audit::{self, Actor},
    scanners::Scanner,
};

/// What the scanner is told: a status and a body, replayed as they are for
/// the same nonce.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// Whether this answer is a replay of the nonce's first.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// Not a code of ours: no such order, or a SKU that is not the order's.
    #[error("invalid code")]
    InvalidCode,
    /// The nonce was used by this scanner with another code.
    #[error("nonce reused")]
    NonceReused,
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Decides one scan.
pub async fn redeem(
    pool: &Pool,
    scanner: &Scanner,
    code: &ScannedCode,
    code_text: &str,
    nonce: &str,
) -> Result<Answer, RedeemError> {
    let code_sha256 = Sha256::digest(code_text.trim().as_bytes()).to_vec();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;

    let claimed = tx
        .query_opt(
            "INSERT INTO redemption_nonces (scanner_id, nonce, code_sha256, status, body)
             VALUES ($1, $2, $3, 0, '{}') ON CONFLICT (scanner_id, nonce) DO NOTHING
             RETURNING 1",
            &[&scanner.scanner_id, &nonce, &code_sha256],
        )
        .await?;
    if claimed.is_none() {
        // Committed by an earlier (or concurrent, now finished) request.
        let row = tx
            .query_one(
                "SELECT code_sha256, status, body FROM redemption_nonces
                 WHERE scanner_id = $1 AND nonce = $2",
                &[&scanner.scanner_id, &nonce],
            )
            .await?;
        tx.rollback().await?;
        let stored: Vec<u8> = row.get(0);
        if stored != code_sha256 {
            return Err(RedeemError::NonceReused);
        }
        let status: i16 = row.get(1);
        return Ok(Answer {
            status: u16::try_from(status).unwrap_or(500),
            body: row.get(2),
            replayed: true,
        });
    }

    let order_id = code.order_id();
    let Some(row) = tx
        .query_opt(
            "SELECT o.sku, o.first_name, o.last_name, o.status, o.cancelled_at,
                    p.name, p.redeem_from, p.redeem_until
             FROM orders o JOIN products p ON p.sku = o.sku
             WHERE o.order_id = $1 FOR UPDATE OF o",
            &[&order_id.as_str()],
        )
        .await?
    else {
        tx.rollback().await?;
        return Err(RedeemError::InvalidCode);
    };
    let sku: String = row.get(0);
    if let ScannedCode::Signed(claims) = code
        && claims.sku != sku
    {
        tx.rollback().await?;
        return Err(RedeemError::InvalidCode);
    }
    let status: String = row.get(3);
    let cancelled_at: Option<DateTime<Utc>> = row.get(4);
    let product_name: String = row.get(5);
    let who = json!({
        "order_id": order_id.as_str(),
        "sku": sku,
        "product_name": product_name,
        "first_name": row.get::<_, String>(1),
        "last_name": row.get::<_, String>(2),
    });
    let refusal = |status: u16, error: &str, message: &str, extra: Value| {
        let mut body = who.clone();
        body["error"] = json!(error);
        body["message"] = json!(message);
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        (status, body)
    };
    // Signed codes carry their window; a bare order id takes the product's.
    let (from, until) = match code {
        ScannedCode::Signed(claims) => (
            claims.nbf.and_then(|s| DateTime::from_timestamp(s, 0)),
            claims.exp.and_then(|s| DateTime::from_timestamp(s, 0)),
        ),
        ScannedCode::Bare(_) => (row.get(6), row.get(7)),
    };
    let now = Utc::now();

    let (status, body, outcome) = if status == "cancelled" {
        let (s, b) = refusal(
            410,
            "cancelled",
            "this order was cancelled",
            json!({"cancelled_at": cancelled_at}),
        );
        (s, b, "cancelled")
    } else if let Some(first) = tx
        .query_opt(
            "SELECT r.redeemed_at, s.name FROM redemptions r
             JOIN scanners s ON s.scanner_id = r.scanner_id WHERE r.order_id = $1",
            &[&order_id.as_str()],
        )
        .await?
    {
        let (s, b) = refusal(
            409,
            "already_redeemed",
            "this voucher was already redeemed",
            json!({"redeemed_at": first.get::<_, DateTime<Utc>>(0), "scanner": first.get::<_, String>(1)}),
        );
        (s, b, "already_redeemed")
    } else if from.is_some_and(|from| now < from) {
        let (s, b) = refusal(
            409,
            "not_yet_valid",
            "the pickup window has not opened yet",
            json!({"redeem_from": from}),
        );
        (s, b, "not_yet_valid")
    } else if until.is_some_and(|until| now >= until) {
        let (s, b) = refusal(
            410,
            "expired",
            "the pickup window has closed",
            json!({"redeem_until": until}),
        );
        (s, b, "expired")
    } else {
        let redeemed_at: DateTime<Utc> = tx
            .query_one(
                "INSERT INTO redemptions (order_id, scanner_id) VALUES ($1, $2)
                 RETURNING redeemed_at",
                &[&order_id.as_str(), &scanner.scanner_id],
            )
            .await?
            .get(0);
        tx.execute(
            "UPDATE orders SET status = 'redeemed' WHERE order_id = $1",
            &[&order_id.as_str()],
        )
        .await?;
        let mut body = who.clone();
        body["redeemed_at"] = json!(redeemed_at);
        body["scanner"] = json!(scanner.name);
        (200, body, "redeemed")
    };

    tx.execute(
        "UPDATE redemption_nonces SET status = $3, body = $4
         WHERE scanner_id = $1 AND nonce = $2",
        &[&scanner.scanner_id, &nonce, &(status as i16), &body],
    )
    .await?;
    audit::record(
        &tx,
        Actor::Scanner(&scanner.scanner_id),
        "redemption",
        order_id.as_str(),
        json!({"outcome": outcome, "nonce": nonce}),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("redemptions_total", "outcome" => outcome).increment(1);
    tracing::info!(order = %order_id, scanner = %scanner.scanner_id, outcome, "scan decided");
    Ok(Answer {
        status,
        body,
        replayed: false,
    })
}
