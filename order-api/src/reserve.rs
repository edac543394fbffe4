//! Where a unit is reserved.
//!
//! One actor per SKU per replica collects the reservation requests that arrive
//! while its previous transaction is running, and decides the whole batch in
//! one PostgreSQL transaction:
//!
//! 1. `SELECT … FROM products WHERE sku = $1 FOR UPDATE` takes the product's
//!    row lock (never a table lock). Every writer of orders for this SKU, on
//!    every replica, goes through this lock, so the following reads cannot be
//!    raced.
//! 2. It reads which of the batch's phones already hold a reservation and
//!    which Idempotency-Keys were already decided.
//! 3. It decides each request in arrival order: replay, already reserved,
//!    reserved (while units remain), or sold out.
//! 4. One statement inserts the orders and their outbox rows and bumps
//!    `reserved`; the keyed outcomes are stored; then COMMIT.
//!
//! Only after COMMIT returns does any caller get its answer, so a 201 always
//! means the order is durable. At low load a batch holds one request and adds
//! no delay; under a drop, batches grow to `RESERVE_MAX_BATCH` and one fsync
//! covers them all, which is what lifts throughput past the single-row limit.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::{
    db,
    domain::{OrderId, PersonName, Phone, Sku},
    stock_flag::{ProductFlag, StockFlag},
};

/// A validated reservation request.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub sku: Sku,
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub phone: Phone,
}

impl NewOrder {
    /// A digest of the normalised request, to recognise "the same body" for
    /// Idempotency-Key replays even when the phone was typed differently.
    pub fn fingerprint(&self) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.sku.as_str(),
            self.first_name.as_str(),
            self.last_name.as_str(),
            self.phone.as_str(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().to_vec()
    }
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reserved {
        order_id: OrderId,
        replayed: bool,
    },
    SoldOut,
    AlreadyReserved,
    UnknownSku,
    IdempotencyMismatch,
    /// PostgreSQL could not be reached; nothing was decided.
    Unavailable,
    /// A bug or an unexpected database error; logged where it happened.
    Failed,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Reserved {
                replayed: false, ..
            } => "reserved",
            Outcome::Reserved { replayed: true, .. } => "replayed",
            Outcome::SoldOut => "sold_out",
            Outcome::AlreadyReserved => "already_reserved",
            Outcome::UnknownSku => "unknown_sku",
            Outcome::IdempotencyMismatch => "idempotency_mismatch",
            Outcome::Unavailable => "unavailable",
            Outcome::Failed => "failed",
        }
    }

    /// The value stored for an Idempotency-Key, for outcomes worth replaying.
    fn stored(&self) -> Option<(&'static str, Option<&str>)> {
        match self {
            Outcome::Reserved { order_id, .. } => Some(("reserved", Some(order_id.as_str()))),
            Outcome::SoldOut => Some(("sold_out", None)),
            Outcome::AlreadyReserved => Some(("already_reserved", None)),
            _ => None,
        }
    }

    /// Rebuilds an outcome from the idempotency store.
    pub fn from_stored(outcome: &str, order_id: Option<&str>) -> Self {
        match (outcome, order_id.and_then(OrderId::parse)) {
            ("reserved", Some(order_id)) => Outcome::Reserved {
                order_id,
                replayed: true,
            },
            ("sold_out", _) => Outcome::SoldOut,
            ("already_reserved", _) => Outcome::AlreadyReserved,
            _ => Outcome::Failed,
        }
    }
}

struct Request {
    order: NewOrder,
    fingerprint: Vec<u8>,
    idempotency_key: Option<String>,
    reply: oneshot::Sender<Outcome>,
}

pub struct Reserver {
    pool: Pool,
    flag: Arc<StockFlag>,
    outbox_wakeup: Arc<Notify>,
    max_batch: usize,
    // std Mutex: held only to look up or insert a sender, never across an await.
    actors: Mutex<HashMap<Sku, mpsc::Sender<Request>>>,
}

