//! The cross-service end-to-end tests, in one place: the voucher pipeline on
//! the real local stack (`bash dev/stack.sh up`): order-api → RabbitMQ →
//! pdf-generator → S3 (Ceph RGW) → bucket notification → pdf-generator's
//! notifier → `amq.topic`, and the voucher status back to order-api.
//!
//! Every test spawns real processes: the workspace's order-api and
//! pdf-generator binaries (built by `cargo build --workspace`, found next to
//! this test's binary, or named by `ORDER_API_BIN` / `PDF_GENERATOR_BIN`).
//! Each gets a fresh database, its own `orders` exchange and queues, and free
//! ports; everything is deleted again when the test ends, also when it fails.
//!
//! Some tests restart RabbitMQ or stop the S3 server, so run this binary alone
//! and sequentially: `cargo test --workspace --test e2e -- --test-threads=1`.

mod chaos;
mod failures;
mod pipeline;
mod support;
