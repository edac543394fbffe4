//! Test harness: every test gets its own database, its own exchange name and
//! its own SKUs, and talks to real `order-api` processes over HTTP. The
//! backing services come from the local stack (`dev/stack.sh up`); tests that
//! stop a service start a private PostgreSQL or Redis of their own, so they
//! never disturb the tests running beside them.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use drop_contract::messages::OrdersMessage;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

pub use test_support::{
    BrokerObjects, TestDb, amqp_url, connect, env_or, error_code, free_port, leaked_order_ids,
    phone, random_suffix, redis_url, split,
};

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The key the tests sign voucher codes with, as pdf-generator would; every
/// order-api they spawn verifies with its public half.
pub fn voucher_key() -> &'static drop_contract::voucher_code::SigningKey {
    static KEY: std::sync::OnceLock<drop_contract::voucher_code::SigningKey> =
        std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        drop_contract::voucher_code::SigningKey::generate("test-key").expect("key id")
    })
}

/// An AMQP URL on a loopback port where nothing listens: the relay cannot
/// publish, so outbox rows stay in the table for a test to inspect.
pub fn unreachable_amqp_url() -> String {
    format!("amqp://drop:drop@127.0.0.1:{}/%2f", free_port())
}

/// A SKU nobody else uses, so Redis keys never collide between tests.
pub fn unique_sku(prefix: &str) -> String {
    format!("{prefix}-{}", random_suffix())
}

pub fn log_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-logs");
    std::fs::create_dir_all(&dir).expect("create test log dir");
    dir
}

/// What the order-api suite asks of a test database.
pub trait TestDbExt {
    async fn order_ids(&self, sku: &str) -> std::collections::HashSet<String>;
    async fn outbox_order_ids(&self, sku: &str) -> Vec<String>;
    async fn count(&self, sql: &str, sku: &str) -> i64;
}

impl TestDbExt for TestDb {
    /// The ids of the orders stored for `sku`.
    async fn order_ids(&self, sku: &str) -> std::collections::HashSet<String> {
        self.client()
            .await
            .query("SELECT order_id FROM orders WHERE sku = $1", &[&sku])
            .await
            .expect("orders")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The order ids the outbox still holds for `sku`, one entry per
    /// appearance (a row carries a batch of orders), sorted. Every row is
    /// parsed with the contract's `OrdersMessage`, the type pdf-generator
    /// reads it with, so a payload that SQL builds wrongly fails here.
    async fn outbox_order_ids(&self, sku: &str) -> Vec<String> {
        let rows = self
            .client()
            .await
            .query("SELECT payload::text FROM outbox", &[])
            .await
            .expect("outbox");
        let mut ids: Vec<String> = rows
            .iter()
            .map(|r| {
                let payload: &str = r.get(0);
                OrdersMessage::from_slice(payload.as_bytes())
                    .unwrap_or_else(|e| panic!("an outbox row is not an OrdersMessage: {e}"))
            })
            .filter(|m| {
                let OrdersMessage::BatchV1(batch) = m;
                batch.sku == sku
            })
            .flat_map(|m| m.into_orders())
            .map(|o| o.order_id.as_str().to_owned())
            .collect();
        ids.sort();
        ids
    }

    async fn count(&self, sql: &str, sku: &str) -> i64 {
        let row = self
            .client()
            .await
            .query_one(sql, &[&sku])
            .await
            .expect("count query");
        row.get(0)
    }
}

/// Options for one order-api process.
#[derive(Clone)]
pub struct AppOptions {
    pub database_url: String,
    pub redis_url: String,
    pub amqp_url: String,
    pub orders_exchange: String,
    pub extra_env: Vec<(String, String)>,
}

impl AppOptions {
    pub fn new(database_url: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            redis_url: redis_url(),
            amqp_url: amqp_url(),
            orders_exchange: format!("test.orders.{}", random_suffix()),
            extra_env: Vec::new(),
        }
    }
}

/// One running `order-api` process; killed when dropped, and its broker
/// objects deleted.
pub struct App {
    pub base: String,
    /// The metrics listener's base URL (`METRICS_ADDR`).
    pub metrics_base: String,
    pub http: reqwest::Client,
    child: Child,
    pub log: PathBuf,
    _broker_objects: BrokerObjects,
}

