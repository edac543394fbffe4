//! Idempotency-Keys: a client that retries with the same key and body gets
//! the original answer, and nothing is reserved twice.
//!
//! This module owns the whole rule: the key's shape, the fingerprint that
//! tells "the same body" from another one, which outcomes are stored, and the
//! `idempotency_keys` table. Keys are read and written inside the
//! reservation transaction, under the product's row lock (`reserve::tx`), so
//! two replicas can never both decide the same key; `POST /v1/orders` also
//! reads them before the sold-out flag, so a retry after the sell-out still
//! gets its reservation back.

use std::collections::HashMap;

use deadpool_postgres::{Client, Transaction};
use drop_contract::OrderId;
use sha2::{Digest, Sha256};
use tokio_postgres::{Error, Row, types::Type};

use crate::{
    domain::InvalidField,
    reserve::{NewOrder, Outcome},
};

/// The `Idempotency-Key` header: 1-255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const FIELD: &'static str = "Idempotency-Key";

    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidField::new(
                Self::FIELD,
                "must be 1-255 visible ASCII characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A digest of the normalised request, so that a retry with the phone typed
/// differently is still "the same body".
pub fn fingerprint(order: &NewOrder) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in [
        order.sku.as_str(),
        order.first_name.as_str(),
        order.last_name.as_str(),
        order.phone.as_str(),
    ] {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_vec()
}

/// A stored key: the fingerprint it was first used with, and its outcome.
pub type Stored = (Vec<u8>, Outcome);

/// The value stored for a key, for the outcomes worth replaying: a
/// reservation and the two final refusals. Outages and bugs are not stored,
/// so a retry decides afresh.
fn stored_form(outcome: &Outcome) -> Option<(&'static str, Option<&str>)> {
    match outcome {
        Outcome::Reserved { order_id, .. } => Some(("reserved", Some(order_id.as_str()))),
        Outcome::SoldOut => Some(("sold_out", None)),
        Outcome::AlreadyReserved => Some(("already_reserved", None)),
        _ => None,
    }
}

/// Rebuilds an outcome from the table, as a replay.
fn from_stored(outcome: &str, order_id: Option<&str>) -> Outcome {
    match (outcome, order_id.map(OrderId::parse)) {
        ("reserved", Some(Ok(order_id))) => Outcome::Reserved {
            order_id,
            replayed: true,
        },
        ("sold_out", _) => Outcome::SoldOut,
        ("already_reserved", _) => Outcome::AlreadyReserved,
        _ => Outcome::Failed,
    }
}

fn stored_from_row(row: &Row, offset: usize) -> Stored {
    (
        row.get(offset),
        from_stored(row.get(offset + 1), row.get(offset + 2)),
    )
}

/// The answer a request with `key` and `fingerprint` gets if the key was
/// used before: the original outcome, or a mismatch for another body.
pub fn replay(stored: &Stored, fingerprint: &[u8]) -> Outcome {
    if stored.0 == fingerprint {
        stored.1.clone()
    } else {
        Outcome::IdempotencyMismatch
    }
}

/// One key, outside the reservation transaction (`POST /v1/orders`).
pub async fn lookup(client: &Client, key: &IdempotencyKey) -> Result<Option<Stored>, Error> {
    let row = client
        .query_opt(
            "SELECT request_hash, outcome, order_id FROM idempotency_keys WHERE key = $1",
            &[&key.as_str()],
        )
        .await?;
    Ok(row.map(|row| stored_from_row(&row, 0)))
}

/// The batch's keys, inside the reservation transaction. Prepared once per
/// connection; the caller pipelines it behind the row lock.
pub const LOOKUP_MANY: &str =
    "SELECT key, request_hash, outcome, order_id FROM idempotency_keys WHERE key = ANY($1)";
pub const LOOKUP_MANY_TYPES: &[Type] = &[Type::TEXT_ARRAY];

pub fn parse_lookup_many(rows: &[Row]) -> HashMap<String, Stored> {
    rows.iter()
        .map(|row| (row.get(0), stored_from_row(row, 1)))
        .collect()
}

/// Stores the first outcome of each new key, in the reservation transaction.
pub async fn store_many(
    tx: &Transaction<'_>,
    entries: &[(&IdempotencyKey, &[u8], &Outcome)],
) -> Result<(), Error> {
    let mut keys = Vec::with_capacity(entries.len());
    let mut hashes = Vec::with_capacity(entries.len());
    let mut kinds = Vec::with_capacity(entries.len());
    let mut order_ids = Vec::with_capacity(entries.len());
    for (key, hash, outcome) in entries {
        if let Some((kind, order_id)) = stored_form(outcome) {
            keys.push(key.as_str());
            hashes.push(*hash);
            kinds.push(kind);
            order_ids.push(order_id);
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let store = tx
        .prepare_typed_cached(
            "INSERT INTO idempotency_keys (key, request_hash, outcome, order_id)
             SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[])
             ON CONFLICT (key) DO NOTHING",
            &[
                Type::TEXT_ARRAY,
                Type::BYTEA_ARRAY,
                Type::TEXT_ARRAY,
                Type::TEXT_ARRAY,
            ],
        )
        .await?;
    tx.execute(&store, &[&keys, &hashes, &kinds, &order_ids])
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse("abc-123_XYZ").is_ok());
        for bad in ["", "with space", "tab\t", "é", &"k".repeat(256)] {
            let err = IdempotencyKey::parse(bad).unwrap_err();
            assert_eq!(err.field, "Idempotency-Key", "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    }

    #[test]
    fn stored_outcomes_round_trip_as_replays() {
        let order_id = OrderId::generate();
        let reserved = Outcome::Reserved {
            order_id: order_id.clone(),
            replayed: false,
        };
        for outcome in [reserved, Outcome::SoldOut, Outcome::AlreadyReserved] {
            let (kind, id) = stored_form(&outcome).expect("stored");
            let back = from_stored(kind, id);
            match (&outcome, &back) {
                (
                    Outcome::Reserved { order_id: a, .. },
                    Outcome::Reserved {
                        order_id: b,
                        replayed: true,
                    },
                ) => assert_eq!(a, b),
                _ => assert_eq!(outcome, back),
            }
        }
        for transient in [Outcome::Unavailable, Outcome::Failed, Outcome::UnknownSku] {
            assert!(stored_form(&transient).is_none(), "{transient:?} stored");
        }
        assert_eq!(from_stored("reserved", Some("not-an-id")), Outcome::Failed);
    }

    #[test]
    fn another_body_with_the_same_key_is_a_mismatch() {
        let stored = (b"same".to_vec(), Outcome::SoldOut);
        assert_eq!(replay(&stored, b"same"), Outcome::SoldOut);
        assert_eq!(replay(&stored, b"other"), Outcome::IdempotencyMismatch);
    }
}
