//! Where a unit is reserved.
//!
//! One actor per SKU per replica collects the reservation requests that arrive
//! while its previous transaction is running, and decides the whole batch in
//! one PostgreSQL transaction:
//!
//! 1. `SELECT … FROM products WHERE sku = $1 FOR UPDATE` takes the product's
//!    row lock (never a table lock). Every writer of orders for this SKU, on
//!    every replica, goes through this lock, so nothing that follows can be
//!    raced. The batch's Idempotency-Keys are read in the same round trip.
//! 2. It decides each request in arrival order: replay, a repeat within the
//!    batch, reserved (while units remain), or waiting for a unit.
//! 3. One statement inserts the orders (`ON CONFLICT (sku, phone) DO
//!    NOTHING`), one outbox row carrying all of them (published as one
//!    message, so the relay's cost is paid per batch, not per order), and
//!    bumps `reserved` by what it inserted. A phone that already held a
//!    reservation conflicts: that request is `already_reserved` and its unit
//!    goes to the next waiting request in another round. What still waits is
//!    `sold_out`.
//! 4. The keyed outcomes are stored; then COMMIT.
//!
//! Every statement is prepared once per connection and then costs one round
//! trip, so the lock is held for three or four round trips and the commit.
//!
//! Only after COMMIT returns does any caller get its answer, so a 201 always
//! means the order is durable. At low load a batch holds one request and adds
//! no delay; under a drop, batches grow to `RESERVE_MAX_BATCH` and one fsync
//! covers them all, which is what lifts throughput past the single-row limit.
//!
//! The files, one rule each:
//! - [`actor`]: one reserver task per SKU that batches requests, and what
//!   happens after the commit (the sold-out flag, the relay's wake-up).
//! - [`plan`]: the pure decision for one batch: replays, repeats, who gets
//!   the units. No I/O, so its unit tests cover every case.
//! - [`tx`]: the transaction that runs the plan against PostgreSQL.
//!
//! Idempotency-Keys have their own module, [`crate::idempotency`].

mod actor;
mod plan;
mod tx;

pub use actor::Reserver;

use crate::domain::{OrderId, PersonName, Phone, Sku};

/// A validated reservation request.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub sku: Sku,
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub phone: Phone,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reserved {
        order_id: OrderId,
        replayed: bool,
    },
    SoldOut,
    AlreadyReserved,
    UnknownSku,
    IdempotencyMismatch,
    /// PostgreSQL could not be reached; nothing was decided.
    Unavailable,
    /// A bug or an unexpected database error; logged where it happened.
    Failed,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Reserved {
                replayed: false, ..
            } => "reserved",
            Outcome::Reserved { replayed: true, .. } => "replayed",
            Outcome::SoldOut => "sold_out",
            Outcome::AlreadyReserved => "already_reserved",
            Outcome::UnknownSku => "unknown_sku",
            Outcome::IdempotencyMismatch => "idempotency_mismatch",
            Outcome::Unavailable => "unavailable",
            Outcome::Failed => "failed",
        }
    }
}
