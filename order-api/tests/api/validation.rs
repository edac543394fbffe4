//! Every validation error of the API: a JSON `{"error", "message"}` body with
//! the right status, the field named, and nothing reserved.

use serde_json::{Value, json};

use crate::helpers::*;

async fn post_raw(app: &App, body: impl Into<reqwest::Body>) -> (u16, Value) {
    split(
        app.http
            .post(app.url("/v1/orders"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST"),
    )
    .await
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_reserve_nothing() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("val");
    app.put_product(&sku, "Validated", 5).await;

    // Malformed JSON: 400 invalid_json.
    for raw in ["{\"sku\": ", "not json", "{\"sku\": \"a\"} trailing", ""] {
        let (status, err) = post_raw(&app, raw.to_owned()).await;
        assert_eq!(
            (status, error_code(&err)),
            (400, "invalid_json"),
            "{raw:?}: {err}"
        );
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // Bad values: 422 invalid_field naming the field.
    let good = customer(&sku, 1, 41);
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().expect("object").remove(field);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("first_name", json!("")), "first_name"),
        (with("first_name", json!("a".repeat(101))), "first_name"),
        (with("first_name", json!("Tab\there")), "first_name"),
        (with("last_name", json!("New\nline")), "last_name"),
        (with("last_name", json!("Null\u{0}byte")), "last_name"),
        (with("last_name", json!(42)), "last_name"),
        (with("phone", json!("12345")), "phone"),
        (with("phone", json!("0401234567")), "phone"),
        (with("phone", json!("+1 555 0100 not a number")), "phone"),
        (with("phone", json!("+999 123")), "phone"),
        (with("sku", json!("has space")), "sku"),
        (with("sku", json!("")), "sku"),
        (without("phone"), "phone"),
        (without("first_name"), "first_name"),
        (json!([1, 2, 3]), "body"),
    ];
    for (body, field) in &cases {
        let (status, err) = app.order(body, None).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(error_code(&err), "invalid_field", "{body}: {err}");
        assert_eq!(err["field"], *field, "{body}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // Over 16 KiB: 413, still JSON.
    let mut huge = good.clone();
    huge["first_name"] = json!("x".repeat(17 * 1024));
    let (status, err) = post_raw(&app, serde_json::to_vec(&huge).expect("json")).await;
    assert_eq!(
        (status, error_code(&err)),
        (413, "payload_too_large"),
        "{err}"
    );

    // A bad Idempotency-Key is named too.
    let (status, err) = app.order(&good, Some("key with spaces")).await;
    assert_eq!((status, error_code(&err)), (422, "invalid_field"));
    assert_eq!(err["field"], "Idempotency-Key");

    // None of the above reserved anything.
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        0
    );

    // Names in any script, up to 100 characters, are accepted.
    let names = [
        ("Zoë", "Ñúñez"),
        ("张", "伟"),
        ("Οδυσσέας", "Ελύτης"),
        ("a", &*"b".repeat(100)),
    ];
    for (i, (first, last)) in names.iter().enumerate() {
        let body = json!({"sku": sku, "first_name": first, "last_name": last, "phone": phone(42, i as u32)});
        let (status, created) = app.order(&body, None).await;
        assert_eq!(status, 201, "{body}: {created}");
    }
}

#[tokio::test]
async fn bad_product_bodies_are_rejected() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let put = |sku: String, body: Value| {
        let app = &app;
        async move {
            split(
                app.http
                    .put(app.url(&format!("/v1/products/{sku}")))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("PUT"),
            )
            .await
        }
    };
    let cases = [
        (unique_sku("p"), json!({"name": "x", "stock": -1}), "stock"),
        (
            unique_sku("p"),
            json!({"name": "x", "stock": "many"}),
            "stock",
        ),
        (unique_sku("p"), json!({"name": "", "stock": 1}), "name"),
        (unique_sku("p"), json!({"stock": 1}), "name"),
        (
            "bad sku!".to_owned(),
            json!({"name": "x", "stock": 1}),
            "sku",
        ),
    ];
    for (sku, body, field) in cases {
        let (status, err) = put(sku.clone(), body.clone()).await;
        assert_eq!(
            (status, error_code(&err)),
            (422, "invalid_field"),
            "{sku} {body}: {err}"
        );
        assert_eq!(err["field"], field, "{sku} {body}: {err}");
    }
}
