//! The shared harness: names, databases, processes, the broker and the checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use test_support::{BrokerObjects, TestDb};

pub use drop_contract::topology::{DEAD_LETTER_EXCHANGE as DLX, EVENTS_ROUTING_KEY as EVENTS_KEY};
pub use test_support::{amqp_url, eventually, free_port};

const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

pub fn var(name: &str, default: &str) -> String {
    test_support::env_or(name, default)
}

pub fn bucket() -> String {
    var("S3_BUCKET", "vouchers")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_owned()
}

/// A valid E.164 number (Finnish mobile range), unique per `n`.
pub fn phone(n: usize) -> String {
    test_support::phone(0, n as u32)
}

/// Runs `dev/stack.sh <args>` (chaos tests stop and start shared services).
pub async fn stack(args: &[&str]) {
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        Command::new("bash")
            .arg(workspace_root().join("dev/stack.sh"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("dev/stack.sh {args:?} took over 180 s"))
    .expect("running dev/stack.sh");
    assert!(
        out.status.success(),
        "dev/stack.sh {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("dev/stack.sh {args:?} took {:?}", started.elapsed());
}

fn quorum_args() -> FieldTable {
    drop_contract::topology::quorum_queue_args(false, false)
}

/// One test's private world: names, database, broker objects, log directory.
pub struct Harness {
    pub id: String,
    pub db: TestDb,
    pub exchange: String,
    pub orders_queue: String,
    pub events_queue: String,
    /// Our own durable queue on `amq.topic`: the customer's side.
    pub voucher_queue: String,
    /// A copy of every dead letter (bound to the fanout `orders.dlx`), so the
    /// test can see its own without consuming the shared `orders.dead`.
    pub dead_queue: String,
    pub sku: String,
    pub logs: PathBuf,
    pub http: reqwest::Client,
    /// order-api's own voucher-status queue (`VOUCHER_STATUS_QUEUE`).
    pub status_queue: String,
    admin: tokio::sync::Mutex<Option<(Connection, Channel)>>,
    s3: aws_sdk_s3::Client,
    /// Deletes the test's queues and exchange when the harness is dropped,
    /// also when an assert failed.
    _broker_objects: BrokerObjects,
}

impl Harness {
    pub async fn new(test: &str) -> Harness {
        let id = format!(
            "{test}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let logs = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("pdf-generator-e2e")
            .join(&id);
        std::fs::create_dir_all(&logs).expect("creating the log directory");
        let exchange = format!("orders.e2e.{id}");
        let queues = [
            format!("pdf-generator.orders.e2e.{id}"),
            format!("pdf-generator.s3-events.e2e.{id}"),
            format!("e2e.vouchers.{id}"),
            format!("e2e.dead.{id}"),
            format!("order-api.voucher-status.e2e.{id}"),
        ];
        let h = Harness {
            _broker_objects: BrokerObjects {
                queues: queues.to_vec(),
                exchanges: vec![exchange.clone()],
            },
            exchange,
            orders_queue: queues[0].clone(),
            events_queue: queues[1].clone(),
            voucher_queue: queues[2].clone(),
            dead_queue: queues[3].clone(),
            status_queue: queues[4].clone(),
            sku: format!("E2E-{}", &id[id.len() - 8..]),
            db: TestDb::create().await,
            logs,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("reqwest client"),
            admin: tokio::sync::Mutex::new(None),
            s3: s3_client(),
            id,
        };
        let ch = h.admin().await;
        ch.exchange_declare(
            DLX.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declaring orders.dlx");
        for queue in [&h.voucher_queue, &h.dead_queue] {
            ch.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                quorum_args(),
            )
            .await
            .expect("declaring a test queue");
        }
        h.bind(&h.dead_queue, DLX, "").await;
        eprintln!("harness {}: logs in {}", h.id, h.logs.display());
        h
    }

    pub fn database_url(&self) -> String {
        self.db.url.clone()
    }

    pub async fn admin(&self) -> Channel {
        let mut slot = self.admin.lock().await;
        if let Some((conn, ch)) = slot.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return ch.clone();
            }
        }
        let conn = eventually(
            "connecting to RabbitMQ",
            Duration::from_secs(60),
            || async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    Connection::connect(&amqp_url(), ConnectionProperties::default()),
                )
                .await
                .ok()
                .and_then(Result::ok)
            },
        )
        .await;
        let ch = conn.create_channel().await.expect("admin channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        *slot = Some((conn, ch.clone()));
        ch
    }

    pub async fn bind(&self, queue: &str, exchange: &str, key: &str) {
        self.admin()
            .await
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("binding {queue} to {exchange} ({key}): {e}"));
    }

    /// Binds our voucher queue to `voucher.<order_id>` (or a pattern).
    pub async fn subscribe_voucher(&self, key: &str) {
        self.bind(&self.voucher_queue, "amq.topic", key).await;
    }

    /// Publishes with a broker confirm.
    pub async fn publish(&self, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
        let confirm = self
            .admin()
            .await
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                props.with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("publish confirm");
        assert!(confirm.is_ack(), "broker nacked the publish");
    }

    /// Starts collecting voucher_ready messages from our queue.
    pub fn collector(&self) -> Collector {
        Collector::start(self.voucher_queue.clone())
    }

    /// Starts collecting dead letters from our copy of the dead-letter exchange.
    pub fn dead_letters(&self) -> Collector {
        Collector::start(self.dead_queue.clone())
    }

    fn common_env(&self, cmd: &mut Command) {
        cmd.env("AMQP_URL", amqp_url())
            .env("S3_ENDPOINT", var("S3_ENDPOINT", "http://127.0.0.1:7480"))
            .env(
                "S3_PUBLIC_ENDPOINT",
                var(
                    "S3_PUBLIC_ENDPOINT",
                    &var("S3_ENDPOINT", "http://127.0.0.1:7480"),
                ),
            )
            .env("S3_REGION", var("S3_REGION", "us-east-1"))
            .env("S3_BUCKET", bucket())
            .env("S3_ACCESS_KEY_ID", var("S3_ACCESS_KEY_ID", "dropdev"))
            .env(
                "S3_SECRET_ACCESS_KEY",
                var("S3_SECRET_ACCESS_KEY", "dropdevsecret"),
            )
            .env("S3_FORCE_PATH_STYLE", "true")
            .env("ORDERS_EXCHANGE", &self.exchange)
            .env("LOG_FORMAT", "text")
            // Our own crates at debug, so the scan for leaked order ids (pipeline.rs)
            // covers every line they can write.
            .env("RUST_LOG", "info,order_api=debug,pdf_generator=debug")
            .env("NO_COLOR", "1");
    }

    fn log_file(&self, name: &str) -> (PathBuf, Stdio, Stdio) {
        let path = self.logs.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("opening a log file");
        let err = file.try_clone().expect("cloning a log file handle");
        (path, Stdio::from(file), Stdio::from(err))
    }

    pub async fn order_api(&self) -> OrderApi {
        let bin = std::env::var_os("ORDER_API_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_BIN_EXE_pdf-generator")).with_file_name("order-api")
            });
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p order-api` (or set ORDER_API_BIN)",
            bin.display()
        );
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let (log, out, err) = self.log_file("order-api");
        let mut cmd = Command::new(&bin);
        self.common_env(&mut cmd);
        cmd.env("LISTEN_ADDR", addr.to_string())
            // Its metrics listener on a free port too: never the default 9091.
            .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("DATABASE_URL", self.database_url())
            .env("VOUCHER_STATUS_QUEUE", &self.status_queue)
            .env("DATABASE_POOL_SIZE", "8")
            .env("REDIS_URL", var("REDIS_URL", "redis://127.0.0.1:6379"))
            .env("APP_PROFILE", "dev")
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SHUTDOWN_TIMEOUT_SECS", "5")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawning order-api");
        let mut proc = Proc {
            name: "order-api".into(),
            child,
            log,
            addr,
        };
        proc.wait_ready(&self.http).await;
        OrderApi {
            proc,
            http: self.http.clone(),
        }
    }

    /// Starts a pdf-generator replica and waits until it consumes.
    pub async fn pdf_generator(&self, name: &str, extra: &[(&str, &str)]) -> Proc {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let (log, out, err) = self.log_file(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pdf-generator"));
        self.common_env(&mut cmd);
        cmd.env("METRICS_ADDR", addr.to_string())
            .env("ORDERS_QUEUE", &self.orders_queue)
            .env("EVENTS_QUEUE", &self.events_queue)
            .env("SHUTDOWN_TIMEOUT_SECS", "20")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawning pdf-generator");
        let mut proc = Proc {
            name: name.into(),
            child,
            log,
            addr,
        };
        proc.wait_ready(&self.http).await;
        proc
    }

    /// HEAD on the voucher object: `Some(metadata)` if it exists.
    pub async fn head_voucher(&self, order_id: &str) -> Option<HashMap<String, String>> {
        let out = self
            .s3
            .head_object()
            .bucket(bucket())
            .key(format!("{order_id}.pdf"))
            .send()
            .await;
        match out {
            Ok(o) => Some(o.metadata().cloned().unwrap_or_default()),
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(aws_sdk_s3::operation::head_object::HeadObjectError::is_not_found);
                assert!(not_found, "HEAD {order_id}.pdf: {e:?}");
                None
            }
        }
    }

    pub async fn put_object(&self, key: &str, body: &[u8], content_type: &str) {
        self.s3
            .put_object()
            .bucket(bucket())
            .key(key)
            .content_type(content_type)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"));
    }

    pub async fn delete_object(&self, key: &str) {
        let _ = self
            .s3
            .delete_object()
            .bucket(bucket())
            .key(key)
            .send()
            .await;
    }

    /// Downloads and checks a voucher the way a customer and a clerk would:
    /// the PDF parses, its text holds `texts`, its QR code is the order id.
    pub async fn verify_voucher(&self, message: &Value, order_id: &str, texts: &[&str]) {
        assert_eq!(message["order_id"], order_id, "{message}");
        assert_eq!(message["status"], "voucher_ready", "{message}");
        let url = message["voucher_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no voucher_url in {message}"));
        let response = self.http.get(url).send().await.expect("GET voucher_url");
        assert_eq!(response.status(), 200, "GET voucher_url");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some("application/pdf"));
        let pdf = response.bytes().await.expect("voucher body").to_vec();

        // A PDF library parses it: one page.
        let doc = lopdf::Document::load_mem(&pdf).expect("lopdf parses the voucher");
        assert_eq!(doc.get_pages().len(), 1, "one page");

        let path = self.logs.join(format!("{order_id}.pdf"));
        std::fs::write(&path, &pdf).expect("saving the voucher");
        let text = run_tool("pdftotext", &["-enc", "UTF-8", path_str(&path), "-"]).await;
        let text = String::from_utf8(text).expect("pdftotext prints UTF-8");
        // Text extraction decides spacing from glyph positions (and joins CJK
        // words), so compare with whitespace removed.
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        let flat = squash(&text);
        for t in texts.iter().chain(std::iter::once(&order_id)) {
            assert!(
                flat.contains(&squash(t)),
                "voucher text lacks {t:?}:\n{text}"
            );
        }

        let stem = self.logs.join(order_id);
        run_tool(
            "pdftoppm",
            &[
                "-r",
                "150",
                "-gray",
                "-singlefile",
                path_str(&path),
                path_str(&stem),
            ],
        )
        .await;
        let pgm = std::fs::read(stem.with_extension("pgm")).expect("pdftoppm wrote a PGM");
        let decoded = decode_qr(&pgm);
        assert_eq!(decoded, vec![order_id.to_owned()], "QR code content");
    }
}

fn s3_client() -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(
            var("S3_ACCESS_KEY_ID", "dropdev"),
            var("S3_SECRET_ACCESS_KEY", "dropdevsecret"),
            None,
            None,
            "e2e",
        ))
        .region(Region::new(var("S3_REGION", "us-east-1")))
        .endpoint_url(var("S3_ENDPOINT", "http://127.0.0.1:7480"))
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

async fn run_tool(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {tool} (apt-get install -y poppler-utils): {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Decodes every QR code in a binary PGM (P5) image.
fn decode_qr(pgm: &[u8]) -> Vec<String> {
    // Header: "P5" width height maxval, whitespace separated, then one byte a pixel.
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while pgm[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pgm[pos] == b'#' {
            while pgm[pos] != b'\n' {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        while !pgm[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&pgm[start..pos]).into_owned());
    }
    pos += 1;
    assert_eq!(fields[0], "P5", "not a binary PGM");
    let w: usize = fields[1].parse().expect("width");
    let h: usize = fields[2].parse().expect("height");
    assert_eq!(fields[3], "255", "8-bit PGM");
    let pixels = &pgm[pos..pos + w * h];
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    img.detect_grids()
        .into_iter()
        .map(|g| g.decode().expect("QR code decodes").1)
        .collect()
}

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub addr: SocketAddr,
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited during startup ({status}); log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 60 s; log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// True while the process runs.
    pub fn try_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal to this child (by its pid).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("child still running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("waiting for the child"),
            Err(_) => panic!(
                "{} still running after {limit:?}; log:\n{}",
                self.name,
                self.log_tail()
            ),
        }
    }

    pub async fn metrics(&self, http: &reqwest::Client) -> Metrics {
        let text = http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        Metrics(text)
    }
}

/// A Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// The sum of every series of `name` whose labels contain all of `labels`
    /// (each written as `key="value"`).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = match series.split_once('{') {
                    Some((m, r)) => (m, r),
                    None => (series, ""),
                };
                (metric == name && labels.iter().all(|want| rest.contains(want)))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }
}

/// The order-api process and its HTTP API.
pub struct OrderApi {
    pub proc: Proc,
    http: reqwest::Client,
}

impl OrderApi {
    pub async fn create_product(&self, sku: &str, name: &str, stock: i64) {
        let r = self
            .http
            .put(self.proc.url(&format!("/v1/products/{sku}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": name, "stock": stock}))
            .send()
            .await
            .expect("PUT /v1/products");
        let status = r.status();
        assert!(
            status == 201 || status == 200,
            "PUT /v1/products/{sku}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// POST /v1/orders; `Ok(order_id)` on 201, `Err(status, body)` otherwise.
    pub async fn try_order(
        &self,
        sku: &str,
        first: &str,
        last: &str,
        phone: &str,
    ) -> Result<String, String> {
        let r = self
            .http
            .post(self.proc.url("/v1/orders"))
            .json(&json!({"sku": sku, "first_name": first, "last_name": last, "phone": phone}))
            .send()
            .await
            .map_err(|e| format!("POST /v1/orders: {e}"))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status != 201 {
            return Err(format!("{status} {body}"));
        }
        body["order_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no order_id in {body}"))
    }

    pub async fn order(&self, sku: &str, first: &str, last: &str, phone: &str) -> String {
        self.try_order(sku, first, last, phone)
            .await
            .unwrap_or_else(|e| panic!("POST /v1/orders: {e}"))
    }
}

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
    fn start(queue: String) -> Collector {
        let state = Arc::new(Mutex::new(Collected::default()));
        let notify = Arc::new(Notify::new());
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            let notify = Arc::clone(&notify);
            async move {
                loop {
                    if let Err(e) = collect(&queue, &state, &notify).await {
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

async fn collect(queue: &str, state: &Mutex<Collected>, notify: &Notify) -> anyhow::Result<()> {
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&amqp_url(), ConnectionProperties::default()),
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
