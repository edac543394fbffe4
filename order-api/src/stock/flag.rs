//! The flag itself, and how replicas share it.
//!
//! Three copies, from fastest to most authoritative:
//! 1. an in-process map on every replica, read on every `POST /v1/orders`;
//! 2. Dragonfly/Redis (`drop:product:<sku>`), shared by replicas and read by
//!    `GET /v1/products/{sku}`; every change is announced on the `drop:stock`
//!    pub/sub channel so the other replicas' in-process maps follow at once;
//! 3. PostgreSQL, from which both are rebuilt at startup and every
//!    `STOCK_RECONCILE_SECS`.
//!
//! This type holds copies 1 and 2 and keeps them shared; rebuilding them from
//! copy 3 is the [`super::reconciler`]'s job, and telling browsers is
//! [`super::announce`]'s (Web-STOMP) and the stock event stream's
//! (`GET /v1/products/{sku}/events`, fed by [`StockFlag::watch`]): every
//! change of copy 1, whichever replica learnt it first, is sent to the
//! watchers.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use fred::{
    clients::SubscriberClient,
    prelude::{
        Builder, Client, ClientLike, Config as RedisConfig, EventInterface, HashesInterface,
        PubsubInterface, ReconnectPolicy,
    },
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::domain::Sku;

const CHANNEL: &str = "drop:stock";

fn redis_key(sku: &str) -> String {
    format!("drop:product:{sku}")
}

/// What every replica knows about a product without asking PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductFlag {
    pub name: String,
    pub available: bool,
}

#[derive(Serialize, Deserialize)]
struct Announcement {
    sku: String,
    name: String,
    available: bool,
}

pub struct StockFlag {
    // A std RwLock, not tokio's: the critical sections are a map lookup or
    // insert and never await, so a blocking lock is cheaper and cannot be held
    // across a suspension point.
    local: RwLock<HashMap<String, ProductFlag>>,
    /// Bumped on every change of the in-process map, whether it came from a
    /// commit on this replica or an announcement from another one. The
    /// reconciler compares it around its snapshot to detect a race.
    changes: AtomicU64,
    redis: Client,
    subscriber: SubscriberClient,
    /// Every change of the in-process map: (SKU, available).
    watchers: tokio::sync::broadcast::Sender<Flip>,
}

/// A change of a product's availability, as the in-process map saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    pub sku: String,
    pub available: bool,
}

/// Flips buffered per watcher: a watcher further behind is told it lagged
/// and re-reads the flag, so a small buffer loses nothing.
const WATCH_BUFFER: usize = 64;

