//! The notifier: bucket event in, `voucher_ready` on the customer's topic out.
//!
//! The object store publishes every event with one fixed routing key, so a
//! browser cannot subscribe to "its" voucher there. This role republishes each
//! voucher creation on `amq.topic` with key `voucher.<order_id>`, carrying a
//! presigned download link, into the browsers' broker ([`crate::fanout`]).
//! The event is acked only after that broker confirmed the publish, so a
//! crash in between means a duplicate message, never a missing one.
//!
//! The object store's events are not the only source ([`StoredAnnouncer`]):
//! a bucket notification can be lost before it reaches the broker (Ceph's
//! synchronous topics send the event from the PUT and never retry it, so the
//! events in flight when the broker node dies are gone while the PUTs
//! succeeded; MinIO keeps undelivered events in a `queue_dir` that a pod
//! restart loses). The renderer's own `vouchers_stored.v1`, published with a
//! confirm before it acks an order, is announced as well, unless this
//! process has announced it from its bucket event already ([`Announced`]):
//! RGW and MinIO send the event from the PUT, so it is normally here before
//! the renderer's message. A voucher whose event went to another notifier
//! replica, or came late, is announced twice, which browsers already take
//! (at-least-once).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use drop_contract::{
    messages::{VoucherEvent, VoucherStatus},
    topology,
};
use lapin::message::Delivery;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

use crate::consumer::{Handler, Outcome};
use crate::events::{self, Record};
use crate::fanout::Fanout;
use crate::metrics;
use crate::order::OrderId;
use crate::publish::{Message, PublishError};
use crate::retry::{Backoff, RetryError, retry};
use crate::store::{Store, StoreError};

pub struct Notifier {
    pub store: Store,
    pub queue: String,
    pub max_attempts: u32,
    pub url_ttl: Duration,
    /// Where `voucher.<order_id>` goes: the browsers' broker.
    pub fanout: Arc<Fanout>,
    /// What this process has announced, so the second source skips it.
    pub announced: Announced,
}

/// How long the renderer's report of a voucher waits for the voucher's own
/// bucket event before announcing it itself: the event is sent during the
/// PUT, so it has normally been announced by then; a lost one costs its
/// customer this much.
const EVENT_GRACE: Duration = Duration::from_secs(2);
const GRACE_POLL: Duration = Duration::from_millis(100);

/// The order ids whose `voucher_ready` this process published, the last
/// `capacity` of them (a drop's worth; older ones are forgotten first, which
/// costs at most a duplicate announcement).
pub struct Announced {
    inner: Mutex<(HashSet<OrderId>, VecDeque<OrderId>)>,
    capacity: usize,
}

impl Announced {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity,
        }
    }

    fn insert(&self, id: &OrderId) {
        let mut guard = self.inner.lock().expect("announced lock");
        let (set, order) = &mut *guard;
        if set.insert(id.clone()) {
            order.push_back(id.clone());
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    /// The ids of `ids` not announced yet.
    fn missing<'a>(&self, ids: &'a [OrderId]) -> Vec<&'a OrderId> {
        let guard = self.inner.lock().expect("announced lock");
        ids.iter().filter(|id| !guard.0.contains(*id)).collect()
    }

    /// Waits up to `grace` for every one of `ids` to be announced; returns
    /// those that were not.
    async fn wait_for<'a>(
        &self,
        ids: &'a [OrderId],
        grace: Duration,
        shutdown: &CancellationToken,
    ) -> Vec<&'a OrderId> {
        let deadline = Instant::now() + grace;
        loop {
            let missing = self.missing(ids);
            if missing.is_empty() || Instant::now() >= deadline || shutdown.is_cancelled() {
                return missing;
            }
            tokio::time::sleep(GRACE_POLL).await;
        }
    }
}

impl Handler for Notifier {
    /// Nothing per connection: publishing goes to the fan-out broker.
    type Session = ();

    fn role(&self) -> &'static str {
        "notify"
    }

    fn queue(&self) -> &str {
        &self.queue
    }

    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        topology::declare_events_queue(channel, &self.queue).await
    }

    async fn open_session(&self, _connection: &Connection) -> lapin::Result<()> {
        Ok(())
    }

    async fn handle(&self, delivery: &Delivery, _: &(), shutdown: &CancellationToken) -> Outcome {
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
            if let Err(outcome) = self.notify(&order_id, shutdown).await {
                return outcome;
            }
        }
        Outcome::Ack
    }
}

/// The notifier's second source: the renderer's [`VoucherStatus`] on the
/// orders exchange (`voucher.stored`, queue `STORED_QUEUE`). Each order in it
/// that this process has not announced from its bucket event within
/// [`EVENT_GRACE`] is announced as a bucket event's would be: HEAD (so a
/// voucher deleted by a cancellation since is not announced), presign,
/// publish, then ack.
pub struct StoredAnnouncer {
    pub notifier: Arc<Notifier>,
    pub exchange: String,
    pub queue: String,
}

