//! order-api: reservations for limited-stock drops.
//!
//! A code tour, from the edge inwards:
//! - [`http`]: routes, extractors, the one error type, request metrics.
//! - [`domain`]: newtypes that can only hold valid values (`Phone`, `Sku`, …).
//! - [`reserve`]: where a unit is reserved — per-SKU batching in one transaction.
//! - [`idempotency`]: Idempotency-Keys, their fingerprint and their table.
//! - [`stock`]: the sold-out hint in process and in Dragonfly/Redis, its
//!   reconciler, and the `stock.<sku>` announcements to browsers.
//! - [`outbox`]: relays committed orders to RabbitMQ with publisher confirms.
//! - [`voucher_status`]: records that a voucher is stored, from the renderer's word.
//! - [`vouchers`]: presigned links to voucher PDFs.
//! - [`voucher_deletions`]: deletes cancelled orders' vouchers from the bucket.
//! - [`lifecycle`]: after the drop: redemption at the counter, cancellation.
//! - [`db`]: the pool, migrations, and one adapter per table.
//! - [`broker`]: the RabbitMQ publishing channel.
//! - [`health`]: the readiness probe, on a connection of its own.
//! - [`startup`]: wiring, background tasks and graceful shutdown.
//!
//! What order-api shares with pdf-generator (the order id, the messages, the
//! broker names, the S3 client, the rule for environment variables) is in
//! the drop-contract crate.

pub mod broker;
pub mod config;
pub mod db;
pub mod domain;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod lifecycle;
pub mod outbox;
pub mod reserve;
pub mod startup;
pub mod stock;
pub mod telemetry;
pub mod voucher_deletions;
pub mod voucher_status;
pub mod vouchers;
