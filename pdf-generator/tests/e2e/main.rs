//! End-to-end tests of the voucher pipeline on the real local stack
//! (`bash dev/stack.sh start`): order-api → RabbitMQ → pdf-generator → S3
//! (Ceph RGW) → bucket notification → pdf-generator's notifier → `amq.topic`.
//!
//! Every test spawns real processes: the order-api binary (built with
//! `cargo build -p order-api`, or `ORDER_API_BIN`) and this crate's
//! pdf-generator. Each gets a fresh database, its own `orders` exchange and
//! queues, and free ports; everything is deleted again when the test ends.
//!
//! Some tests restart RabbitMQ or stop the S3 server, so run this binary alone
//! and sequentially: `cargo test -p pdf-generator -- --test-threads=1`.

mod chaos;
mod failures;
mod pipeline;
mod support;
