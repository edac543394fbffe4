//! order-api: reservations for limited-stock drops.
//!
//! A code tour, from the edge inwards:
//! - [`http`]: routes, extractors, the one error type, request metrics.
//! - [`domain`]: newtypes that can only hold valid values (`Phone`, `Sku`, …).
//! - [`reserve`]: where a unit is reserved — per-SKU batching in one transaction.
//! - [`stock_flag`]: the sold-out hint in Dragonfly/Redis and in process.
//! - [`outbox`]: relays committed orders to RabbitMQ with publisher confirms.
//! - [`vouchers`]: voucher PDFs in the object store.
//! - [`db`], [`broker`]: PostgreSQL and RabbitMQ plumbing.
//! - [`startup`]: wiring, background tasks and graceful shutdown.

pub mod broker;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod outbox;
pub mod reserve;
pub mod startup;
pub mod stock_flag;
pub mod telemetry;
pub mod vouchers;
