//! The customers: who sends what, and what each answer means.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::json;

/// What a customer does, decided before the drop starts.
#[derive(Debug, Clone)]
pub struct Customer {
    pub index: u32,
    pub phone: String,
    pub first_name: &'static str,
    pub last_name: &'static str,
    /// Set for customers who resend their request with the same key.
    pub idempotency_key: Option<String>,
    /// Submits a second time without a key (phone typed differently).
    pub duplicate: bool,
}

const FIRST_NAMES: &[&str] = &[
    "Aino",
    "Zoë",
    "Mikko",
    "张伟",
    "Ἀλέξανδρος",
    "محمد",
    "Siobhán",
    "Łukasz",
    "Ana",
    "Olu",
];
const LAST_NAMES: &[&str] = &[
    "Virtanen",
    "Ñúñez",
    "O'Brien-Smith",
    "Kowalski",
    "Nakamura",
    "Okafor",
    "Müller",
    "Lee",
];

/// Plans `n` customers with distinct phones, in a random arrival order.
pub fn plan(n: u32, duplicate_share: f64, retry_share: f64, run: &str, seed: u64) -> Vec<Customer> {
    let mut rng = StdRng::seed_from_u64(seed);
    // A run-specific offset keeps phones distinct within the run (n <= 10^7)
    // while varying between runs.
    let offset: u32 = rng.random_range(0..10_000_000);
    let mut customers: Vec<Customer> = (0..n)
        .map(|i| Customer {
            index: i,
            phone: format!("+35840{:07}", (offset + i) % 10_000_000),
            first_name: FIRST_NAMES[i as usize % FIRST_NAMES.len()],
            last_name: LAST_NAMES[(i as usize / FIRST_NAMES.len()) % LAST_NAMES.len()],
            idempotency_key: rng
                .random_bool(retry_share.clamp(0.0, 1.0))
                .then(|| format!("drop-{run}-{i}")),
            duplicate: rng.random_bool(duplicate_share.clamp(0.0, 1.0)),
        })
        .collect();
    customers.shuffle(&mut rng);
    customers
}

/// The answer to one `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Reserved {
        order_id: String,
        replayed: bool,
    },
    SoldOut,
    AlreadyReserved,
    /// Anything that decided nothing we can name: the kind, for the report.
    Error(String),
}

