//! The shared harness: names, the test's private world ([`Harness`]), and
//! where its parts live:
//! - [`process`]: order-api and pdf-generator processes, logs, metrics;
//! - [`collector`]: messages from the test's own queues;
//! - [`voucher`]: voucher objects in the bucket, and the voucher checks.

mod collector;
mod process;
mod voucher;

pub use collector::*;
pub use process::*;
use voucher::s3_client;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueDeclareOptions,
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

/// The voucher signing key of every process these tests start: pdf-generator
/// signs with it, order-api verifies with its public half.
pub fn voucher_key() -> &'static drop_contract::voucher_code::SigningKey {
    static KEY: std::sync::OnceLock<drop_contract::voucher_code::SigningKey> =
        std::sync::OnceLock::new();
    KEY.get_or_init(|| drop_contract::voucher_code::SigningKey::generate("e2e").expect("key id"))
}

pub fn var(name: &str, default: &str) -> String {
    test_support::env_or(name, default)
}

pub fn bucket() -> String {
    var("S3_BUCKET", "vouchers")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives in dev/e2e of the workspace")
        .to_owned()
}

/// A workspace binary: `<NAME>_BIN` if set, else the one cargo built into
/// the same profile directory as this test (`target/debug/deps/e2e-…`).
pub fn binary(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    let path = std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .expect("the test's own path")
                .parent()
                .and_then(Path::parent)
                .expect("the test binary is in <target>/<profile>/deps")
                .join(name)
        });
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (or set {var})",
        path.display()
    );
    path
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
    /// The notifier's queue of the renderer's voucher statuses (`STORED_QUEUE`).
    pub stored_queue: String,
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
            format!("pdf-generator.voucher-stored.e2e.{id}"),
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
            stored_queue: queues[5].clone(),
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
        drop_contract::topology::bind(&self.admin().await, queue, exchange, key)
            .await
            .unwrap_or_else(|e| panic!("binding {queue} to {exchange} ({key}): {e}"));
    }

    /// Binds our voucher queue to `voucher.<order_id>` (or a pattern).
    pub async fn subscribe_voucher(&self, key: &str) {
        self.bind(
            &self.voucher_queue,
            drop_contract::topology::TOPIC_EXCHANGE,
            key,
        )
        .await;
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
            // The notifier's fan-out into the pipeline's own vhost: the
            // harness's customer side is one durable queue there, which the
            // chaos tests need to survive a broker restart. The browsers'
            // vhost is covered by the browser suite (res/web/test) and the
            // drop simulator (dev/drop-smoke.sh).
            .env("FANOUT_AMQP_URL", amqp_url())
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
            .env("VOUCHER_SIGNING_KEY", voucher_key().to_config())
            .env("VOUCHER_PUBLIC_KEYS", voucher_key().public_config())
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
        let bin = binary("order-api");
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
        let mut cmd = Command::new(binary("pdf-generator"));
        self.common_env(&mut cmd);
        cmd.env("METRICS_ADDR", addr.to_string())
            .env("ORDERS_QUEUE", &self.orders_queue)
            .env("EVENTS_QUEUE", &self.events_queue)
            .env("STORED_QUEUE", &self.stored_queue)
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
}
