//! What the stack tests of both services share.
//!
//! Every test gets its own names (database, exchange, queues, SKUs), so the
//! tests of a suite run in parallel against one stack, and everything a test
//! creates is removed when its guard is dropped, so a failing assert leaks
//! nothing. The stack is the one `dev/stack.sh up` starts; its settings come
//! from the environment that `make test` sources (.stack/env), with the
//! loopback defaults of docs/design.md.

use std::{future::Future, path::Path, time::Duration};

use drop_contract::OrderId;
use lapin::{
    Connection, ConnectionProperties,
    options::{ExchangeDeleteOptions, QueueDeleteOptions},
};

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The stack's maintenance database URL: the `drop` role may create databases.
pub fn admin_database_url() -> String {
    env_or("DATABASE_URL", "postgres://drop:drop@127.0.0.1:5432/drop")
}

pub fn redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

pub fn amqp_url() -> String {
    env_or("AMQP_URL", "amqp://drop:drop@127.0.0.1:5672/%2f")
}

pub fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A TCP port that is free right now (bind to 0, read it back, release it).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A distinct, valid Finnish mobile number for customer `i` of a test whose
/// numbers start at `base`.
pub fn phone(base: u32, i: u32) -> String {
    format!("+35840{:07}", (base.wrapping_mul(7919) + i) % 10_000_000)
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replaces the database name (the path) of a postgres URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("DATABASE_URL has a path");
    format!("{base}/{db}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Runs `cleanup` to completion from a `Drop`: on a thread and runtime of
/// its own, because Drop cannot await and the test's runtime may be
/// shutting down (a failed assert unwinds through it).
fn block_on_own_thread<F>(cleanup: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let worker = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let _ = tokio::time::timeout(Duration::from_secs(15), cleanup).await;
        });
    });
    let _ = worker.join();
}

/// A freshly created, empty database, dropped again when this is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn create_on(admin_url: &str) -> Self {
        let name = format!("t_{}", random_suffix());
        connect(admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        Self {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_owned(),
        }
    }

    pub async fn create() -> Self {
        Self::create_on(&admin_database_url()).await
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        block_on_own_thread(async move {
            if let Ok((client, conn)) =
                tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    }
}

/// Broker objects a test created, deleted when this is dropped.
#[derive(Default)]
pub struct BrokerObjects {
    pub queues: Vec<String>,
    pub exchanges: Vec<String>,
}

impl Drop for BrokerObjects {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        if queues.is_empty() && exchanges.is_empty() {
            return;
        }
        block_on_own_thread(async move {
            let Ok(conn) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await
            else {
                return;
            };
            if let Ok(ch) = conn.create_channel().await {
                for q in &queues {
                    let _ = ch
                        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                for x in &exchanges {
                    let _ = ch
                        .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
            }
            let _ = conn.close(200, "bye".into()).await;
        });
    }
}

/// The lines of `log` that contain any of these order ids in full. The order
/// id is the customer's capability: no service may log it whole.
pub fn leaked_order_ids(log: &Path, ids: &[OrderId]) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|line| ids.iter().any(|id| line.contains(id.as_str())))
        .map(str::to_owned)
        .collect()
}

/// Status and body of an HTTP response; a body that is not JSON becomes a
/// JSON string.
pub async fn split(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}

pub fn error_code(v: &serde_json::Value) -> &str {
    v["error"].as_str().unwrap_or("<no error code>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_distinct_and_valid_e164() {
        let phones: std::collections::HashSet<String> = (0..1000).map(|i| phone(7, i)).collect();
        assert_eq!(phones.len(), 1000);
        assert!(
            phones
                .iter()
                .all(|p| p.len() == 13 && p.starts_with("+35840"))
        );
    }

    #[test]
    fn finds_a_full_order_id_but_not_its_redacted_form() {
        let id = OrderId::generate();
        let dir = std::env::temp_dir().join(format!("leak-{}", random_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("service.log");
        std::fs::write(&log, format!("ok order={id}\nbad order={}\n", id.as_str())).unwrap();
        let leaks = leaked_order_ids(&log, std::slice::from_ref(&id));
        assert_eq!(leaks, [format!("bad order={}", id.as_str())]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
