//! The fast tier: the whole router driven in-process with
//! `tower::ServiceExt::oneshot`, as the axum `testing` example does, with no
//! services at all. Every address points at a closed loopback port, so what
//! is tested here is what order-api decides by itself: validation, auth,
//! error mapping, readiness and the OpenAPI document. It runs in seconds.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use drop_contract::env::Env;
use order_api::{
    broker::Broker,
    config::Config,
    db,
    health::DbHealth,
    http::{self, AppState, Inner},
    reserve::Reserver,
    stock::{Announcer, Stock, StockFlag},
    telemetry,
    vouchers::Vouchers,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const ADMIN_TOKEN: &str = "router-test-admin-token";

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The application's state with every dependency unreachable.
fn state() -> AppState {
    let pg = format!("postgres://drop:drop@127.0.0.1:{}/drop", closed_port());
    let redis = format!("redis://127.0.0.1:{}", closed_port());
    let amqp = format!("amqp://drop:drop@127.0.0.1:{}/%2f", closed_port());
    let config = Config::from_env(&Env::from_pairs(&[
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("DATABASE_URL", &pg),
        ("REDIS_URL", &redis),
        ("AMQP_URL", &amqp),
    ]))
    .expect("config");
    let pool = db::pool(&config).expect("pool");
    let broker = Arc::new(Broker::new(
        config.amqp_url.clone(),
        config.orders_exchange.clone(),
    ));
    // Built, never started: no connection is attempted.
    let flag = Arc::new(StockFlag::new(&config.redis_url).expect("flag"));
    let stock = Arc::new(Stock::new(flag, Announcer::new(Arc::clone(&broker))));
    AppState::new(Inner {
        reserver: Reserver::new(
            pool.clone(),
            Arc::clone(&stock),
            Arc::new(tokio::sync::Notify::new()),
            config.max_batch,
        ),
        pool,
        stock,
        db_health: Arc::new(DbHealth::default()),
        vouchers: Vouchers::new(&config.s3, config.voucher_url_ttl),
        stomp: config.stomp.clone(),
        metrics: telemetry::init_metrics().expect("metrics"),
        admin_token_digest: Sha256::digest(config.admin_token.expose_secret().as_bytes()).into(),
        voucher_keys: config.voucher_keys.clone(),
        deletions_wakeup: Arc::new(tokio::sync::Notify::new()),
        accepting: AtomicBool::new(true),
        draining: tokio_util::sync::CancellationToken::new(),
        stock_events_lifetime: config.stock_events_lifetime,
    })
}

async fn send(request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response =
        tokio::time::timeout(Duration::from_secs(15), http::app(state()).oneshot(request))
            .await
            .expect("answered in time")
            .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

fn post_order() -> axum::http::request::Builder {
    Request::post("/v1/orders").header(header::CONTENT_TYPE, "application/json")
}

fn order(body: Value) -> Request<Body> {
    post_order()
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// Every error is the JSON shape with a stable code.
fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["error"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let request = post_order().body(Body::from("{\"sku\": ")).unwrap();
    let (status, _, body) = send(request).await;
    assert_error(status, &body, 400, "invalid_json");
}

#[tokio::test]
async fn a_missing_or_bad_field_is_422_naming_it() {
    let (status, _, body) = send(order(
        json!({"sku": "S-1", "first_name": "Zoë", "last_name": "N"}),
    ))
    .await;
    assert_error(status, &body, 422, "invalid_field");
    assert_eq!(body["field"], "phone");
    let (status, _, body) = send(order(json!({
        "sku": "not a sku!", "first_name": "Zoë", "last_name": "N", "phone": "+358401234567"
    })))
    .await;
    assert_error(status, &body, 422, "invalid_field");
    assert_eq!(body["field"], "sku");
}

#[tokio::test]
async fn a_bad_idempotency_key_is_422() {
    let request = post_order()
        .header("Idempotency-Key", "has space")
        .body(Body::from(
            json!({"sku": "S-1", "first_name": "A", "last_name": "B", "phone": "+358401234567"})
                .to_string(),
        ))
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_error(status, &body, 422, "invalid_field");
    assert_eq!(body["field"], "Idempotency-Key");
}

#[tokio::test]
async fn a_body_over_16_kib_is_413() {
    let big =
        json!({"sku": "S-1", "first_name": "x".repeat(20_000), "last_name": "B", "phone": "1"});
    let (status, _, body) = send(order(big)).await;
    assert_error(status, &body, 413, "payload_too_large");
}

#[tokio::test]
async fn the_admin_route_needs_the_token() {
    let put = |token: Option<&str>| {
        let mut request =
            Request::put("/v1/products/S-1").header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request
            .body(Body::from(json!({"name": "N", "stock": 1}).to_string()))
            .unwrap()
    };
    for token in [None, Some("wrong-token-of-some-length")] {
        let (status, headers, body) = send(put(token)).await;
        assert_error(status, &body, 401, "unauthorized");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    // The right token gets past auth to the database, which is unreachable:
    // an outage is 503 with Retry-After, never a guess.
    let (status, headers, body) = send(put(Some(ADMIN_TOKEN))).await;
    assert_error(status, &body, 503, "unavailable");
    assert!(headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn a_valid_order_with_the_database_down_is_503_with_retry_after() {
    let (status, headers, body) = send(order(json!({
        "sku": "S-1", "first_name": "Zoë", "last_name": "Ñúñez", "phone": "+358 40 123 4567"
    })))
    .await;
    assert_error(status, &body, 503, "unavailable");
    assert_eq!(headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn unknown_routes_methods_and_ids_are_json_errors() {
    let (status, _, body) = send(Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_error(status, &body, 404, "not_found");
    let (status, _, body) = send(Request::delete("/v1/orders").body(Body::empty()).unwrap()).await;
    assert_error(status, &body, 405, "method_not_allowed");
    // Not an order id: refused before any database lookup.
    let (status, _, body) = send(
        Request::get("/v1/orders/not-an-id")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 404, "order_not_found");
}

#[tokio::test]
async fn liveness_without_readiness_until_the_probe_succeeds() {
    let (status, _, _) = send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    let (status, _, body) = send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_error(status, &body, 503, "unavailable");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let (status, _, doc) = send(Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for path in [
        "/v1/products/{sku}",
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/voucher",
        "/v1/client-config",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
}
