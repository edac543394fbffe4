//! The reservation domain: newtypes that can only hold valid values.
//!
//! Parsing happens once, at the edge (`http`), so everything past it works
//! with types that cannot be wrong: a [`Phone`] is always E.164, an
//! [`OrderId`] is always 32 lowercase hex digits, and so on.

mod names;
mod order_id;
mod phone;
mod sku;

pub use names::{PersonName, ProductName};
pub use order_id::OrderId;
pub use phone::Phone;
pub use sku::Sku;

/// Why a value was refused. The HTTP layer turns it into 422 `invalid_field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Largest total stock a product may have; keeps `stock` inside PostgreSQL's `integer`.
pub const MAX_STOCK: i64 = 1_000_000_000;