impl StockFlag {
    pub fn new(redis_url: &SecretString) -> anyhow::Result<Self> {
        let config = RedisConfig::from_url(redis_url.expose_secret())?;
        let mut builder = Builder::from_config(config);
        builder
            .with_config(|c| {
                // Start even when Redis is down; keep reconnecting in the background.
                c.fail_fast = false;
            })
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(1);
                c.max_command_attempts = 1;
            })
            .with_performance_config(|c| {
                // Redis is an optimisation: a slow or absent Redis must cost
                // a request at most this much before the database answers.
                c.default_command_timeout = Duration::from_millis(250);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
        let redis = builder.build()?;
        let subscriber = builder.build_subscriber_client()?;
        Ok(Self {
            local: RwLock::new(HashMap::new()),
            changes: AtomicU64::new(0),
            redis,
            subscriber,
            watchers: tokio::sync::broadcast::channel(WATCH_BUFFER).0,
        })
    }

    /// Connects both Redis clients in the background and follows the
    /// announcements of other replicas until `cancel`.
    pub fn start(self: &Arc<Self>, cancel: CancellationToken) {
        self.redis.connect();
        self.subscriber.connect();
        let _resubscribe = self.subscriber.manage_subscriptions();
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut rx = me.subscriber.message_rx();
            let subscribe = {
                let sub = me.subscriber.clone();
                async move {
                    // Retried by manage_subscriptions after reconnects; the
                    // first attempt may fail while Redis is still unreachable.
                    if let Err(e) = sub.subscribe(CHANNEL).await {
                        tracing::warn!(error = %e, "subscribing to stock announcements failed; will retry on reconnect");
                    }
                }
            };
            tokio::spawn(subscribe);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    msg = rx.recv() => match msg {
                        Ok(msg) => {
                            let Some(text) = msg.value.as_str() else { continue };
                            match serde_json::from_str::<Announcement>(&text) {
                                Ok(a) => {
                                    me.set_local(&a.sku, ProductFlag { name: a.name, available: a.available });
                                }
                                Err(e) => tracing::warn!(error = %e, "ignoring malformed stock announcement"),
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "stock announcements lagged; the reconciler will catch up");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            }
        });
    }

    /// Waits up to `limit` for the Redis connection, so that the first flag
    /// writes after startup land in Redis rather than waiting for the next
    /// reconcile. Redis being down only costs this wait: the service starts.
    pub async fn wait_connected(&self, limit: Duration) {
        if tokio::time::timeout(limit, self.redis.wait_for_connect())
            .await
            .is_err()
        {
            tracing::warn!("Redis is not reachable yet; serving from PostgreSQL until it is");
        }
    }

    /// Whether this replica knows the SKU is sold out, without copying its
    /// flag: the check on the hot path of a sold-out drop.
    pub fn known_sold_out(&self, sku: &Sku) -> bool {
        self.local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(sku.as_str())
            .is_some_and(|flag| !flag.available)
    }

    /// The in-process copy. `None`: this replica has not seen the SKU
    /// (unknown, or created moments ago on another replica).
    pub fn local(&self, sku: &Sku) -> Option<ProductFlag> {
        self.local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(sku.as_str())
            .cloned()
    }

    /// The in-process availability of a SKU given as text.
    pub fn local_available(&self, sku: &str) -> Option<bool> {
        self.local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(sku)
            .map(|flag| flag.available)
    }

    /// Records what this replica learnt (from PostgreSQL or another replica)
    /// without announcing it. Returns whether the value changed.
    pub fn set_local(&self, sku: &str, flag: ProductFlag) -> bool {
        let mut map = self.local.write().unwrap_or_else(|p| p.into_inner());
        let flipped = map.get(sku).map(|f| f.available) != Some(flag.available);
        let changed = map.get(sku) != Some(&flag);
        if changed {
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
        let available = flag.available;
        map.insert(sku.to_owned(), flag);
        drop(map);
        if flipped {
            // No watcher is not an error.
            let _ = self.watchers.send(Flip {
                sku: sku.to_owned(),
                available,
            });
        }
        changed
    }

    /// Every later availability change of any product on this replica.
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<Flip> {
        self.watchers.subscribe()
    }

    /// How many watchers (open event streams) this replica feeds.
    pub fn watcher_count(&self) -> usize {
        self.watchers.receiver_count()
    }

    /// Records a fact learnt from PostgreSQL: in this replica at once, then
    /// in Redis and, through pub/sub, in the other replicas. Redis is best
    /// effort and never fails the caller. Returns whether this replica's copy
    /// changed.
    pub async fn share(&self, sku: &Sku, flag: &ProductFlag) -> bool {
        let changed = self.set_local(sku.as_str(), flag.clone());
        if let Err(e) = self.write_redis(sku, flag).await {
            tracing::debug!(error = %e, sku = %sku, "stock flag not written to Redis");
        }
        changed
    }

    /// Bumped on every change of the in-process copy; see the reconciler.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    async fn write_redis(&self, sku: &Sku, flag: &ProductFlag) -> Result<(), fred::error::Error> {
        if !self.redis.is_connected() {
            return Err(fred::error::Error::new(
                fred::error::ErrorKind::IO,
                "not connected",
            ));
        }
        let available = if flag.available { "1" } else { "0" };
        let _: () = self
            .redis
            .hset(
                redis_key(sku.as_str()),
                [("name", flag.name.as_str()), ("available", available)],
            )
            .await?;
        let announcement = serde_json::to_string(&Announcement {
            sku: sku.to_string(),
            name: flag.name.clone(),
            available: flag.available,
        })
        .unwrap_or_default();
        let _: () = self.redis.publish(CHANNEL, announcement).await?;
        Ok(())
    }

    /// Reads the shared flag from Redis. `Err` when Redis is unreachable (the
    /// caller then asks PostgreSQL); `Ok(None)` when Redis has no entry.
    pub async fn read_redis(&self, sku: &Sku) -> Result<Option<ProductFlag>, fred::error::Error> {
        if !self.redis.is_connected() {
            return Err(fred::error::Error::new(
                fred::error::ErrorKind::IO,
                "not connected",
            ));
        }
        let fields: HashMap<String, String> = self.redis.hgetall(redis_key(sku.as_str())).await?;
        match (fields.get("name"), fields.get("available")) {
            (Some(name), Some(available)) => Ok(Some(ProductFlag {
                name: name.clone(),
                available: available == "1",
            })),
            _ => Ok(None),
        }
    }

    pub fn redis_connected(&self) -> bool {
        self.redis.is_connected()
    }

    pub async fn close(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.redis.quit().await;
    }
}
