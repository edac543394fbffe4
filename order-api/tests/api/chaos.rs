//! A dependency fails during a drop. Each test runs its own PostgreSQL or
//! Redis, so stopping it disturbs no other test.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use fred::prelude::*;
use serde_json::Value;

use crate::{
    helpers::*,
    private::{PrivatePostgres, PrivateRedis},
};

/// Redis goes away in the middle of a drop: ordering stays exact, and the
/// flag in Redis is rebuilt once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_during_a_drop_still_exact() {
    const UNITS: i64 = 200;
    const CUSTOMERS: u32 = 800;
    let mut redis = PrivateRedis::start().await;
    let db = TestDb::create().await;
    let mut opts = AppOptions::new(&db.url);
    opts.redis_url = redis.url();
    let replicas = Arc::new([App::spawn(&opts).await, App::spawn(&opts).await]);
    let sku = unique_sku("noredis");
    replicas[0].put_product(&sku, "No Redis", UNITS).await;

    let started = Arc::new(AtomicU32::new(0));
    let customers = (0..CUSTOMERS).map(|i| {
        let (replicas, started, body) = (
            Arc::clone(&replicas),
            Arc::clone(&started),
            customer(&sku, i, 81),
        );
        tokio::spawn(async move {
            started.fetch_add(1, Ordering::Relaxed);
            // Spread the drop over time so Redis dies in the middle of it.
            tokio::time::sleep(Duration::from_millis(u64::from(i % 40) * 25)).await;
            replicas[i as usize % 2].order(&body, None).await
        })
    });
    let handles: Vec<_> = customers.collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.stop_server();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("customer task"));
    }

    let accepted = results.iter().filter(|(s, _)| *s == 201).count();
    let sold_out = results
        .iter()
        .filter(|(s, b)| *s == 409 && error_code(b) == "sold_out")
        .count();
    let other: Vec<_> = results
        .iter()
        .filter(|(s, b)| *s != 201 && !(*s == 409 && error_code(b) == "sold_out"))
        .collect();
    assert!(
        other.is_empty(),
        "unexpected answers: {:?}",
        &other[..other.len().min(5)]
    );
    assert_eq!(accepted as i64, UNITS);
    assert_eq!(sold_out, (CUSTOMERS as i64 - UNITS) as usize);
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        UNITS
    );
    assert_eq!(
        db.count(
            "SELECT (stock - reserved)::bigint FROM products WHERE sku = $1",
            &sku
        )
        .await,
        0
    );
    // Without Redis, GET still answers (from the database).
    assert_eq!(replicas[1].get_product(&sku).await.1["available"], false);

    // Redis comes back empty: the reconciler writes the flag again.
    redis.start_server().await;
    let client = Client::new(
        Config::from_url(&redis.url()).expect("url"),
        None,
        None,
        None,
    );
    client.init().await.expect("connect private redis");
    let key = format!("drop:product:{sku}");
    wait_until(
        "the flag is rebuilt in Redis",
        Duration::from_secs(20),
        || {
            let (client, key) = (&client, &key);
            async move {
                client
                    .hget::<Option<String>, _, _>(key, "available")
                    .await
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some("0")
            }
        },
    )
    .await;
    client.quit().await.ok();
}

/// Status, body and Retry-After header of one answer.
type Answer = (u16, Value, Option<String>);

