//! Integration tests of order-api against the real stack (`dev/stack.sh up`):
//! real PostgreSQL, Redis, RabbitMQ, and real `order-api` processes over HTTP.
//! One test binary, so the helpers compile once.

mod cancel;
mod chaos;
mod drop;
mod edge;
mod export;
mod helpers;
mod idempotency;
mod ops;
mod orders;
mod outbox;
mod private;
mod products;
mod redemption;
mod validation;
