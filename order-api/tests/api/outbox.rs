//! The outbox relay on the real broker. RabbitMQ "goes down" for one
//! order-api by a switchable TCP proxy in front of the shared broker, so the
//! other tests keep their connections.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use lapin::{
    Connection, ConnectionProperties, ExchangeKind,
    options::{BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions},
    types::FieldTable,
};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

/// A TCP forwarder to RabbitMQ that can be switched off: while off, it
/// refuses new connections and cuts the open ones.
struct SwitchableProxy {
    port: u16,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl SwitchableProxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (up2, gen2) = (Arc::clone(&up), Arc::clone(&generation));
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            up,
            generation,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Binds a queue to the test's orders exchange and collects the order ids
/// its messages carry.
async fn collect_orders(
    exchange: &str,
) -> (Connection, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("AMQP connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare exchange");
    let queue = bound_temp_queue(&ch, exchange, "order.#").await;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let body: serde_json::Value =
                serde_json::from_slice(&delivery.data).expect("JSON message");
            assert_eq!(delivery.routing_key.as_str(), "order.reserved");
            let _ = delivery.ack(BasicAckOptions::default()).await;
            // One message per reservation batch, named by its lowest order id.
            let ids: Vec<String> = body["orders"]
                .as_array()
                .expect("a batch of orders")
                .iter()
                .map(|o| o["order_id"].as_str().expect("order_id").to_owned())
                .collect();
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string());
            assert_eq!(message_id.as_ref(), ids.iter().min(), "{body}");
            for id in ids {
                if tx.send(id).is_err() {
                    return;
                }
            }
        }
    });
    (conn, rx)
}

async fn receive_all(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    want: &HashSet<String>,
) -> HashMap<String, u32> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !want.iter().all(|id| seen.contains_key(id)) {
        let id = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {} orders were published",
                    seen.len(),
                    want.len()
                )
            })
            .expect("consumer alive");
        *seen.entry(id).or_default() += 1;
    }
    seen
}

/// Orders are accepted while RabbitMQ is unreachable and every one of them is
/// published once it is back; a row leaves the outbox only once confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_accepted_while_rabbitmq_is_down_are_published_later() {
    let db = TestDb::create().await;
    let proxy = SwitchableProxy::start("127.0.0.1:5672".to_owned()).await;
    let mut opts = AppOptions::new(&db.url);
    opts.amqp_url = format!("amqp://drop:drop@127.0.0.1:{}/%2f", proxy.port);
    let (_conn, mut rx) = collect_orders(&opts.orders_exchange).await;
    let app = App::spawn(&opts).await;
    let sku = unique_sku("outbox");
    app.put_product(&sku, "Outbox", 100).await;

    let mut accepted = HashSet::new();
    for i in 0..10 {
        let (s, b) = app.order(&customer(&sku, i, 91), None).await;
        assert_eq!(s, 201);
        accepted.insert(b["order_id"].as_str().expect("id").to_owned());
    }
    receive_all(&mut rx, &accepted).await;

    proxy.down();
    let mut while_down = HashSet::new();
    for i in 10..60 {
        let (s, b) = app.order(&customer(&sku, i, 91), None).await;
        assert_eq!(s, 201, "orders are accepted while RabbitMQ is down: {b}");
        while_down.insert(b["order_id"].as_str().expect("id").to_owned());
    }
    // They wait in the outbox.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut want: Vec<String> = while_down.iter().cloned().collect();
    want.sort();
    assert_eq!(db.outbox_order_ids(&sku).await, want);

    proxy.up();
    let seen = receive_all(&mut rx, &while_down).await;
    assert!(while_down.iter().all(|id| seen.contains_key(id)));
    wait_until(
        "every confirmed outbox row is deleted",
        Duration::from_secs(20),
        || async {
            db.count(
                "SELECT count(*) FROM outbox WHERE payload->>'sku' = $1",
                &sku,
            )
            .await
                == 0
        },
    )
    .await;
}

/// Two replicas relay one outbox: every order is published, and rows are
/// claimed with SKIP LOCKED so that duplicates stay rare (at-least-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_publish_every_order() {
    let db = TestDb::create().await;
    let opts = AppOptions::new(&db.url);
    let (_conn, mut rx) = collect_orders(&opts.orders_exchange).await;
    let replicas = [App::spawn(&opts).await, App::spawn(&opts).await];
    let sku = unique_sku("relay");
    replicas[0].put_product(&sku, "Relay", 400).await;
    let results = futures::future::join_all((0..400u32).map(|i| {
        let app = &replicas[i as usize % 2];
        let body = customer(&sku, i, 92);
        async move { app.order(&body, None).await }
    }))
    .await;
    let accepted: HashSet<String> = results
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 201, "{b}");
            b["order_id"].as_str().expect("id").to_owned()
        })
        .collect();
    let seen = receive_all(&mut rx, &accepted).await;
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= 4,
        "replicas published the same rows: {duplicates} duplicates"
    );
}

/// The relay publishes what it claimed only after its replication fence
/// committed (order-api/src/db/fence.rs): while another session holds the
/// fence table locked, accepted orders stay in the outbox and nothing is
/// published; once the lock goes, every one of them is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_only_after_its_replication_fence_committed() {
    let db = TestDb::create().await;
    let opts = AppOptions::new(&db.url);
    let (_conn, mut rx) = collect_orders(&opts.orders_exchange).await;
    let app = App::spawn(&opts).await;
    let sku = unique_sku("fence");
    app.put_product(&sku, "Fence", 100).await;
    let (s, b) = app.order(&customer(&sku, 0, 93), None).await;
    assert_eq!(s, 201, "{b}");
    let first = HashSet::from([b["order_id"].as_str().expect("id").to_owned()]);
    receive_all(&mut rx, &first).await;

    // The fence's write waits for this lock, as a commit waits for a
    // synchronous standby that does not answer.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE replication_fence IN EXCLUSIVE MODE")
        .await
        .expect("lock the fence");
    let mut held = HashSet::new();
    for i in 1..4 {
        let (s, b) = app.order(&customer(&sku, i, 93), None).await;
        assert_eq!(s, 201, "orders are accepted while the fence waits: {b}");
        held.insert(b["order_id"].as_str().expect("id").to_owned());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Ok(Some(id)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        panic!("{id} was published before the fence committed");
    }
    let mut want: Vec<String> = held.iter().cloned().collect();
    want.sort();
    assert_eq!(
        db.outbox_order_ids(&sku).await,
        want,
        "they wait in the outbox"
    );

    lock.rollback().await.expect("release the fence");
    receive_all(&mut rx, &held).await;
    let fences: i64 = db
        .client()
        .await
        .query_one(
            "SELECT coalesce(sum(passes), 0)::bigint FROM replication_fence WHERE holder LIKE 'outbox-%'",
            &[],
        )
        .await
        .expect("fence rows")
        .get(0);
    assert!(fences >= 2, "one fence per publishing pass: {fences}");
}
