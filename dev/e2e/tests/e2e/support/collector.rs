//! Messages from a test's own queues, collected in the background.

use super::*;

/// Messages from one of our queues, keyed by order id (voucher_ready) or
/// message id (dead letters), collected in the background. Reconnects after a
/// broker restart: the queue is durable and quorum, so nothing is lost.
pub struct Collector {
    state: Arc<Mutex<Collected>>,
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

#[derive(Default)]
pub struct Collected {
    /// First message per key, with when it arrived.
    pub first: HashMap<String, (Value, Instant)>,
    /// How many messages arrived per key (at-least-once: may exceed 1).
    pub count: HashMap<String, usize>,
    /// Dead letters: the `x-death` header, printed.
    pub deaths: HashMap<String, String>,
}

impl Collector {
    pub(super) fn start(queue: String) -> Collector {
        Collector::start_on(amqp_url(), queue)
    }

    /// As [`Collector::start`], from a queue on another broker (`url`).
    pub fn start_on(url: String, queue: String) -> Collector {
        let state = Arc::new(Mutex::new(Collected::default()));
        let notify = Arc::new(Notify::new());
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            let notify = Arc::clone(&notify);
            async move {
                loop {
                    if let Err(e) = collect(&url, &queue, &state, &notify).await {
                        eprintln!("collector on {queue}: {e}; reconnecting");
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        });
        Collector {
            state,
            notify,
            task,
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&Collected) -> T) -> T {
        f(&self.state.lock().expect("collector lock"))
    }

    pub fn has(&self, key: &str) -> bool {
        self.with(|c| c.first.contains_key(key))
    }

    /// Waits until a message arrived for every key, or panics listing the missing.
    pub async fn wait_all(&self, keys: &[String], limit: Duration) -> HashMap<String, Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            let missing: Vec<String> = self.with(|c| {
                keys.iter()
                    .filter(|k| !c.first.contains_key(*k))
                    .cloned()
                    .collect()
            });
            if missing.is_empty() {
                return self.with(|c| {
                    keys.iter()
                        .map(|k| (k.clone(), c.first[k].0.clone()))
                        .collect()
                });
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "after {limit:?}, {} of {} messages missing, e.g. {:?}",
                    missing.len(),
                    keys.len(),
                    &missing[..missing.len().min(5)]
                );
            }
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn collect(
    url: &str,
    queue: &str,
    state: &Mutex<Collected>,
    notify: &Notify,
) -> anyhow::Result<()> {
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await??;
    let ch = conn.create_channel().await?;
    ch.queue_declare(queue.into(), QueueDeclareOptions::durable(), quorum_args())
        .await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let body: Value = serde_json::from_slice(&delivery.data)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&delivery.data).into()));
        // Every message here has message_id set (voucher_ready: the order
        // id; test messages: their own); fall back on the body's order_id.
        let key = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string())
            .or_else(|| body["order_id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let death = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-death").map(readable));
        {
            let mut s = state.lock().expect("collector lock");
            if let Some(d) = death {
                s.deaths.insert(key.clone(), d);
            }
            *s.count.entry(key.clone()).or_default() += 1;
            s.first.entry(key).or_insert((body, Instant::now()));
        }
        notify.notify_waiters();
        delivery.ack(BasicAckOptions::default()).await?;
    }
    anyhow::bail!("consumer ended")
}

/// A header value as text, with byte strings decoded (for assertions).
fn readable(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::FieldArray(a) => {
            let items: Vec<String> = a.as_slice().iter().map(readable).collect();
            format!("[{}]", items.join(", "))
        }
        AMQPValue::FieldTable(t) => {
            let items: Vec<String> = t
                .inner()
                .iter()
                .map(|(k, v)| format!("{}: {}", k.as_str(), readable(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}
