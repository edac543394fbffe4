//! The renderer: one order message in, one voucher object per order out.
//!
//! A message holds a batch of orders (docs/design.md, "Orders accepted").
//! Order of events per delivery: parse → for every order at once, render
//! (blocking pool) → upload with retries → tell order-api which vouchers are
//! stored (a [`VoucherStatus`], with a publisher confirm) → then one ack. A message that cannot
//! be parsed or rendered will never succeed, so it is dead-lettered at once;
//! an upload that keeps failing is dead-lettered after `MAX_ATTEMPTS`, so it
//! is kept for inspection and never loops.
//!
//! Redelivery is idempotent by overwriting: the key is the order id, and the
//! same order renders the same voucher, so a second PUT replaces the object
//! with an equivalent one. We deliberately do not skip the PUT when the object
//! already exists: the PUT is what makes the object store emit its event, and
//! re-emitting it heals a notification lost the first time (e.g. the broker
//! was restarting). The cost is an occasional duplicate voucher_ready, which
//! at-least-once delivery allows.

use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use lapin::message::Delivery;
use lapin::{Channel, Connection};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use drop_contract::messages::{OrdersMessage, VoucherStatus};
use drop_contract::topology;

use crate::consumer::{Handler, Outcome};
use crate::metrics;
use crate::order::voucher_code;
use crate::order::{Order, OrderId};
use crate::publish::{self, Message};
use crate::render::Printer;
use crate::retry::{Backoff, RetryError, retry};
use crate::store::Store;

pub struct Renderer {
    pub store: Store,
    pub printer: Arc<Printer>,
    pub exchange: String,
    pub queue: String,
    pub max_attempts: u32,
    /// Rendering is CPU-bound: running more renders than cores only adds
    /// memory (each holds a copy of the fonts while subsetting) and latency.
    pub render_slots: Arc<Semaphore>,
    /// Orders between parse and upload, across all messages (`PREFETCH`): a
    /// message can hold a whole reservation batch, so the prefetch alone,
    /// which counts messages, would not bound the uploads in flight.
    pub order_slots: Arc<Semaphore>,
    /// Signs each voucher's code (`VOUCHER_SIGNING_KEY`); `None`: bare ids.
    pub signing_key: Option<Arc<drop_contract::voucher_code::SigningKey>>,
}

impl Handler for Renderer {
    /// A channel in confirm mode, for the voucher statuses.
    type Session = Channel;

    fn role(&self) -> &'static str {
        "render"
    }

    fn queue(&self) -> &str {
        &self.queue
    }

    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        topology::declare_orders_queue(channel, &self.exchange, &self.queue).await
    }

    async fn open_session(&self, connection: &Connection) -> lapin::Result<Channel> {
        publish::confirm_channel(connection).await
    }

    async fn handle(
        &self,
        delivery: &Delivery,
        publisher: &Channel,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let orders = match OrdersMessage::from_slice(&delivery.data) {
            Ok(message) => message.into_orders(),
            Err(e) => {
                let message_id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string());
                tracing::warn!(?message_id, error = %e, "malformed order message; dead-lettering");
                return Outcome::DeadLetter("malformed");
            }
        };
        let outcomes = join_all(orders.into_iter().map(|order| async {
            let order_id = order.order_id.clone();
            (
                order_id,
                self.voucher(order, delivery.redelivered, shutdown).await,
            )
        }))
        .await;
        let stored: Vec<OrderId> = outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Ack)
            .map(|(id, _)| id.clone())
            .collect();
        if !stored.is_empty() {
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map_or_else(|| stored[0].as_str().to_owned(), |m| m.to_string());
            if let Err(outcome) = self
                .report_stored(stored, &message_id, publisher, shutdown)
                .await
            {
                return outcome;
            }
        }
        settle(outcomes.into_iter().map(|(_, outcome)| outcome).collect())
    }
}

