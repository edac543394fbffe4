//! Records that an order's voucher exists, when it comes to exist.
//!
//! The renderer publishes a [`VoucherStatus`] on the orders exchange
//! (`voucher.stored`) after it uploaded a batch's vouchers and before it acks
//! the batch, so every stored voucher is announced at least once, whether or
//! not the object store's bucket notification arrives. This consumer turns it
//! into `orders.status = 'voucher_ready'`, which `GET /v1/orders/{id}` then
//! only reads.
//!
//! Manual acks, after the UPDATE committed. The UPDATE is idempotent (only
//! `reserved` orders change), so a redelivery is harmless. A message that is
//! not a voucher status is dead-lettered at once; a database outage requeues
//! it after a pause, and the queue's delivery limit stops a loop.

use std::time::Duration;

use deadpool_postgres::Pool;
use drop_contract::{messages::VoucherStatus, topology};
use futures::StreamExt;
use lapin::{
    Connection, ConnectionProperties,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::db::orders;

/// How many status messages the broker may push before we ack: each is one
/// UPDATE, so a few are enough to keep the database busy.
const PREFETCH: u16 = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct VoucherStatusConsumer {
    pub pool: Pool,
    pub amqp_url: SecretString,
    pub exchange: String,
    pub queue: String,
}

impl VoucherStatusConsumer {
    /// Consumes until `cancel`, reconnecting with backoff while the broker
    /// is away.
    pub async fn run(self, cancel: CancellationToken) {
        let mut wait = Duration::from_millis(250);
        while !cancel.is_cancelled() {
            match self.consume(&cancel).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "voucher status consumer disconnected");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn consume(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(
                self.amqp_url.expose_secret(),
                ConnectionProperties::default()
                    .with_connection_name("order-api-voucher-status".into()),
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("AMQP handshake timed out"))??;
        let channel = connection.create_channel().await?;
        topology::declare_voucher_status_queue(&channel, &self.exchange, &self.queue).await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let mut deliveries = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue = %self.queue, "consuming voucher statuses");
        let result = loop {
            tokio::select! {
                () = cancel.cancelled() => break Ok(()),
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        // `false`: already settled, nothing to do.
                        let _settled = self.handle(&delivery, cancel).await?;
                    }
                    Some(Err(e)) => break Err(e.into()),
                    None => break Err(anyhow::anyhow!("consumer stream ended")),
                },
            }
        };
        // Unacked deliveries go back to the queue when the channel closes.
        let _ = connection.close(200, "stopping".into()).await;
        result
    }

    /// Settles one delivery; `Err` only when the channel is gone.
    async fn handle(&self, delivery: &Delivery, cancel: &CancellationToken) -> lapin::Result<bool> {
        let order_ids = match serde_json::from_slice::<VoucherStatus>(&delivery.data) {
            Ok(VoucherStatus::StoredV1 { order_ids }) => order_ids,
            Err(e) => {
                tracing::warn!(error = %e, "not a voucher status; dead-lettering");
                metrics::counter!("voucher_status_total", "outcome" => "malformed").increment(1);
                return delivery
                    .nack(BasicNackOptions {
                        requeue: false,
                        multiple: false,
                    })
                    .await;
            }
        };
        match orders::mark_voucher_ready(&self.pool, &order_ids).await {
            Ok(updated) => {
                metrics::counter!("voucher_status_total", "outcome" => "recorded")
                    .increment(updated);
                delivery.ack(BasicAckOptions::default()).await
            }
            Err(e) => {
                tracing::warn!(error = %e, orders = order_ids.len(), "voucher status not recorded; requeueing");
                metrics::counter!("voucher_status_total", "outcome" => "requeued").increment(1);
                // Pause before giving it back, so an outage is not a busy loop.
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await
            }
        }
    }
}
