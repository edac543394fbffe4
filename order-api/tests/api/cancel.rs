//! Cancellation (docs/design.md, "Voucher lifecycle"): the unit goes back
//! in the same transaction, the flag flips on every replica and on
//! `stock.<sku>`, the voucher leaves the bucket, and the counts stay exact
//! when a cancel lands in the middle of a drop.

use std::time::Duration;

use drop_contract::{
    env::Env,
    s3::{self, Endpoint, Limits, S3Settings},
    topology,
};
use futures::StreamExt;
use lapin::{Connection, ConnectionProperties, options::BasicConsumeOptions, types::FieldTable};
use serde_json::Value;

use crate::helpers::*;

/// Until the voucher-deletion outbox is empty (the test's database is its
/// own, so every row is the test's).
async fn deletions_done(db: &TestDb, what: &str) {
    wait_until(what, Duration::from_secs(10), || async {
        db.count(
            "SELECT count(*) FROM voucher_deletions WHERE order_id <> $1",
            "",
        )
        .await
            == 0
    })
    .await;
}

/// Listens on `stock.<sku>` as a browser would, through `amq.topic`.
async fn stock_events(sku: &str) -> (Connection, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("AMQP");
    let ch = conn.create_channel().await.expect("channel");
    let queue = bound_temp_queue(&ch, "amq.topic", &topology::stock_routing_key(sku)).await;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "stock".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            if let Ok(v) = serde_json::from_slice(&delivery.data) {
                let _ = tx.send(v);
            }
        }
    });
    (conn, rx)
}

/// The voucher bucket, as the renderer writes it.
struct Bucket {
    s3: aws_sdk_s3::Client,
    name: String,
}

impl Bucket {
    fn new(who: &'static str) -> Self {
        let settings = S3Settings::from_env(&Env::process()).expect("S3 settings");
        let limits = Limits {
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            sdk_retries: true,
        };
        let s3 = s3::client(&settings, Endpoint::Internal, limits, who);
        Bucket {
            s3,
            name: settings.bucket,
        }
    }

    /// Stores a voucher as the renderer would have.
    async fn put(&self, key: &str, body: &[u8]) {
        self.s3
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("put voucher");
    }

    /// Whether `key` is gone from the bucket.
    async fn lacks(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .is_err()
    }
}

async fn units(db: &TestDb, sku: &str) -> (i32, i32) {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT stock, reserved FROM products WHERE sku = $1",
            &[&sku],
        )
        .await
        .expect("product");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_cancel_gives_the_unit_back_once_and_deletes_the_voucher() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("cancel");
    app.put_product(&sku, "Sneaker", 1).await;
    let first = app.reserve_one(&sku, 81_000, 1).await;
    let (status, body) = app.order(&customer(&sku, 2, 81_000), None).await;
    assert_eq!((status, error_code(&body)), (409, "sold_out"));

    // The voucher as the renderer would have stored it.
    let bucket = Bucket::new("cancel-test");
    let key = format!("{first}.pdf");
    bucket.put(&key, b"%PDF-1.7 test").await;

    let (_conn, mut events) = stock_events(&sku).await;
    let (status, cancelled) = app.cancel(&first).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["order_id"], first.as_str());
    // Twice: the same answer, and the unit is not given back twice.
    let (status, again) = app.cancel(&first).await;
    assert_eq!((status, &again), (200, &cancelled));
    assert_eq!(units(&db, &sku).await, (1, 0));
    let (_, view) = app.get_order(&first).await;
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["cancelled_at"], cancelled["cancelled_at"]);

    // Browsers hear it on stock.<sku>, and the product reads available.
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a stock event in time")
        .expect("event");
    assert_eq!(event["sku"], sku.as_str());
    assert_eq!(event["available"], true);
    assert_eq!(app.get_product(&sku).await.1["available"], true);

    // The voucher leaves the bucket.
    wait_until("the voucher deleted", Duration::from_secs(15), || {
        bucket.lacks(&key)
    })
    .await;
    deletions_done(&db, "the deletion row gone").await;

    // The unit goes to the next customer; then the first phone may reserve
    // again once there is a unit.
    let second = app.reserve_one(&sku, 81_000, 2).await;
    let (status, body) = app.order(&customer(&sku, 1, 81_000), None).await;
    assert_eq!((status, error_code(&body)), (409, "sold_out"), "{body}");
    assert_eq!(app.cancel(&second).await.0, 200);
    let again = app.reserve_one(&sku, 81_000, 1).await;
    assert_ne!(again, first);
    assert_eq!(units(&db, &sku).await, (1, 1));

    // A redeemed order is never cancelled; an unknown one is 404.
    let (_, token) = app.create_scanner("Counter 1").await;
    assert_eq!(app.redeem(&token, &again, "n1").await.0, 200);
    let (status, body) = app.cancel(&again).await;
    assert_eq!((status, error_code(&body)), (409, "already_redeemed"));
    assert_eq!(app.get_order(&again).await.1["status"], "redeemed");
    for unknown in ["fedcba9876543210fedcba9876543210", "nope"] {
        let (status, body) = app.cancel(unknown).await;
        assert_eq!(
            (status, error_code(&body)),
            (404, "order_not_found"),
            "{unknown}"
        );
    }
    assert!(
        leaked_order_ids(
            &app.log,
            &[drop_contract::OrderId::parse(&first).expect("id")]
        )
        .is_empty()
    );
}