impl Renderer {
    /// Tells order-api that these vouchers are stored, before the ack, so
    /// the order's status never depends on the bucket notification. If it
    /// cannot be confirmed, the message goes back to the queue: redelivery
    /// uploads the same vouchers again and reports them again, which both
    /// sides treat as a no-op.
    async fn report_stored(
        &self,
        order_ids: Vec<OrderId>,
        message_id: &str,
        publisher: &Channel,
        shutdown: &CancellationToken,
    ) -> Result<(), Outcome> {
        let count = order_ids.len();
        let body = serde_json::to_vec(&VoucherStatus::StoredV1 { order_ids }).map_err(|e| {
            tracing::error!(error = %e, "serialising the voucher status failed");
            Outcome::Requeue
        })?;
        let message = Message {
            exchange: &self.exchange,
            routing_key: topology::VOUCHER_STORED_KEY,
            message_id,
            body: &body,
        };
        let published =
            publish::publish_retrying(publisher, &message, self.max_attempts, shutdown).await;
        match published {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(vouchers = count, error = ?e, "voucher status not confirmed; requeueing");
                Err(Outcome::Requeue)
            }
        }
    }

    /// Renders and uploads one order's voucher; what the message's outcome
    /// would be if this order were all it held.
    async fn voucher(
        &self,
        order: Order,
        redelivered: bool,
        shutdown: &CancellationToken,
    ) -> Outcome {
        // Only if a semaphore were closed, which we never do.
        let Ok(_in_flight) = self.order_slots.acquire().await else {
            return Outcome::Requeue;
        };
        let order_id = order.order_id.clone();
        let created_at = order.created_at;

        let pdf = {
            let Ok(_slot) = self.render_slots.acquire().await else {
                return Outcome::Requeue;
            };
            let printer = Arc::clone(&self.printer);
            let key = self.signing_key.clone();
            let started = Instant::now();
            let rendered = tokio::task::spawn_blocking(move || {
                let code = voucher_code(&order, key.as_deref());
                printer.render(&order, &code)
            })
            .await;
            ::metrics::histogram!(metrics::RENDER_SECONDS).record(started.elapsed().as_secs_f64());
            match rendered {
                Ok(Ok(voucher)) => {
                    let how = if voucher.stamped { "stamped" } else { "whole" };
                    ::metrics::counter!(metrics::RENDERED, "how" => how).increment(1);
                    voucher.bytes
                }
                Ok(Err(e)) => {
                    tracing::error!(%order_id, error = %e, "render failed; dead-lettering");
                    return Outcome::DeadLetter("render_failed");
                }
                Err(e) => {
                    tracing::error!(%order_id, error = %e, "render panicked; dead-lettering");
                    return Outcome::DeadLetter("render_panicked");
                }
            }
        };

        let upload = retry(
            "upload",
            Backoff::RETRY,
            self.max_attempts,
            shutdown,
            |e: &crate::store::StoreError| e.is_transient(),
            || self.store.put_voucher(&order_id, pdf.clone(), created_at),
        )
        .await;
        match upload {
            Ok(()) => {
                ::metrics::counter!(metrics::UPLOADED).increment(1);
                tracing::info!(%order_id, bytes = pdf.len(), redelivered, "voucher uploaded");
                Outcome::Ack
            }
            Err(RetryError::Permanent(e)) => {
                tracing::error!(%order_id, error = %e, "upload rejected; dead-lettering");
                Outcome::DeadLetter("upload_rejected")
            }
            Err(RetryError::Exhausted(e)) => {
                tracing::error!(%order_id, attempts = self.max_attempts, error = %e, "upload still failing; dead-lettering");
                Outcome::DeadLetter("upload_retries_exhausted")
            }
            Err(RetryError::Cancelled) => {
                tracing::info!(%order_id, "shutting down during upload retry; requeueing");
                Outcome::Requeue
            }
        }
    }
}

/// One message's outcome from its orders' outcomes. Any order interrupted by
/// shutdown gives the whole message back (its finished vouchers are uploaded
/// again on redelivery, which overwriting makes harmless); otherwise any
/// order that can never succeed dead-letters the message, so it is kept for
/// inspection, with the reason of the first such order. Vouchers the other
/// orders finished stay uploaded and announced: re-driving the message from
/// the dead-letter queue only uploads them again.
fn settle(outcomes: Vec<Outcome>) -> Outcome {
    if outcomes.contains(&Outcome::Requeue) {
        return Outcome::Requeue;
    }
    outcomes
        .into_iter()
        .find(|o| matches!(o, Outcome::DeadLetter(_)))
        .unwrap_or(Outcome::Ack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_settles_on_its_worst_order() {
        use Outcome::*;
        assert_eq!(settle(vec![Ack, Ack]), Ack);
        assert_eq!(
            settle(vec![
                Ack,
                DeadLetter("render_failed"),
                DeadLetter("upload_rejected")
            ]),
            DeadLetter("render_failed")
        );
        assert_eq!(
            settle(vec![DeadLetter("render_failed"), Requeue, Ack]),
            Requeue
        );
    }
}