impl App {
    pub async fn spawn(opts: &AppOptions) -> Self {
        let log = log_dir().join(format!("order-api-{}.log", random_suffix()));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file handle");
        // A port free right now; readiness below shows the process took it.
        let addr = format!("127.0.0.1:{}", free_port());
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        // Each process its own voucher-status queue, bound to its own
        // exchange: deleted with the process, never shared between tests.
        let status_queue = format!("test.voucher-status.{}", random_suffix());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-api"));
        cmd.env_clear()
            .env("PATH", env_or("PATH", "/usr/bin:/bin"))
            .env("LISTEN_ADDR", &addr)
            .env("METRICS_ADDR", &metrics_addr)
            .env("DATABASE_URL", &opts.database_url)
            .env("DATABASE_POOL_SIZE", "8")
            .env("REDIS_URL", &opts.redis_url)
            .env("AMQP_URL", &opts.amqp_url)
            .env("ORDERS_EXCHANGE", &opts.orders_exchange)
            .env("VOUCHER_STATUS_QUEUE", &status_queue)
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("STOCK_RECONCILE_SECS", "1")
            .env("SHUTDOWN_TIMEOUT_SECS", "5")
            .env("RUST_LOG", "info")
            .env("VOUCHER_PUBLIC_KEYS", voucher_key().public_config())
            .envs(opts.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn order-api");
        let app = Self {
            base: format!("http://{addr}"),
            metrics_base: format!("http://{metrics_addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
            child,
            log,
            _broker_objects: BrokerObjects {
                queues: vec![status_queue],
                exchanges: Vec::new(),
            },
        };
        app.wait_ready().await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The public listener's host:port, for raw sockets.
    pub fn host_port(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// GET /metrics from the metrics listener.
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.metrics_base))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200);
        r.text().await.expect("metrics body")
    }

    pub async fn wait_ready(&self) {
        // 60 s: on a loaded machine (a cold CI run, four tests starting
        // replicas at once) 30 s was once not enough.
        for _ in 0..600 {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("order-api never became ready; see {}", self.log.display());
    }

    pub async fn put_product(&self, sku: &str, name: &str, stock: i64) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(&format!("/v1/products/{sku}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": name, "stock": stock}))
            .send()
            .await
            .expect("PUT product");
        split(r).await
    }

    pub async fn get_product(&self, sku: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(&format!("/v1/products/{sku}")))
            .send()
            .await
            .expect("GET product");
        split(r).await
    }

    pub async fn order(&self, body: &Value, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(self.url("/v1/orders")).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        split(req.send().await.expect("POST order")).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("order-api is running")
    }

    /// SIGTERM, then wait for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("order-api exits after SIGTERM")
            .expect("wait")
    }
}

pub fn customer(sku: &str, i: u32, base: u32) -> Value {
    json!({
        "sku": sku,
        "first_name": "Zoë",
        "last_name": format!("Ñúñez {i}"),
        "phone": phone(base, i),
    })
}

pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    test_support::eventually(what, timeout, || {
        let check = f();
        async move { check.await.then_some(()) }
    })
    .await
}

/// The voucher lifecycle, as a scanner, a customer and the operator drive it.
impl App {
    /// Reserves one unit for phone number `i` of `base`; returns the order id.
    pub async fn reserve_one(&self, sku: &str, base: u32, i: u32) -> String {
        let (status, created) = self.order(&customer(sku, i, base), None).await;
        assert_eq!(status, 201, "{created}");
        created["order_id"].as_str().expect("order_id").to_owned()
    }

    /// `POST /v1/scanners`: the scanner's id and token.
    pub async fn create_scanner(&self, name: &str) -> (String, String) {
        let (status, body) = split(
            self.http
                .post(self.url("/v1/scanners"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"name": name}))
                .send()
                .await
                .expect("POST scanner"),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["name"], name);
        (
            body["scanner_id"].as_str().expect("id").to_owned(),
            body["token"].as_str().expect("token").to_owned(),
        )
    }

    /// `POST /v1/redemptions` with a scanner token.
    pub async fn redeem(&self, token: &str, code: &str, nonce: &str) -> (u16, Value) {
        split(
            self.http
                .post(self.url("/v1/redemptions"))
                .bearer_auth(token)
                .json(&json!({"code": code, "nonce": nonce}))
                .send()
                .await
                .expect("POST redemption"),
        )
        .await
    }

    /// `DELETE /v1/orders/{id}`.
    pub async fn cancel(&self, order_id: &str) -> (u16, Value) {
        split(
            self.http
                .delete(self.url(&format!("/v1/orders/{order_id}")))
                .send()
                .await
                .expect("DELETE order"),
        )
        .await
    }

    /// `GET /v1/orders/{id}`.
    pub async fn get_order(&self, order_id: &str) -> (u16, Value) {
        split(
            self.http
                .get(self.url(&format!("/v1/orders/{order_id}")))
                .send()
                .await
                .expect("GET order"),
        )
        .await
    }

    /// An admin GET.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin GET")
    }
}

/// The signed code pdf-generator would print for this order.
pub fn signed_code(order_id: &str, sku: &str, nbf: Option<i64>, exp: Option<i64>) -> String {
    voucher_key().sign(&drop_contract::voucher_code::VoucherClaims {
        oid: drop_contract::OrderId::parse(order_id).expect("order id"),
        sku: sku.to_owned(),
        iat: chrono::Utc::now().timestamp(),
        nbf,
        exp,
    })
}

/// A server-named, exclusive queue on `ch`, bound to `exchange` with `key`:
/// what a test listens on, gone with its connection.
pub async fn bound_temp_queue(ch: &lapin::Channel, exchange: &str, key: &str) -> String {
    use lapin::{
        options::{QueueBindOptions, QueueDeclareOptions},
        types::FieldTable,
    };
    let queue = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare queue");
    ch.queue_bind(
        queue.name().clone(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    queue.name().to_string()
}
