//! The broker objects, named once (docs/design.md, "Broker topology").
//!
//! Both services declare what they use on every connect, so a fresh broker
//! works; in Kubernetes the messaging-topology operator declares the same
//! objects (k8s/base/rabbitmq/topology.yaml). Declarations are idempotent
//! only while flags and arguments match the existing objects exactly;
//! otherwise RabbitMQ closes the channel with PRECONDITION_FAILED, which is
//! why the arguments live here and nowhere else.

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

/// Accepted orders, and the renderer's word that vouchers are stored.
/// Tests and side-by-side environments on one broker use their own name.
pub const ORDERS_EXCHANGE: &str = "orders";
/// What the outbox relay publishes an [`crate::messages::OrdersMessage`] with.
pub const ORDER_RESERVED_KEY: &str = "order.reserved";
/// How the renderer's queue is bound to the orders exchange.
pub const ORDERS_BINDING: &str = "order.#";
pub const ORDERS_QUEUE: &str = "pdf-generator.orders";
/// What the renderer publishes a [`crate::messages::VoucherStatus`] with.
pub const VOUCHER_STORED_KEY: &str = "voucher.stored";
/// order-api's queue of voucher statuses, bound with [`VOUCHER_STORED_KEY`].
pub const VOUCHER_STATUS_QUEUE: &str = "order-api.voucher-status";
/// The notifier's queue of the same statuses, bound with
/// [`VOUCHER_STORED_KEY`]: every stored voucher is announced from it too, so
/// a bucket event the object store lost (a synchronous RGW topic whose broker
/// node died, a MinIO `queue_dir` lost with its pod) loses no announcement.
pub const STORED_QUEUE: &str = "pdf-generator.voucher-stored";

pub const DEAD_LETTER_EXCHANGE: &str = "orders.dlx";
pub const DEAD_LETTER_QUEUE: &str = "orders.dead";

/// Where the object store publishes its bucket notifications. It never
/// declares it (Ceph RGW) or declares it with exactly these settings
/// (MinIO), so the notifier must create it.
pub const EVENTS_EXCHANGE: &str = "s3.events";
/// MinIO's `MINIO_NOTIFY_AMQP_ROUTING_KEY`; Ceph RGW's topic name.
pub const EVENTS_ROUTING_KEY: &str = "voucher-events";
pub const EVENTS_QUEUE: &str = "pdf-generator.s3-events";

/// Built in: `voucher.<order_id>` and `stock.<sku>` for browsers.
pub const TOPIC_EXCHANGE: &str = "amq.topic";
pub const VOUCHER_KEY_PREFIX: &str = "voucher.";
pub const STOCK_KEY_PREFIX: &str = "stock.";

/// A poisoned message is delivered at most this many times before RabbitMQ
/// dead-letters it, even if every consumer that takes it crashes.
pub const DELIVERY_LIMIT: i64 = 10;

/// `stock.<sku>`, on which browsers hear that a product sold out or is back.
pub fn stock_routing_key(sku: &str) -> String {
    format!("{STOCK_KEY_PREFIX}{sku}")
}

/// The arguments of every queue that must not lose messages: a quorum queue
/// (replicated, durable), optionally dead-lettering to [`DEAD_LETTER_EXCHANGE`]
/// and capped at [`DELIVERY_LIMIT`] deliveries.
pub fn quorum_queue_args(dead_letters: bool, delivery_limit: bool) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if dead_letters {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
        );
    }
    if delivery_limit {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    args
}

/// The orders exchange alone: what the outbox relay needs to publish.
pub async fn declare_orders_exchange(ch: &Channel, exchange: &str) -> lapin::Result<()> {
    durable_exchange(ch, exchange, ExchangeKind::Topic).await
}

/// What the renderer consumes: `exchange` → `queue` (`order.#`), with dead
/// letters and the delivery limit.
pub async fn declare_orders_queue(ch: &Channel, exchange: &str, queue: &str) -> lapin::Result<()> {
    declare_dead_letters(ch).await?;
    declare_orders_exchange(ch, exchange).await?;
    durable_queue(ch, queue, quorum_queue_args(true, true)).await?;
    bind(ch, queue, exchange, ORDERS_BINDING).await
}

/// What order-api consumes: `exchange` → `queue` (`voucher.stored`), with
/// dead letters and the delivery limit.
pub async fn declare_voucher_status_queue(
    ch: &Channel,
    exchange: &str,
    queue: &str,
) -> lapin::Result<()> {
    declare_dead_letters(ch).await?;
    declare_orders_exchange(ch, exchange).await?;
    durable_queue(ch, queue, quorum_queue_args(true, true)).await?;
    bind(ch, queue, exchange, VOUCHER_STORED_KEY).await
}

/// What the notifier consumes besides the bucket events: `exchange` →
/// `queue` (`voucher.stored`), with dead letters and the delivery limit.
pub async fn declare_stored_queue(ch: &Channel, exchange: &str, queue: &str) -> lapin::Result<()> {
    declare_voucher_status_queue(ch, exchange, queue).await
}

/// What the notifier consumes: `s3.events` → `queue` (`voucher-events`),
/// with dead letters.
pub async fn declare_events_queue(ch: &Channel, queue: &str) -> lapin::Result<()> {
    declare_dead_letters(ch).await?;
    durable_exchange(ch, EVENTS_EXCHANGE, ExchangeKind::Topic).await?;
    durable_queue(ch, queue, quorum_queue_args(true, false)).await?;
    bind(ch, queue, EVENTS_EXCHANGE, EVENTS_ROUTING_KEY).await
}

pub async fn declare_dead_letters(ch: &Channel) -> lapin::Result<()> {
    durable_exchange(ch, DEAD_LETTER_EXCHANGE, ExchangeKind::Fanout).await?;
    durable_queue(ch, DEAD_LETTER_QUEUE, quorum_queue_args(false, false)).await?;
    // Fanout ignores the key; "" is what the topology operator binds with.
    bind(ch, DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, "").await
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

/// Binds `queue` to `exchange` with `key`, without arguments.
pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_arguments_match_the_design() {
        let args = quorum_queue_args(true, true);
        let inner = args.inner();
        assert_eq!(
            inner.get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            inner.get("x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("orders.dlx".into()))
        );
        assert_eq!(
            inner.get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(10))
        );
        assert_eq!(quorum_queue_args(false, false).inner().len(), 1);
        assert_eq!(stock_routing_key("SNEAKER-42"), "stock.SNEAKER-42");
    }
}