impl Answer {
    pub fn label(&self) -> &'static str {
        match self {
            Answer::Reserved {
                replayed: false, ..
            } => "reserved",
            Answer::Reserved { replayed: true, .. } => "replayed",
            Answer::SoldOut => "sold_out",
            Answer::AlreadyReserved => "already_reserved",
            Answer::Error(_) => "error",
        }
    }

    /// The same decision, ignoring whether it was a replay.
    fn same_decision(&self, other: &Answer) -> bool {
        match (self, other) {
            (Answer::Reserved { order_id: a, .. }, Answer::Reserved { order_id: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }
}

pub const LABELS: [&str; 5] = [
    "reserved",
    "replayed",
    "sold_out",
    "already_reserved",
    "error",
];

/// One accepted order, as its customer saw it.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub order_id: String,
    pub phone: String,
}

/// What one worker saw; merged at the end.
pub struct Stats {
    pub latency: BTreeMap<&'static str, Histogram<u64>>,
    pub counts: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<String, u64>,
    pub accepted: Vec<Accepted>,
    /// Customers whose decided answer was sold out.
    pub sold_out_customers: u64,
    /// Keyed retries whose answer differed from the first decided one.
    pub replay_mismatches: Vec<String>,
    pub replays_checked: u64,
    /// Duplicate submissions that were accepted although the customer held
    /// a reservation.
    pub duplicate_accepted: Vec<String>,
    /// Customers left without any decision (every attempt failed).
    pub undecided: u64,
    pub first_sold_out: Option<Instant>,
    pub last_sold_out: Option<Instant>,
    pub last_accepted: Option<Instant>,
    pub last_response: Option<Instant>,
    /// Every request and its outcome, in the order this worker saw them,
    /// when a history was asked for (`--history`).
    pub history: Vec<serde_json::Value>,
}

impl Stats {
    fn new() -> Self {
        Self {
            latency: LABELS
                .iter()
                .map(|l| {
                    (
                        *l,
                        Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
                    )
                })
                .collect(),
            counts: LABELS.iter().map(|l| (*l, 0)).collect(),
            errors: BTreeMap::new(),
            accepted: Vec::new(),
            sold_out_customers: 0,
            replay_mismatches: Vec::new(),
            replays_checked: 0,
            duplicate_accepted: Vec::new(),
            undecided: 0,
            first_sold_out: None,
            last_sold_out: None,
            last_accepted: None,
            last_response: None,
            history: Vec::new(),
        }
    }

    fn record(&mut self, answer: &Answer, latency: Duration, at: Instant) {
        let label = answer.label();
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(h) = self.latency.get_mut(label) {
            h.saturating_record(micros.max(1));
        }
        *self.counts.entry(label).or_default() += 1;
        match answer {
            Answer::Error(kind) => *self.errors.entry(kind.clone()).or_default() += 1,
            Answer::SoldOut => {
                self.first_sold_out = Some(self.first_sold_out.map_or(at, |t| t.min(at)));
                self.last_sold_out = Some(self.last_sold_out.map_or(at, |t| t.max(at)));
            }
            _ => {}
        }
        self.last_response = Some(self.last_response.map_or(at, |t| t.max(at)));
    }

    pub fn merge(&mut self, other: Stats) {
        for (label, h) in other.latency {
            if let Some(mine) = self.latency.get_mut(label) {
                let _ = mine.add(h);
            }
        }
        for (label, n) in other.counts {
            *self.counts.entry(label).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.accepted.extend(other.accepted);
        self.sold_out_customers += other.sold_out_customers;
        self.replay_mismatches.extend(other.replay_mismatches);
        self.replays_checked += other.replays_checked;
        self.duplicate_accepted.extend(other.duplicate_accepted);
        self.undecided += other.undecided;
        let min = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let max = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.first_sold_out = min(self.first_sold_out, other.first_sold_out);
        self.last_sold_out = max(self.last_sold_out, other.last_sold_out);
        self.last_accepted = max(self.last_accepted, other.last_accepted);
        self.last_response = max(self.last_response, other.last_response);
        self.history.extend(other.history);
    }

    pub fn attempts(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Live counters for the progress bar.
#[derive(Default)]
pub struct Live {
    pub attempts: AtomicU64,
    pub accepted: AtomicU64,
    pub sold_out: AtomicU64,
    pub errors: AtomicU64,
    /// Set on SIGTERM or SIGINT: no further customer arrives; the ones
    /// under way finish, and the report and history are written as usual.
    pub stop: AtomicBool,
}

/// Called with each accepted order id as soon as its 201 arrives.
pub type OnAccepted = Arc<dyn Fn(&str) + Send + Sync>;

pub struct Load {
    pub http: reqwest::Client,
    pub targets: Vec<String>,
    pub sku: String,
    pub customers: Vec<Customer>,
    pub concurrency: usize,
    /// How often a request that errored is sent again with its key.
    pub retry_errors: u32,
    /// Record every request in `Stats::history`.
    pub history: bool,
    /// Customers arriving per second (0: as fast as the workers go).
    pub rate: f64,
    pub live: Arc<Live>,
    pub on_accepted: OnAccepted,
    pub on_attempt: Arc<dyn Fn() + Send + Sync>,
}

impl Load {
    /// Runs every customer with `concurrency` in flight; returns the merged
    /// stats and when the first request was sent.
    pub async fn run(self) -> (Stats, Instant) {
        let next = Arc::new(AtomicUsize::new(0));
        let this = Arc::new(self);
        let started = Instant::now();
        let mut workers = Vec::with_capacity(this.concurrency);
        for _ in 0..this.concurrency {
            let this = Arc::clone(&this);
            let next = Arc::clone(&next);
            workers.push(tokio::spawn(async move {
                let mut stats = Stats::new();
                loop {
                    if this.live.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(customer) = this.customers.get(i) else {
                        break;
                    };
                    if this.rate > 0.0 {
                        // Customer i arrives i/rate seconds into the drop.
                        let at = started + Duration::from_secs_f64(i as f64 / this.rate);
                        tokio::time::sleep_until(at.into()).await;
                        if this.live.stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    this.customer(customer, &mut stats).await;
                }
                stats
            }));
        }
        let mut total = Stats::new();
        for worker in workers {
            match worker.await {
                Ok(stats) => total.merge(stats),
                Err(e) => {
                    *total
                        .errors
                        .entry(format!("worker_panicked: {e}"))
                        .or_default() += 1;
                }
            }
        }
        (total, started)
    }

    async fn customer(&self, c: &Customer, stats: &mut Stats) {
        let target = &self.targets[c.index as usize % self.targets.len()];
        let (first, first_at) = self
            .post_retrying(target, c, c.idempotency_key.as_deref(), stats)
            .await;
        let mut decided = (first.clone(), first_at);
        if let Some(key) = c.idempotency_key.as_deref() {
            // The retry a client sends when it did not trust the first answer.
            let (again, again_at) = self.post_retrying(target, c, Some(key), stats).await;
            match (&first, &again) {
                (Answer::Error(_), _) => decided = (again.clone(), again_at),
                (_, Answer::Error(_)) => {}
                (first, again) => {
                    stats.replays_checked += 1;
                    let replay_flag_ok = match again {
                        Answer::Reserved { replayed, .. } => *replayed,
                        _ => true,
                    };
                    if !first.same_decision(again) || !replay_flag_ok {
                        stats.replay_mismatches.push(format!(
                            "customer {}: first {first:?}, retry {again:?}",
                            c.index
                        ));
                    }
                }
            }
        }
        if c.duplicate {
            // The same person again, phone typed with a space, no key.
            let respelled = format!("{} {}", &c.phone[..4], &c.phone[4..]);
            let (dup, dup_at, _) = self.post(target, c, &respelled, None, stats).await;
            match (&decided.0, &dup) {
                (Answer::Reserved { .. }, Answer::Reserved { order_id, .. }) => {
                    stats.duplicate_accepted.push(format!(
                        "customer {} was accepted twice (second order {order_id})",
                        c.index
                    ));
                }
                (Answer::Error(_), Answer::Reserved { .. }) => decided = (dup.clone(), dup_at),
                _ => {}
            }
        }
        let (decided, _) = decided;
        match &decided {
            Answer::Reserved { order_id, .. } => {
                stats.accepted.push(Accepted {
                    order_id: order_id.clone(),
                    phone: c.phone.clone(),
                });
            }
            Answer::SoldOut => stats.sold_out_customers += 1,
            Answer::AlreadyReserved => {}
            Answer::Error(_) => stats.undecided += 1,
        }
    }

    /// `post`, sent again with the same key after an error while the
    /// budget lasts (never without a key: that could reserve twice). A 201
    /// that replays the reservation an errored attempt made is this
    /// customer's acknowledgement, announced as a fresh one would be.
    async fn post_retrying(
        &self,
        target: &str,
        c: &Customer,
        key: Option<&str>,
        stats: &mut Stats,
    ) -> (Answer, Instant) {
        let mut attempt = 0;
        loop {
            let (answer, at, retry_after) = self.post(target, c, &c.phone, key, stats).await;
            if attempt > 0 {
                if let Answer::Reserved {
                    order_id,
                    replayed: true,
                } = &answer
                {
                    stats.last_accepted = Some(at);
                    (self.on_accepted)(order_id);
                }
            }
            if !matches!(answer, Answer::Error(_)) || key.is_none() || attempt >= self.retry_errors
            {
                return (answer, at);
            }
            let backoff = Duration::from_millis(200 << attempt.min(3));
            tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(5))).await;
            attempt += 1;
        }
    }

    /// One request; also returns the `Retry-After` of an error answer.
    async fn post(
        &self,
        target: &str,
        c: &Customer,
        phone: &str,
        key: Option<&str>,
        stats: &mut Stats,
    ) -> (Answer, Instant, Option<Duration>) {
        let body = json!({
            "sku": self.sku,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "phone": phone,
        });
        let mut request = self.http.post(format!("{target}/v1/orders")).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let sent = Instant::now();
        let sent_wall = chrono::Utc::now();
        let (answer, retry_after) = match request.send().await {
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .map(Duration::from_secs);
                (classify(response).await, retry_after)
            }
            Err(e) => (Answer::Error(transport_kind(&e)), None),
        };
        let now = Instant::now();
        stats.record(&answer, now - sent, now);
        if self.history {
            stats
                .history
                .push(history_entry(c, phone, key, &answer, sent_wall, now - sent));
        }
        self.live.attempts.fetch_add(1, Ordering::Relaxed);
        match &answer {
            Answer::Reserved {
                order_id,
                replayed: false,
            } => {
                self.live.accepted.fetch_add(1, Ordering::Relaxed);
                stats.last_accepted = Some(now);
                (self.on_accepted)(order_id);
            }
            Answer::SoldOut => {
                self.live.sold_out.fetch_add(1, Ordering::Relaxed);
            }
            Answer::Error(_) => {
                self.live.errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        (self.on_attempt)();
        (answer, now, retry_after)
    }
}

async fn classify(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let body: serde_json::Value = match response.bytes().await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        Err(e) => return Answer::Error(transport_kind(&e)),
    };
    let code = body["error"].as_str().unwrap_or("");
    match (status, code) {
        (201, _) => match body["order_id"].as_str() {
            Some(id)
                if id.len() == 32
                    && body["voucher_topic"]
                        == format!("{}{id}", drop_contract::topology::VOUCHER_KEY_PREFIX) =>
            {
                Answer::Reserved {
                    order_id: id.to_owned(),
                    replayed,
                }
            }
            _ => Answer::Error("bad_201_body".into()),
        },
        (409, "sold_out") => Answer::SoldOut,
        (409, "already_reserved") => Answer::AlreadyReserved,
        (status, "") => Answer::Error(format!("http_{status}")),
        (status, code) => Answer::Error(format!("http_{status}_{code}")),
    }
}

/// One line of the history: what was sent, when, and what came back. It
/// holds full order ids (the checker looks them up), so it is a test
/// artifact, written with owner-only permissions, never a log.
fn history_entry(
    c: &Customer,
    phone: &str,
    key: Option<&str>,
    answer: &Answer,
    sent: chrono::DateTime<chrono::Utc>,
    took: Duration,
) -> serde_json::Value {
    let epoch = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros() as f64 / 1e6;
    let done = sent + chrono::Duration::from_std(took).unwrap_or_default();
    let (order_id, error) = match answer {
        Answer::Reserved { order_id, .. } => (Some(order_id.as_str()), None),
        Answer::Error(kind) => (None, Some(kind.as_str())),
        _ => (None, None),
    };
    json!({
        "customer": c.index,
        "phone": phone,
        "key": key,
        "sent": epoch(sent),
        "done": epoch(done),
        "answer": answer.label(),
        "order_id": order_id,
        "error": error,
    })
}

fn transport_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "body".into()
    } else {
        "transport".into()
    }
}

/// Counts how many planned requests the customers will send.
pub fn planned_requests(customers: &[Customer]) -> u64 {
    customers
        .iter()
        .map(|c| 1 + u64::from(c.idempotency_key.is_some()) + u64::from(c.duplicate))
        .sum()
}

/// The accepted orders by id (a replayed id counts once).
pub fn accepted_by_id(accepted: &[Accepted]) -> HashMap<&str, &Accepted> {
    accepted.iter().map(|a| (a.order_id.as_str(), a)).collect()
}
