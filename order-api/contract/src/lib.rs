//! The contract between order-api and pdf-generator, owned once.
//!
//! order-api produces the orders that pdf-generator consumes and serves the
//! page that reads what pdf-generator announces, so this crate lives beside
//! order-api; pdf-generator depends on it like order-api does. A change here
//! is a change to both services and to docs/design.md, which documents the
//! same names for people and for the Kubernetes topology objects.
//!
//! - [`OrderId`]: the customer's capability, which redacts itself in logs.
//! - [`messages`]: every message the services exchange, as serde types, with
//!   the outbox message versioned and tagged.
//! - [`topology`]: exchange, queue and routing-key names, queue arguments, and
//!   the declarations both services run on every connect.
//! - [`s3`]: the one S3 client builder, and the settings both services read.
//! - [`env`]: the one rule for reading environment variables.
//! - [`voucher_code`]: the signed code in a voucher's QR (JWS, Ed25519),
//!   signed by pdf-generator and verified by order-api.

pub mod env;
pub mod messages;
mod order_id;
pub mod s3;
pub mod topology;
pub mod voucher_code;

pub use order_id::{InvalidOrderId, OrderId};