impl Reserver {
    pub fn new(
        pool: Pool,
        flag: Arc<StockFlag>,
        outbox_wakeup: Arc<Notify>,
        max_batch: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            flag,
            outbox_wakeup,
            max_batch,
            actors: Mutex::new(HashMap::new()),
        })
    }

    /// Queues a request on its SKU's actor and waits for the decision.
    ///
    /// Callers must only pass SKUs known to exist, so the set of actors stays
    /// bounded by the product catalogue.
    pub async fn reserve(
        self: &Arc<Self>,
        order: NewOrder,
        idempotency_key: Option<String>,
    ) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            fingerprint: order.fingerprint(),
            order,
            idempotency_key,
            reply,
        };
        let sender = self.actor(&request.order.sku);
        if sender.send(request).await.is_err() {
            tracing::error!("reservation actor is gone");
            return Outcome::Failed;
        }
        // If the actor drops the sender without answering (it cannot, short
        // of a panic), report a failure rather than hang.
        answer.await.unwrap_or(Outcome::Failed)
    }

    fn actor(self: &Arc<Self>, sku: &Sku) -> mpsc::Sender<Request> {
        let mut actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = actors.get(sku) {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        // The queue bound is backpressure: beyond it, callers wait in `send`.
        let (tx, rx) = mpsc::channel(self.max_batch * 4);
        actors.insert(sku.clone(), tx.clone());
        let me = Arc::clone(self);
        let sku = sku.clone();
        tokio::spawn(async move { me.run_actor(sku, rx).await });
        tx
    }

    async fn run_actor(self: Arc<Self>, sku: Sku, mut rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        // `recv_many` waits for at least one request, then takes everything
        // already queued: no fixed linger, so a lone request is not delayed.
        while rx.recv_many(&mut batch, self.max_batch).await > 0 {
            metrics::histogram!("reservation_batch_size").record(batch.len() as f64);
            self.decide(&sku, std::mem::take(&mut batch)).await;
        }
    }

    async fn decide(&self, sku: &Sku, batch: Vec<Request>) {
        let started = std::time::Instant::now();
        let result = match self.pool.get().await {
            Ok(mut client) => reserve_batch(&mut client, sku, &batch).await.map_err(|e| {
                if db::is_unavailable(&e) {
                    tracing::warn!(error = %e, "PostgreSQL unavailable during reservation");
                    Outcome::Unavailable
                } else {
                    tracing::error!(error = %e, "reservation transaction failed");
                    Outcome::Failed
                }
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no PostgreSQL connection for reservation");
                Err(if db::pool_unavailable(&e) {
                    Outcome::Unavailable
                } else {
                    Outcome::Failed
                })
            }
        };
        metrics::histogram!("reservation_batch_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(decided) => {
                if decided.inserted > 0 {
                    self.outbox_wakeup.notify_one();
                }
                if let Some((name, remaining)) = decided.product {
                    metrics::gauge!("stock_remaining", "sku" => sku.to_string())
                        .set(f64::from(remaining));
                    if remaining == 0 && self.flag.local(sku).is_none_or(|f| f.available) {
                        // Flip the hint right after the commit that took the
                        // last unit, before answering, so that no request
                        // after this one needs the database to learn it.
                        self.flag
                            .publish(
                                sku,
                                ProductFlag {
                                    name,
                                    available: false,
                                },
                            )
                            .await;
                    }
                }
                for (request, outcome) in batch.into_iter().zip(decided.outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(outcome) => {
                for request in batch {
                    let _ = request.reply.send(outcome.clone());
                }
            }
        }
    }
}

struct Decided {
    outcomes: Vec<Outcome>,
    inserted: usize,
    /// The product's name and units left after this batch; `None` if unknown.
    product: Option<(String, i32)>,
}

async fn reserve_batch(
    client: &mut deadpool_postgres::Client,
    sku: &Sku,
    batch: &[Request],
) -> Result<Decided, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let product = tx
        .query_opt(
            "SELECT name, stock - reserved FROM products WHERE sku = $1 FOR UPDATE",
            &[&sku.as_str()],
        )
        .await?;
    let Some(product) = product else {
        tx.rollback().await?;
        return Ok(Decided {
            outcomes: vec![Outcome::UnknownSku; batch.len()],
            inserted: 0,
            product: None,
        });
    };
    let name: String = product.get(0);
    let mut remaining: i32 = product.get(1);

    let phones: Vec<&str> = batch.iter().map(|r| r.order.phone.as_str()).collect();
    let keys: Vec<&str> = batch
        .iter()
        .filter_map(|r| r.idempotency_key.as_deref())
        .collect();
    // Both reads run after the lock was granted, so under READ COMMITTED they
    // see every order committed by the previous holder of the lock.
    let sku_str = sku.as_str();
    let held_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&sku_str, &phones];
    let stored_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&keys];
    let (held, stored) = tokio::try_join!(
        tx.query(
            "SELECT phone FROM orders WHERE sku = $1 AND phone = ANY($2)",
            &held_params,
        ),
        tx.query(
            "SELECT key, request_hash, outcome, order_id FROM idempotency_keys WHERE key = ANY($1)",
            &stored_params,
        ),
    )?;
    let mut taken: HashSet<String> = held.iter().map(|r| r.get(0)).collect();
    let stored: HashMap<String, (Vec<u8>, Outcome)> = stored
        .iter()
        .map(|r| {
            let key: String = r.get(0);
            let outcome: String = r.get(2);
            let order_id: Option<String> = r.get(3);
            (
                key,
                (
                    r.get(1),
                    Outcome::from_stored(&outcome, order_id.as_deref()),
                ),
            )
        })
        .collect();

    let mut outcomes = Vec::with_capacity(batch.len());
    // Keys decided earlier in this batch: (fingerprint, index in outcomes).
    let mut keyed_here: HashMap<&str, (&[u8], usize)> = HashMap::new();
    let mut new_orders: Vec<(OrderId, &NewOrder)> = Vec::new();
    let mut to_store: Vec<(&str, &[u8], usize)> = Vec::new();
    for (i, request) in batch.iter().enumerate() {
        if let Some(key) = request.idempotency_key.as_deref() {
            let earlier = stored
                .get(key)
                .map(|(hash, outcome)| (hash.as_slice(), outcome.clone()))
                .or_else(|| {
                    keyed_here.get(key).map(|(hash, j)| {
                        let replay = match &outcomes[*j] {
                            Outcome::Reserved { order_id, .. } => Outcome::Reserved {
                                order_id: order_id.clone(),
                                replayed: true,
                            },
                            other => other.clone(),
                        };
                        (*hash, replay)
                    })
                });
            if let Some((hash, outcome)) = earlier {
                outcomes.push(if hash == request.fingerprint.as_slice() {
                    outcome
                } else {
                    Outcome::IdempotencyMismatch
                });
                continue;
            }
        }
        let phone = request.order.phone.as_str();
        let outcome = if taken.contains(phone) {
            Outcome::AlreadyReserved
        } else if remaining <= 0 {
            Outcome::SoldOut
        } else {
            remaining -= 1;
            taken.insert(phone.to_owned());
            let order_id = OrderId::generate();
            new_orders.push((order_id.clone(), &request.order));
            Outcome::Reserved {
                order_id,
                replayed: false,
            }
        };
        if let Some(key) = request.idempotency_key.as_deref() {
            keyed_here.insert(key, (request.fingerprint.as_slice(), i));
            to_store.push((key, request.fingerprint.as_slice(), i));
        }
        outcomes.push(outcome);
    }

    if !new_orders.is_empty() {
        insert_orders(&tx, sku, &name, &new_orders, Utc::now()).await?;
    }
    if !to_store.is_empty() {
        let mut keys = Vec::with_capacity(to_store.len());
        let mut hashes = Vec::with_capacity(to_store.len());
        let mut kinds = Vec::with_capacity(to_store.len());
        let mut order_ids = Vec::with_capacity(to_store.len());
        for (key, hash, i) in &to_store {
            if let Some((kind, order_id)) = outcomes[*i].stored() {
                keys.push(*key);
                hashes.push(*hash);
                kinds.push(kind);
                order_ids.push(order_id);
            }
        }
        tx.execute(
            "INSERT INTO idempotency_keys (key, request_hash, outcome, order_id)
             SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[])
             ON CONFLICT (key) DO NOTHING",
            &[&keys, &hashes, &kinds, &order_ids],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Decided {
        outcomes,
        inserted: new_orders.len(),
        product: Some((name, remaining)),
    })
}

