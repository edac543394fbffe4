//! The customers' voucher subscriptions: every accepted customer binds its own
//! `voucher.<order_id>` key on `amq.topic`, as the browser page does, and the
//! simulator times each `voucher_ready` from the 201 that announced the order.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use drop_contract::topology;
use futures::StreamExt;
use lapin::{
    Channel, Connection, ConnectionProperties,
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};

/// One `voucher_ready` as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub url: String,
}

#[derive(Default)]
pub struct State {
    /// When each accepted order's 201 arrived.
    pub accepted_at: HashMap<String, Instant>,
    pub received: HashMap<String, Received>,
    /// Messages that did not match the contract, or arrived for an id this
    /// run never bound.
    pub malformed: Vec<String>,
    pub redelivered: u64,
    pub bind_errors: Vec<String>,
}

pub struct Vouchers {
    _conn: Connection,
    channels: Vec<Channel>,
    queue: String,
    next: AtomicUsize,
    pub state: Arc<Mutex<State>>,
    consumer: tokio::task::JoinHandle<()>,
}

impl Vouchers {
    pub async fn connect(amqp_url: &str) -> anyhow::Result<Arc<Self>> {
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect(
                amqp_url,
                ConnectionProperties::default().with_connection_name("drop-simulator".into()),
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to RabbitMQ timed out"))??;
        let consume = conn.create_channel().await?;
        // One private queue for the run; each customer adds its own binding.
        let queue = consume
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let queue = queue.name().to_string();
        let mut consumer = consume
            .basic_consume(
                queue.as_str().into(),
                "drop-simulator".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let mut channels = Vec::new();
        for _ in 0..4 {
            channels.push(conn.create_channel().await?);
        }
        let state = Arc::new(Mutex::new(State::default()));
        let consumer_state = Arc::clone(&state);
        let consumer = tokio::spawn(async move {
            while let Some(delivery) = consumer.next().await {
                let at = Instant::now();
                let mut s = consumer_state.lock().unwrap_or_else(|p| p.into_inner());
                let delivery = match delivery {
                    Ok(d) => d,
                    Err(e) => {
                        s.malformed.push(format!("consumer error: {e}"));
                        break;
                    }
                };
                let key = delivery.routing_key.to_string();
                match check_message(&key, &delivery.data) {
                    Ok((order_id, url)) => {
                        if !s.accepted_at.contains_key(&order_id) {
                            s.malformed
                                .push(format!("voucher for an id this run never bound: {key}"));
                        } else {
                            match s.received.entry(order_id) {
                                Entry::Occupied(_) => s.redelivered += 1,
                                Entry::Vacant(slot) => {
                                    slot.insert(Received { at, url });
                                }
                            }
                        }
                    }
                    Err(why) => s.malformed.push(format!("{key}: {why}")),
                }
            }
        });
        let _ = consume;
        Ok(Arc::new(Self {
            _conn: conn,
            channels,
            queue,
            next: AtomicUsize::new(0),
            state,
            consumer,
        }))
    }

    /// The customer behind `order_id` subscribes to its voucher key, right
    /// after its 201.
    pub fn subscribe(self: &Arc<Self>, order_id: &str) {
        let now = Instant::now();
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.accepted_at.entry(order_id.to_owned()).or_insert(now);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        let channel = self.channels[i].clone();
        let queue = self.queue.clone();
        let key = format!("{}{order_id}", topology::VOUCHER_KEY_PREFIX);
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            if let Err(e) = channel
                .queue_bind(
                    queue.as_str().into(),
                    topology::TOPIC_EXCHANGE.into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
            {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                s.bind_errors.push(format!("{key}: {e}"));
            }
        });
    }

    pub fn delivered(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .received
            .len()
    }

    /// Waits until `expected` vouchers arrived or `limit` passed.
    pub async fn wait(&self, expected: usize, limit: Duration, mut tick: impl FnMut(usize)) {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.delivered();
            tick(got);
            if got >= expected || Instant::now() >= deadline || self.consumer.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Vouchers {
    fn drop(&mut self) {
        self.consumer.abort();
    }
}

/// Checks a `voucher_ready` message against the contract in docs/design.md.
fn check_message(key: &str, body: &[u8]) -> Result<(String, String), String> {
    let id = key
        .strip_prefix("voucher.")
        .ok_or("routing key is not voucher.<id>")?;
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if value["order_id"] != id {
        return Err(format!(
            "order_id {} does not match the key",
            value["order_id"]
        ));
    }
    if value["status"] != "voucher_ready" {
        return Err(format!("status is {}", value["status"]));
    }
    match value["voucher_url"].as_str() {
        Some(url) if url.starts_with("http") => Ok((id.to_owned(), url.to_owned())),
        _ => Err("voucher_url is missing".into()),
    }
}
