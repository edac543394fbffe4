//! The broker objects this service uses, declared at every (re)connect.
//!
//! Declarations are idempotent only if flags and arguments match the existing
//! objects exactly; otherwise RabbitMQ closes the channel with
//! PRECONDITION_FAILED. In Kubernetes the messaging-topology operator creates
//! the same objects, so everything here must stay identical to
//! docs/design.md ("Broker topology"): change it there first.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

pub const ORDERS_BINDING: &str = "order.#";
pub const DEAD_LETTER_EXCHANGE: &str = "orders.dlx";
pub const DEAD_LETTER_QUEUE: &str = "orders.dead";
pub const EVENTS_EXCHANGE: &str = "s3.events";
pub const EVENTS_BINDING: &str = "voucher-events";
/// Built in; `voucher.<order_id>` is each customer's topic.
pub const VOUCHER_EXCHANGE: &str = "amq.topic";
/// A poisoned order is delivered at most this many times before RabbitMQ
/// dead-letters it, even if every consumer that takes it crashes.
pub const DELIVERY_LIMIT: i64 = 10;

/// What the renderer consumes: `exchange` (`orders`) → `queue`, with dead letters.
pub async fn declare_orders(ch: &Channel, exchange: &str, queue: &str) -> lapin::Result<()> {
    declare_dead_letters(ch).await?;
    durable_exchange(ch, exchange, ExchangeKind::Topic).await?;
    let mut args = quorum();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    durable_queue(ch, queue, args).await?;
    bind(ch, queue, exchange, ORDERS_BINDING).await
}

/// What the notifier consumes: `s3.events` → `queue`, with dead letters.
pub async fn declare_events(ch: &Channel, queue: &str) -> lapin::Result<()> {
    declare_dead_letters(ch).await?;
    // The object store publishes here but never declares it (RGW) or declares
    // it with exactly these settings (MinIO), so we must create it.
    durable_exchange(ch, EVENTS_EXCHANGE, ExchangeKind::Topic).await?;
    let mut args = quorum();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
    );
    durable_queue(ch, queue, args).await?;
    bind(ch, queue, EVENTS_EXCHANGE, EVENTS_BINDING).await
}

async fn declare_dead_letters(ch: &Channel) -> lapin::Result<()> {
    durable_exchange(ch, DEAD_LETTER_EXCHANGE, ExchangeKind::Fanout).await?;
    durable_queue(ch, DEAD_LETTER_QUEUE, quorum()).await?;
    // Fanout ignores the key; "" is what the topology operator binds with.
    bind(ch, DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, "").await
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

async fn durable_exchange(ch: &Channel, name: &str, kind: ExchangeKind) -> lapin::Result<()> {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
}

async fn durable_queue(ch: &Channel, name: &str, args: FieldTable) -> lapin::Result<()> {
    // Quorum queues must be durable, non-exclusive and not auto-delete.
    ch.queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await
        .map(|_| ())
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}