/// Inserts the orders and their outbox rows, and takes the units, in one
/// statement. The CHECK `reserved <= stock` would abort the transaction if
/// the arithmetic above were ever wrong: the database refuses to oversell.
async fn insert_orders(
    tx: &deadpool_postgres::Transaction<'_>,
    sku: &Sku,
    product_name: &str,
    orders: &[(OrderId, &NewOrder)],
    created_at: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<&str> = orders.iter().map(|(id, _)| id.as_str()).collect();
    let firsts: Vec<&str> = orders.iter().map(|(_, o)| o.first_name.as_str()).collect();
    let lasts: Vec<&str> = orders.iter().map(|(_, o)| o.last_name.as_str()).collect();
    let phones: Vec<&str> = orders.iter().map(|(_, o)| o.phone.as_str()).collect();
    let count = i32::try_from(orders.len()).unwrap_or(i32::MAX);
    tx.execute(
        "WITH new_orders AS (
             INSERT INTO orders (order_id, sku, first_name, last_name, phone, created_at)
             SELECT o.id, $1, o.first, o.last, o.phone, $6
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS o(id, first, last, phone)
             RETURNING order_id, first_name, last_name, created_at
         ), new_outbox AS (
             INSERT INTO outbox (order_id, payload)
             SELECT order_id, jsonb_build_object(
                 'order_id', order_id, 'sku', $1::text, 'product_name', $7::text,
                 'first_name', first_name, 'last_name', last_name,
                 'created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
             FROM new_orders
         )
         UPDATE products SET reserved = reserved + $8, updated_at = now() WHERE sku = $1",
        &[&sku.as_str(), &ids, &firsts, &lasts, &phones, &created_at, &product_name, &count],
    )
    .await?;
    Ok(())
}