/// PostgreSQL restarts in the middle of a drop: the API answers 503 with
/// Retry-After while it is down, recovers by itself, and every 201 a client
/// saw is in the database. It never oversells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_a_drop() {
    const UNITS: i64 = 300;
    let pg = PrivatePostgres::start().await;
    let db = TestDb::create_on(&pg.url("drop")).await;
    let app = Arc::new(App::spawn(&AppOptions::new(&db.url)).await);
    let sku = unique_sku("pgdown");
    app.put_product(&sku, "PG restart", UNITS).await;

    let next = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (app, next, stop, seen, sku) = (
                Arc::clone(&app),
                Arc::clone(&next),
                Arc::clone(&stop),
                Arc::clone(&seen),
                sku.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let r = app
                        .http
                        .post(app.url("/v1/orders"))
                        .json(&customer(&sku, i, 82))
                        .send()
                        .await
                        .expect("order-api stays up");
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let (status, body) = split(r).await;
                    let sold_out = status == 409 && error_code(&body) == "sold_out";
                    seen.lock().expect("lock").push((status, body, retry_after));
                    if sold_out {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    // Let some orders through, then take PostgreSQL away.
    wait_until(
        "the first reservations",
        Duration::from_secs(20),
        || async { seen.lock().expect("lock").iter().any(|(s, _, _)| *s == 201) },
    )
    .await;
    pg.stop_server();
    wait_until(
        "503 unavailable with Retry-After",
        Duration::from_secs(30),
        || async {
            seen.lock()
                .expect("lock")
                .iter()
                .any(|(s, b, ra)| *s == 503 && error_code(b) == "unavailable" && ra.is_some())
        },
    )
    .await;
    // Readiness comes from a background probe that tolerates two failed
    // checks in a row (src/health.rs), so it turns 503 within a few seconds,
    // not on the first failed request.
    wait_until(
        "not ready while PostgreSQL is down",
        Duration::from_secs(20),
        || async {
            let readyz = app
                .http
                .get(app.url("/readyz"))
                .send()
                .await
                .expect("readyz");
            readyz.status() == 503
        },
    )
    .await;
    pg.start_server().await;

    // It recovers by itself, and the drop runs to sell-out.
    for c in clients {
        tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("the drop finishes after PostgreSQL is back")
            .expect("client task");
    }
    stop.store(true, Ordering::Relaxed);
    app.wait_ready().await;

    let seen = seen.lock().expect("lock").clone();
    let bad: Vec<_> = seen
        .iter()
        .filter(|(s, b, _)| {
            !matches!(
                (*s, error_code(b)),
                (201, _) | (409, "sold_out") | (503, "unavailable")
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "unexpected answers: {:?}",
        &bad[..bad.len().min(5)]
    );
    let accepted: HashSet<String> = seen
        .iter()
        .filter(|(s, _, _)| *s == 201)
        .map(|(_, b, _)| b["order_id"].as_str().expect("id").to_owned())
        .collect();
    let stored: HashSet<String> = db.order_ids(&sku).await;
    assert!(accepted.is_subset(&stored), "every 201 is in the database");
    // A 503 may hide a commit whose answer was lost, never an oversell.
    assert_eq!(stored.len() as i64, UNITS);
    assert_eq!(
        db.count("SELECT reserved::bigint FROM products WHERE sku = $1", &sku)
            .await,
        UNITS
    );
    drop(app);
}

/// While the flag says sold out, a reservation is answered without touching
/// PostgreSQL: even with the database down it is a clean 409, not a 503.
#[tokio::test]
async fn sold_out_is_answered_while_postgres_is_down() {
    let pg = PrivatePostgres::start().await;
    let db = TestDb::create_on(&pg.url("drop")).await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("pgsold");
    app.put_product(&sku, "Sold", 1).await;
    assert_eq!(app.order(&customer(&sku, 1, 83), None).await.0, 201);
    assert_eq!(app.order(&customer(&sku, 2, 83), None).await.0, 409);

    pg.stop_server();
    for i in 3..20 {
        let (status, body) = app.order(&customer(&sku, i, 83), None).await;
        assert_eq!((status, error_code(&body)), (409, "sold_out"), "{body}");
    }
    let (status, body) = app.get_product(&sku).await;
    assert_eq!(
        (status, body["available"].clone()),
        (200, Value::Bool(false))
    );
    // A request that needs the database is a clean 503.
    let (status, body) = app.put_product(&sku, "Sold", 5).await;
    assert_eq!((status, error_code(&body)), (503, "unavailable"), "{body}");
    pg.start_server().await;
    app.wait_ready().await;
}
