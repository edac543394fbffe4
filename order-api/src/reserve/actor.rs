//! One reservation actor per SKU per replica: it collects the requests that
//! arrive while its previous transaction runs and hands them to [`super::tx`]
//! as one batch, then answers every caller and acts on the commit.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use deadpool_postgres::Pool;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{NewOrder, Outcome, tx::reserve_batch};
use crate::{
    db,
    domain::Sku,
    idempotency::{self, IdempotencyKey},
    stock::{ProductFlag, Stock},
};

pub(super) struct Request {
    pub(super) order: NewOrder,
    pub(super) fingerprint: Vec<u8>,
    pub(super) idempotency_key: Option<IdempotencyKey>,
    reply: oneshot::Sender<Outcome>,
}

pub struct Reserver {
    pool: Pool,
    stock: Arc<Stock>,
    outbox_wakeup: Arc<Notify>,
    max_batch: usize,
    // std Mutex: held only to look up or insert a sender, never across an await.
    actors: Mutex<HashMap<Sku, mpsc::Sender<Request>>>,
}

impl Reserver {
    pub fn new(
        pool: Pool,
        stock: Arc<Stock>,
        outbox_wakeup: Arc<Notify>,
        max_batch: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            stock,
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
        idempotency_key: Option<IdempotencyKey>,
    ) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            fingerprint: idempotency::fingerprint(&order),
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
            // The next batch starts once this one has written its orders and
            // only its COMMIT is left: its BEGIN and lock request then wait
            // in PostgreSQL's lock queue, behind this transaction, and it
            // gets the row as soon as this one commits. Batches still take
            // the lock one at a time and in arrival order.
            let (committing, next) = oneshot::channel();
            let me = Arc::clone(&self);
            let sku = sku.clone();
            let batch = std::mem::replace(&mut batch, Vec::with_capacity(self.max_batch));
            tokio::spawn(async move { me.decide(&sku, batch, committing).await });
            // Resolves when signalled, or when the batch ended without it.
            let _ = next.await;
        }
    }

    async fn decide(&self, sku: &Sku, batch: Vec<Request>, committing: oneshot::Sender<()>) {
        let started = std::time::Instant::now();
        let result = match self.pool.get().await {
            Ok(mut client) => match reserve_batch(&mut client, sku, &batch, committing).await {
                Ok(decided) => Ok(decided),
                Err(e) if db::is_unavailable(&e) => {
                    // The outcome is unknown when this happened during COMMIT:
                    // every caller gets a 503 and retries with its key, which
                    // replays the reservation if the commit survived. The
                    // connection saw its server go away (or reaches one that is
                    // no longer the primary): it leaves the pool instead of
                    // serving the next batch.
                    tracing::warn!(error = %e, "PostgreSQL unavailable during reservation");
                    drop(deadpool_postgres::Object::take(client));
                    Err(Outcome::Unavailable)
                }
                Err(e) => {
                    tracing::error!(error = %e, "reservation transaction failed");
                    Err(Outcome::Failed)
                }
            },
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
                    if remaining == 0 && self.stock.flag.local(sku).is_none_or(|f| f.available) {
                        // Flip the hint right after the commit that took the
                        // last unit, before answering, so that no request
                        // after this one needs the database to learn it.
                        self.stock
                            .record(
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

pub(super) struct Decided {
    pub(super) outcomes: Vec<Outcome>,
    pub(super) inserted: usize,
    /// The product's name and units left after this batch; `None` if unknown.
    pub(super) product: Option<(String, i32)>,
}
