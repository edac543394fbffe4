use std::time::Duration;

use fred::prelude::*;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn put_creates_then_updates_and_get_reports_availability() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("tee");

    let (status, body) = app.put_product(&sku, "Drop Tee", 3).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.put_product(&sku, "Drop Tee, black", 5).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = app.get_product(&sku).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"sku": sku, "name": "Drop Tee, black", "available": true})
    );

    let row = db
        .client()
        .await
        .query_one(
            "SELECT stock, reserved FROM products WHERE sku = $1",
            &[&sku],
        )
        .await
        .expect("product row");
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (5, 0));
}

#[tokio::test]
async fn unknown_sku_is_404() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let (status, body) = app.get_product(&unique_sku("nope")).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "unknown_sku");
    assert!(body["message"].is_string());
    let (status, body) = app.order(&customer(&unique_sku("nope"), 1, 1), None).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "unknown_sku");
}

#[tokio::test]
async fn admin_token_is_required() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("auth");
    let url = app.url(&format!("/v1/products/{sku}"));
    let body = json!({"name": "x", "stock": 1});

    let missing = app.http.put(&url).json(&body).send().await.expect("PUT");
    let (status, err) = split(missing).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&err), "unauthorized");

    let wrong = app
        .http
        .put(&url)
        .bearer_auth("test-admin-tokem")
        .json(&body)
        .send()
        .await
        .expect("PUT");
    let (status, err) = split(wrong).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&err), "unauthorized");

    // Nothing was created by the rejected calls.
    assert_eq!(app.get_product(&sku).await.0, 404);
}

#[tokio::test]
async fn stock_cannot_go_below_reserved() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("cap");
    app.put_product(&sku, "Cap", 3).await;
    for i in 0..2 {
        assert_eq!(app.order(&customer(&sku, i, 11), None).await.0, 201);
    }
    let (status, body) = app.put_product(&sku, "Cap", 1).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "stock_below_reserved");
    // Shrinking to exactly what is reserved is allowed, and sells out.
    let (status, body) = app.put_product(&sku, "Cap", 2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.get_product(&sku).await.1["available"], false);
}

async fn redis_flag(redis: &Client, sku: &str) -> Option<String> {
    redis
        .hget::<Option<String>, _, _>(format!("drop:product:{sku}"), "available")
        .await
        .expect("HGET")
}

/// The flag turns false right after the last unit, on every replica, and back
/// to true when stock grows; Redis holds the same value.
#[tokio::test]
async fn flag_flips_on_sell_out_and_restock() {
    let db = TestDb::create().await;
    let opts = AppOptions::new(&db.url);
    let a = App::spawn(&opts).await;
    let b = App::spawn(&opts).await;
    let redis = Client::new(
        Config::from_url(&redis_url()).expect("redis url"),
        None,
        None,
        None,
    );
    redis.init().await.expect("redis connect");
    let sku = unique_sku("flip");

    a.put_product(&sku, "Flip", 2).await;
    assert_eq!(a.get_product(&sku).await.1["available"], true);
    assert_eq!(redis_flag(&redis, &sku).await.as_deref(), Some("1"));

    assert_eq!(a.order(&customer(&sku, 1, 21), None).await.0, 201);
    assert_eq!(b.get_product(&sku).await.1["available"], true);
    assert_eq!(b.order(&customer(&sku, 2, 21), None).await.0, 201);

    // Replica b took the last unit: both replicas and Redis say sold out.
    assert_eq!(b.get_product(&sku).await.1["available"], false);
    assert_eq!(redis_flag(&redis, &sku).await.as_deref(), Some("0"));
    wait_until(
        "replica a sees the sell-out",
        Duration::from_secs(5),
        || async { a.get_product(&sku).await.1["available"] == false },
    )
    .await;
    let (status, body) = a.order(&customer(&sku, 3, 21), None).await;
    assert_eq!((status, error_code(&body)), (409, "sold_out"));

    // Restock on replica a: everyone sees stock again, and it can be bought.
    assert_eq!(a.put_product(&sku, "Flip", 3).await.0, 200);
    assert_eq!(redis_flag(&redis, &sku).await.as_deref(), Some("1"));
    wait_until(
        "replica b sees the restock",
        Duration::from_secs(5),
        || async { b.get_product(&sku).await.1["available"] == true },
    )
    .await;
    assert_eq!(b.order(&customer(&sku, 3, 21), None).await.0, 201);
    assert_eq!(b.get_product(&sku).await.1["available"], false);
    redis.quit().await.ok();
}