#[tokio::test]
async fn a_cancel_during_a_drop_hands_its_unit_to_a_later_customer() {
    const STOCK: u32 = 10;
    let db = TestDb::create().await;
    let opts = AppOptions::new(&db.url);
    let a = App::spawn(&opts).await;
    let b = App::spawn(&opts).await;
    let apps = [&a, &b];
    let sku = unique_sku("cancel-drop");
    a.put_product(&sku, "Drop", i64::from(STOCK)).await;
    let base = 82_000;

    // The drop sells out across both replicas, and both learn it.
    let sold = futures::future::join_all((0..STOCK + 10).map(|i| {
        let app = apps[i as usize % 2];
        let body = customer(&sku, i, base);
        async move { app.order(&body, None).await }
    }))
    .await;
    let held: Vec<String> = sold
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b["order_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(held.len(), STOCK as usize);

    // Three holders cancel while more customers keep arriving on both
    // replicas, some before the units are back and some after.
    let cancels = futures::future::join_all(held[..3].iter().map(|id| a.cancel(id)));
    let arrivals = futures::future::join_all((100..130).map(|i| {
        let app = apps[i as usize % 2];
        let body = customer(&sku, i, base);
        async move { app.order(&body, None).await }
    }));
    let (cancels, arrivals) = tokio::join!(cancels, arrivals);
    assert!(cancels.iter().all(|(s, _)| *s == 200), "{cancels:?}");
    let mut won = arrivals.iter().filter(|(s, _)| *s == 201).count();
    for (status, body) in arrivals.iter().filter(|(s, _)| *s != 201) {
        assert_eq!((*status, error_code(body)), (409, "sold_out"), "{body}");
    }
    // Later customers, on the replica that did not cancel, take what is left.
    let mut i = 200;
    while won < 3 {
        assert!(i < 400, "the returned units never sold again: {won} of 3");
        let (status, body) = b.order(&customer(&sku, i, base), None).await;
        match status {
            201 => won += 1,
            409 => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => panic!("{status} {body}"),
        }
        i += 1;
    }
    assert_eq!(won, 3, "every returned unit is sold exactly once");
    let (status, body) = b.order(&customer(&sku, 999, base), None).await;
    assert_eq!((status, error_code(&body)), (409, "sold_out"));

    assert_eq!(units(&db, &sku).await, (STOCK as i32, STOCK as i32));
    let holding = db
        .count(
            "SELECT count(*) FROM orders WHERE sku = $1 AND status <> 'cancelled'",
            &sku,
        )
        .await;
    assert_eq!(holding, i64::from(STOCK));
    let r = a.admin_get(&format!("/v1/products/{sku}/stats")).await;
    let (status, stats) = split(r).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["stock"], STOCK);
    assert_eq!(stats["reserved"], STOCK);
    assert_eq!(stats["cancelled"], 3);
    assert_eq!(stats["redeemed"], 0);
}

/// A voucher the renderer stores after its order was cancelled (the orders
/// message was already queued) is deleted when its `vouchers_stored.v1`
/// arrives; an order still held turns `voucher_ready` from the same message.
#[tokio::test]
async fn a_voucher_stored_after_the_cancel_is_deleted_too() {
    let db = TestDb::create().await;
    let opts = AppOptions::new(&db.url);
    let app = App::spawn(&opts).await;
    let sku = unique_sku("late-voucher");
    app.put_product(&sku, "Late", 5).await;
    let gone = app.reserve_one(&sku, 83_000, 1).await;
    let kept = app.reserve_one(&sku, 83_000, 2).await;
    assert_eq!(app.cancel(&gone).await.0, 200);
    deletions_done(&db, "the first deletion done").await;

    // Now the renderer stores the voucher, and says so.
    let bucket = Bucket::new("late-voucher-test");
    let key = format!("{gone}.pdf");
    bucket.put(&key, b"%PDF-1.7 late").await;
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("AMQP");
    let ch = conn.create_channel().await.expect("channel");
    let body = serde_json::json!({"type": "vouchers_stored.v1", "order_ids": [gone, kept]});
    ch.basic_publish(
        opts.orders_exchange.as_str().into(),
        topology::VOUCHER_STORED_KEY.into(),
        lapin::options::BasicPublishOptions::default(),
        body.to_string().as_bytes(),
        lapin::BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");

    wait_until("the late voucher deleted", Duration::from_secs(15), || {
        bucket.lacks(&key)
    })
    .await;
    wait_until(
        "the held order voucher_ready",
        Duration::from_secs(10),
        || async { app.get_order(&kept).await.1["status"] == "voucher_ready" },
    )
    .await;
    assert_eq!(app.get_order(&gone).await.1["status"], "cancelled");
}