impl Handler for StoredAnnouncer {
    type Session = ();

    fn role(&self) -> &'static str {
        "announce"
    }

    fn queue(&self) -> &str {
        &self.queue
    }

    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        topology::declare_stored_queue(channel, &self.exchange, &self.queue).await
    }

    async fn open_session(&self, _connection: &Connection) -> lapin::Result<()> {
        Ok(())
    }

    async fn handle(&self, delivery: &Delivery, _: &(), shutdown: &CancellationToken) -> Outcome {
        let order_ids = match serde_json::from_slice::<VoucherStatus>(&delivery.data) {
            Ok(VoucherStatus::StoredV1 { order_ids }) => order_ids,
            Err(e) => {
                tracing::warn!(error = %e, "malformed voucher status; dead-lettering");
                return Outcome::DeadLetter("malformed_status");
            }
        };
        let missing = self
            .notifier
            .announced
            .wait_for(&order_ids, EVENT_GRACE, shutdown)
            .await;
        ::metrics::counter!(metrics::ALREADY_ANNOUNCED)
            .increment((order_ids.len() - missing.len()) as u64);
        for order_id in missing {
            // A failure requeues the whole status: the ids before it are
            // announced again, a duplicate and never a gap.
            if let Err(outcome) = self.notifier.notify(order_id, shutdown).await {
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
        let body = serde_json::to_vec(&VoucherEvent::Ready {
            order_id: order_id.clone(),
            voucher_url: url,
        })
        .map_err(|e| {
            tracing::error!(%order_id, error = %e, "serialising voucher_ready failed");
            Outcome::DeadLetter("serialise_failed")
        })?;

        let routing_key = order_id.voucher_routing_key();
        let message = Message {
            exchange: topology::TOPIC_EXCHANGE,
            routing_key: &routing_key,
            message_id: order_id.as_str(),
            body: &body,
        };
        // Every failure is worth another try (a closed channel is reopened),
        // except shutting down while the fan-out broker blocks us.
        let published = retry(
            "publish",
            Backoff::RETRY,
            self.max_attempts,
            shutdown,
            |e| !matches!(e, PublishError::Blocked),
            || self.fanout.publish(&message, shutdown),
        )
        .await;
        match published {
            Ok(()) => {}
            Err(RetryError::Cancelled | RetryError::Permanent(PublishError::Blocked)) => {
                return Err(Outcome::Requeue);
            }
            Err(RetryError::Permanent(e)) => {
                tracing::warn!(%order_id, error = %e, "publish refused; the event will be redelivered");
                return Err(Outcome::Requeue);
            }
            Err(RetryError::Exhausted(e)) => {
                tracing::error!(%order_id, error = %e, "publish keeps failing; dead-lettering");
                return Err(Outcome::DeadLetter("publish_failed"));
            }
        }

        ::metrics::counter!(metrics::PUBLISHED).increment(1);
        self.announced.insert(order_id);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> OrderId {
        OrderId::parse(&format!("{n:032x}")).expect("an order id")
    }

    #[test]
    fn announced_ids_are_not_missing_and_the_oldest_are_forgotten() {
        let announced = Announced::new(2);
        let ids = [id(1), id(2), id(3)];
        assert_eq!(announced.missing(&ids).len(), 3);
        announced.insert(&ids[0]);
        announced.insert(&ids[1]);
        announced.insert(&ids[1]);
        assert_eq!(announced.missing(&ids), vec![&ids[2]]);
        announced.insert(&ids[2]);
        // Capacity 2: the first one is forgotten.
        assert_eq!(announced.missing(&ids), vec![&ids[0]]);
    }

    #[tokio::test]
    async fn the_wait_ends_when_every_id_is_announced_or_at_the_grace() {
        let grace = Duration::from_secs(2);
        let announced = Arc::new(Announced::new(16));
        let ids = [id(1), id(2)];
        let shutdown = CancellationToken::new();
        let later = {
            let announced = Arc::clone(&announced);
            let ids = ids.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                announced.insert(&ids[0]);
                announced.insert(&ids[1]);
            })
        };
        let started = Instant::now();
        assert!(announced.wait_for(&ids, grace, &shutdown).await.is_empty());
        assert!(started.elapsed() < grace);
        later.await.expect("the announcing task");

        let unseen = [id(3)];
        let started = Instant::now();
        assert_eq!(
            announced.wait_for(&unseen, grace, &shutdown).await,
            vec![&unseen[0]]
        );
        assert!(started.elapsed() >= grace);
    }
}
