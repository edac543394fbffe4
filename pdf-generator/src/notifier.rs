//! The notifier: bucket event in, `voucher_ready` on the customer's topic out.
//!
//! The object store publishes every event with one fixed routing key, so a
//! browser cannot subscribe to "its" voucher there. This role republishes each
//! voucher creation on `amq.topic` with key `voucher.<order_id>`, carrying a
//! presigned download link. The event is acked only after the broker confirmed
//! that publish, so a crash in between means a duplicate message, never a
//! missing one.

use std::time::{Duration, Instant};

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::consumer::{Handler, Outcome};
use crate::events::{self, Record};
use crate::metrics;
use crate::order::OrderId;
use crate::retry::{Backoff, RetryError, retry};
use crate::store::{Store, StoreError};
use crate::topology;

pub struct Notifier {
    pub store: Store,
    pub queue: String,
    pub max_attempts: u32,
    pub url_ttl: Duration,
}

#[derive(Serialize)]
struct VoucherReady<'a> {
    order_id: &'a str,
    status: &'static str,
    voucher_url: &'a str,
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error("broker nacked the publish")]
    Nacked,
    #[error("no publisher confirm within {0:?}")]
    Unconfirmed(Duration),
}

/// A confirm normally takes milliseconds; a broker that sits on one is as
/// good as down, and the retry budget handles it like any other failure.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

impl Handler for Notifier {
    /// A channel in confirm mode, shared by all handlers on this connection.
    type Session = Channel;

    fn role(&self) -> &'static str {
        "notify"
    }

    fn queue(&self) -> &str {
        &self.queue
    }

    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        topology::declare_events(channel, &self.queue).await
    }

    async fn open_session(&self, connection: &Connection) -> lapin::Result<Channel> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    async fn handle(
        &self,
        delivery: &Delivery,
        publisher: &Channel,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let records = match events::parse(&delivery.data) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, routing_key = %delivery.routing_key, "malformed bucket event; dead-lettering");
                return Outcome::DeadLetter("malformed_event");
            }
        };
        for record in &records {
            let Some(order_id) = self.voucher_of(record) else {
                continue;
            };
            if let Err(outcome) = self.notify(&order_id, publisher, shutdown).await {
                return outcome;
            }
        }
        Outcome::Ack
    }
}

impl Notifier {
    /// The order id if this record is a voucher creation in our bucket; logs
    /// why not otherwise.
    fn voucher_of(&self, record: &Record) -> Option<OrderId> {
        if !record.is_object_created() {
            tracing::info!(event = %record.event_name, "ignoring non-creation event");
            return None;
        }
        if record.bucket != self.store.bucket() {
            tracing::info!(bucket = %record.bucket, "ignoring event for another bucket");
            return None;
        }
        let id = record.voucher_order_id();
        if id.is_none() {
            tracing::info!(key = %record.key, "ignoring object that is not a voucher");
        }
        id
    }

    async fn notify(
        &self,
        order_id: &OrderId,
        publisher: &Channel,
        shutdown: &CancellationToken,
    ) -> Result<(), Outcome> {
        // The event alone is not proof: it may be a replay for an object that
        // was deleted since. HEAD also gives us the order's commit time.
        let head = retry(
            "head",
            Backoff::RETRY,
            self.max_attempts,
            shutdown,
            StoreError::is_transient,
            || self.store.head_voucher(order_id),
        )
        .await
        .map_err(|e| {
            store_failure(
                order_id,
                "head",
                e,
                "head_rejected",
                "head_retries_exhausted",
            )
        })?;
        let Some(head) = head else {
            tracing::warn!(%order_id, "event for a voucher that does not exist (any more); skipping");
            return Ok(());
        };

        let url = self
            .store
            .presign_voucher(order_id, self.url_ttl)
            .await
            .map_err(|e| {
                tracing::error!(%order_id, error = %e, "presigning failed; dead-lettering");
                Outcome::DeadLetter("presign_failed")
            })?;
        let body = serde_json::to_vec(&VoucherReady {
            order_id: order_id.as_str(),
            status: "voucher_ready",
            voucher_url: &url,
        })
        .map_err(|e| {
            tracing::error!(%order_id, error = %e, "serialising voucher_ready failed");
            Outcome::DeadLetter("serialise_failed")
        })?;

        let routing_key = format!("voucher.{order_id}");
        let published = retry(
            "publish",
            Backoff::RETRY,
            self.max_attempts,
            shutdown,
            // A dead channel will not come back; the broker redelivers the
            // event after we reconnect, so stop here instead of waiting.
            |_: &PublishError| publisher.status().connected(),
            || publish(publisher, &routing_key, order_id, &body),
        )
        .await;
        match published {
            Ok(()) => {}
            Err(RetryError::Cancelled) => return Err(Outcome::Requeue),
            Err(RetryError::Permanent(e)) => {
                tracing::warn!(%order_id, error = %e, "publish channel closed; the event will be redelivered");
                return Err(Outcome::Requeue);
            }
            Err(RetryError::Exhausted(e)) => {
                tracing::error!(%order_id, error = %e, "publish keeps failing; dead-lettering");
                return Err(Outcome::DeadLetter("publish_failed"));
            }
        }

        ::metrics::counter!(metrics::PUBLISHED).increment(1);
        if let Some(created_at) = head.order_created_at {
            // Clocks of different hosts can disagree slightly; a negative
            // latency is noise, not a sample.
            if let Ok(latency) = (Utc::now() - created_at).to_std() {
                ::metrics::histogram!(metrics::END_TO_END_SECONDS).record(latency.as_secs_f64());
            }
        }
        // Never the URL: it is a bearer credential for the voucher.
        tracing::info!(%order_id, "voucher_ready published");
        Ok(())
    }
}

async fn publish(
    channel: &Channel,
    routing_key: &str,
    order_id: &OrderId,
    body: &[u8],
) -> Result<(), PublishError> {
    let started = Instant::now();
    let result = publish_confirmed(channel, routing_key, order_id, body).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ::metrics::histogram!(metrics::PUBLISH_SECONDS, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

async fn publish_confirmed(
    channel: &Channel,
    routing_key: &str,
    order_id: &OrderId,
    body: &[u8],
) -> Result<(), PublishError> {
    let publish = async {
        channel
            .basic_publish(
                topology::VOUCHER_EXCHANGE.into(),
                routing_key.into(),
                // Not mandatory: nobody listening (the customer closed the page)
                // is normal; they can still fetch the voucher from order-api.
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_message_id(order_id.as_str().into())
                    // Persistent, so a durable subscriber queue keeps it across a
                    // broker restart.
                    .with_delivery_mode(2),
            )
            .await?
            .await
    };
    let confirm = tokio::time::timeout(CONFIRM_TIMEOUT, publish)
        .await
        .map_err(|_| PublishError::Unconfirmed(CONFIRM_TIMEOUT))??;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(PublishError::Nacked)
    }
}

fn store_failure(
    order_id: &OrderId,
    operation: &'static str,
    err: RetryError<StoreError>,
    rejected: &'static str,
    exhausted: &'static str,
) -> Outcome {
    match err {
        RetryError::Cancelled => Outcome::Requeue,
        RetryError::Permanent(e) => {
            tracing::error!(%order_id, operation, error = %e, "object store refused; dead-lettering");
            Outcome::DeadLetter(rejected)
        }
        RetryError::Exhausted(e) => {
            tracing::error!(%order_id, operation, error = %e, "object store still failing; dead-lettering");
            Outcome::DeadLetter(exhausted)
        }
    }
}
