//! Operations: health, readiness, metrics, OpenAPI, configuration and
//! graceful shutdown.

use std::{collections::HashSet, time::Duration};

use crate::helpers::*;

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("ops");
    app.put_product(&sku, "Ops", 1).await;
    assert_eq!(app.order(&customer(&sku, 1, 71), None).await.0, 201);
    assert_eq!(app.order(&customer(&sku, 2, 71), None).await.0, 409);

    let get = |path: &'static str| {
        let app = &app;
        async move {
            let r = app.http.get(app.url(path)).send().await.expect("GET");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);

    // Metrics are on their own listener; the public one does not have them.
    let metrics = app.metrics().await;
    let (status, body) = get("/metrics").await;
    assert_eq!(status, 404, "{body}");
    for needle in [
        "http_requests_total{",
        "route=\"/v1/orders\"",
        "status=\"201\"",
        "http_request_duration_seconds_bucket{",
        "reservations_total{outcome=\"reserved\"}",
        "reservations_total{outcome=\"sold_out\"}",
        &format!("stock_remaining{{sku=\"{sku}\"}} 0"),
        "outbox_backlog",
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle}:\n{metrics}"
        );
    }
    // Routes are labelled by their template, never by the raw path.
    assert!(!metrics.contains(&format!("route=\"/v1/products/{sku}\"")));

    let (status, doc) = get("/openapi.json").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("OpenAPI is JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths: HashSet<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/v1/products/{sku}",
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/voucher",
        "/v1/client-config",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains(path), "OpenAPI lacks {path}: {paths:?}");
    }
    assert!(
        !paths.contains("/metrics"),
        "/metrics is not a public route"
    );
    assert!(doc["paths"]["/v1/orders"]["post"]["responses"]["409"].is_object());

    let (status, config) = get("/v1/client-config").await;
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&config).expect("json");
    for key in ["stomp_url", "stomp_vhost"] {
        assert!(
            config[key].is_string(),
            "client-config lacks {key}: {config}"
        );
    }
    // No broker credentials for anyone (issue #20, item 3): the page
    // connects without a login and is the broker's Web-STOMP default user.
    let keys: Vec<&str> = config
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "client-config hands out only the URL and vhost: {config}"
    );
    assert!(
        !config.to_string().to_lowercase().contains("pass"),
        "client-config names no password: {config}"
    );

    let (status, body) = get("/no/such/route").await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).expect("404 is JSON");
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn refuses_to_start_without_admin_token_unless_dev() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-api"))
        .env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits at once")
        .expect("run order-api");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ADMIN_TOKEN"),
        "the message names the variable: {stderr}"
    );

    // The dev profile starts without one.
    let db = TestDb::create().await;
    let mut opts = AppOptions::new(&db.url);
    opts.extra_env.push(("APP_PROFILE".into(), "dev".into()));
    let app = App::spawn(&opts).await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("GET")
            .status(),
        200
    );
}

/// SIGTERM during a burst: requests already in flight finish, the process
/// exits cleanly, and every 201 a client saw is in the database.
#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("term");
    app.put_product(&sku, "Term", 1_000).await;

    let http = app.http.clone();
    let url = app.url("/v1/orders");
    let burst = tokio::spawn({
        let sku = sku.clone();
        async move {
            let tasks = (0..400).map(|i| {
                let (http, url, body) = (http.clone(), url.clone(), customer(&sku, i, 72));
                async move {
                    match http.post(&url).json(&body).send().await {
                        Ok(r) => Some(split(r).await),
                        Err(_) => None, // refused after the listener closed
                    }
                }
            });
            futures::future::join_all(tasks).await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = app.terminate().await;
    assert!(
        status.success(),
        "order-api exit status after SIGTERM: {status:?}"
    );
    let results = burst.await.expect("burst");

    let accepted: HashSet<String> = results
        .iter()
        .flatten()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b["order_id"].as_str().expect("id").to_owned())
        .collect();
    for (status, body) in results.iter().flatten() {
        assert!(
            *status == 201 || *status == 503,
            "an in-flight request got {status}: {body}"
        );
    }
    let stored: HashSet<String> = db.order_ids(&sku).await;
    assert!(
        accepted.is_subset(&stored),
        "a 201 is missing from the database"
    );
}
