//! Redemption at the counter (docs/design.md, "Voucher lifecycle"): once,
//! across replicas and scanners; nonce replay; every refusal; signed codes
//! verified by a JOSE library that is not ours.

use std::collections::HashMap;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::helpers::*;

fn nonce() -> String {
    format!("nonce-{}", random_suffix())
}

#[tokio::test]
async fn twenty_concurrent_scans_from_three_scanners_on_two_replicas_redeem_once() {
    let db = TestDb::create().await;
    let opts = AppOptions::new(&db.url);
    let a = App::spawn(&opts).await;
    let b = App::spawn(&opts).await;
    let sku = unique_sku("redeem-once");
    a.put_product(&sku, "Sneaker", 5).await;
    let order_id = a.reserve_one(&sku, 71_000, 1).await;
    let code = signed_code(&order_id, &sku, None, None);
    let mut scanners = Vec::new();
    for n in 1..=3 {
        scanners.push(a.create_scanner(&format!("Counter {n}")).await);
    }

    let scans = (0..20).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let token = scanners[i % 3].1.clone();
        let code = code.clone();
        async move { app.redeem(&token, &code, &nonce()).await }
    });
    let answers = futures::future::join_all(scans).await;
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    let first = ok[0];
    assert_eq!(first["order_id"], order_id.as_str());
    assert_eq!(first["sku"], sku.as_str());
    assert_eq!(first["product_name"], "Sneaker");
    assert_eq!(first["first_name"], "Zoë");
    assert_eq!(first["last_name"], "Ñúñez 1");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(error_code(body), "already_redeemed");
        // Every refusal names the first redemption.
        assert_eq!(body["redeemed_at"], first["redeemed_at"], "{body}");
        assert_eq!(body["scanner"], first["scanner"], "{body}");
        assert_eq!(body["first_name"], "Zoë");
    }
    let client = db.client().await;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM redemptions WHERE order_id = $1",
            &[&order_id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'redemption' AND subject = $1",
            &[&order_id],
        )
        .await
        .expect("audit")
        .get(0);
    assert_eq!(audited, 20, "every decided scan is audited");
    let (_, view) = b.get_order(&order_id).await;
    assert_eq!(view["status"], "redeemed");
    assert_eq!(view["redeemed_at"], first["redeemed_at"]);
}

#[tokio::test]
async fn the_same_nonce_replays_the_first_answer_and_creates_nothing() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("nonce");
    app.put_product(&sku, "Hoodie", 5).await;
    let order_id = app.reserve_one(&sku, 72_000, 1).await;
    let other = app.reserve_one(&sku, 72_000, 2).await;
    let (_, token) = app.create_scanner("Counter 1").await;
    let code = signed_code(&order_id, &sku, None, None);
    let nonce = nonce();

    let (s1, first) = app.redeem(&token, &code, &nonce).await;
    assert_eq!(s1, 200, "{first}");
    // Concurrent and sequential replays alike.
    let replays =
        futures::future::join_all((0..5).map(|_| app.redeem(&token, &code, &nonce))).await;
    for (status, body) in replays {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, first);
    }
    let r = app
        .http
        .post(app.url("/v1/redemptions"))
        .bearer_auth(&token)
        .json(&json!({"code": code, "nonce": nonce}))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let client = db.client().await;
    for (table, want) in [("redemptions", 1i64), ("redemption_nonces", 1)] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, want, "{table}");
    }
    // The same nonce with another code is refused, and redeems nothing.
    let (status, body) = app
        .redeem(&token, &signed_code(&other, &sku, None, None), &nonce)
        .await;
    assert_eq!((status, error_code(&body)), (422, "nonce_reused"), "{body}");
    assert_eq!(app.get_order(&other).await.1["status"], "reserved");
    // A new nonce for the first code is a second scan: already redeemed.
    let (status, body) = app.redeem(&token, &code, "another").await;
    assert_eq!((status, error_code(&body)), (409, "already_redeemed"));
}

#[tokio::test]
async fn every_refusal_has_its_code() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("refusals");
    app.put_product(&sku, "Jacket", 10).await;
    let (scanner_id, token) = app.create_scanner("Counter 1").await;
    let order_id = app.reserve_one(&sku, 73_000, 1).await;
    let code = signed_code(&order_id, &sku, None, None);

    // 401: no token, a wrong one, the admin's.
    let r = app
        .http
        .post(app.url("/v1/redemptions"))
        .json(&json!({"code": code, "nonce": "n"}))
        .send()
        .await
        .expect("POST");
    let (status, body) = split(r).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    for bad in ["scn_nope", ADMIN_TOKEN] {
        let (status, body) = app.redeem(bad, &code, "n").await;
        assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{bad}");
    }

    // 422 invalid_code: not ours in every way; nothing is stored for them.
    let (head, rest) = code.split_once('.').expect("jws");
    let (payload, sig) = rest.split_once('.').expect("jws");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    claims["oid"] = json!(app.reserve_one(&sku, 73_000, 2).await);
    let forged = format!(
        "{head}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let stranger = drop_contract::voucher_code::SigningKey::generate("test-key").expect("kid");
    let unknown_kid = drop_contract::voucher_code::SigningKey::generate("gone").expect("kid");
    let claims_of = |sku: &str| drop_contract::voucher_code::VoucherClaims {
        oid: drop_contract::OrderId::parse(&order_id).expect("id"),
        sku: sku.to_owned(),
        iat: 0,
        nbf: None,
        exp: None,
    };
    for (what, bad) in [
        ("payload changed, signature kept", forged),
        ("truncated", code[..code.len() - 5].to_owned()),
        ("signed by another key", stranger.sign(&claims_of(&sku))),
        ("unknown kid", unknown_kid.sign(&claims_of(&sku))),
        ("another SKU", voucher_key().sign(&claims_of("OTHER-SKU"))),
        (
            "no such order",
            "fedcba9876543210fedcba9876543210".to_owned(),
        ),
        ("text", "hello".to_owned()),
        ("too long", "a".repeat(3000)),
    ] {
        let (status, body) = app.redeem(&token, &bad, &nonce()).await;
        assert_eq!(
            (status, error_code(&body)),
            (422, "invalid_code"),
            "{what}: {body}"
        );
        assert!(body.get("order_id").is_none(), "{what}: {body}");
    }
    // 422 invalid_field for a bad nonce or a missing field.
    for body in [
        json!({"code": code, "nonce": ""}),
        json!({"code": code, "nonce": "has space"}),
        json!({"code": code}),
        json!({"nonce": "n"}),
    ] {
        let (status, answer) = split(
            app.http
                .post(app.url("/v1/redemptions"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("POST"),
        )
        .await;
        assert_eq!(
            (status, error_code(&answer)),
            (422, "invalid_field"),
            "{body}"
        );
    }
    let client = db.client().await;
    let stored: i64 = client
        .query_one("SELECT count(*) FROM redemption_nonces", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 0, "refused codes leave nothing behind");

    // 409 not_yet_valid and 410 expired, from the code's nbf/exp.
    let now = chrono::Utc::now().timestamp();
    let (status, body) = app
        .redeem(
            &token,
            &signed_code(&order_id, &sku, Some(now + 3600), None),
            &nonce(),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "not_yet_valid"),
        "{body}"
    );
    assert!(body["redeem_from"].is_string(), "{body}");
    assert_eq!(body["first_name"], "Zoë");
    let (status, body) = app
        .redeem(
            &token,
            &signed_code(&order_id, &sku, Some(now - 7200), Some(now - 3600)),
            &nonce(),
        )
        .await;
    assert_eq!((status, error_code(&body)), (410, "expired"), "{body}");
    assert!(body["redeem_until"].is_string(), "{body}");
    // A bare order id (an old voucher) takes the product's window.
    let r = app
        .http
        .put(app.url(&format!("/v1/products/{sku}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "Jacket", "stock": 10,
                      "redeem_from": "2999-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("PUT");
    let (status, product) = split(r).await;
    assert_eq!(status, 200, "{product}");
    assert_eq!(product["redeem_from"], "2999-01-01T00:00:00Z");
    let (status, body) = app.redeem(&token, &order_id, &nonce()).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "not_yet_valid"),
        "{body}"
    );
    app.put_product(&sku, "Jacket", 10).await;
    let (status, body) = app.redeem(&token, &order_id, &nonce()).await;
    assert_eq!(status, 200, "a bare order id still redeems: {body}");
    assert_eq!(body["scanner"], "Counter 1");

    // 410 cancelled.
    let cancelled = app.reserve_one(&sku, 73_000, 3).await;
    assert_eq!(app.cancel(&cancelled).await.0, 200);
    let (status, body) = app
        .redeem(&token, &signed_code(&cancelled, &sku, None, None), &nonce())
        .await;
    assert_eq!((status, error_code(&body)), (410, "cancelled"), "{body}");
    assert!(body["cancelled_at"].is_string(), "{body}");

    // A revoked scanner is 401 from then on; revoking again is 204.
    let revoke = || {
        app.http
            .delete(app.url(&format!("/v1/scanners/{scanner_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    assert_eq!(revoke().await.expect("DELETE").status(), 204);
    assert_eq!(revoke().await.expect("DELETE").status(), 204);
    let (status, body) = app.redeem(&token, &code, &nonce()).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    let (status, body) = split(
        app.http
            .delete(app.url("/v1/scanners/0123456789abcdef0123456789abcdef"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("DELETE"),
    )
    .await;
    assert_eq!((status, error_code(&body)), (404, "scanner_not_found"));
    let r = app
        .http
        .post(app.url("/v1/scanners"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401, "registering needs the admin token");
    // The token is stored only as its hash.
    let stored: Vec<u8> = client
        .query_one(
            "SELECT token_sha256 FROM scanners WHERE scanner_id = $1",
            &[&scanner_id],
        )
        .await
        .expect("scanner")
        .get(0);
    {
        use sha2::Digest;
        assert_eq!(stored, sha2::Sha256::digest(token.as_bytes()).to_vec());
    }
    let log = std::fs::read_to_string(&app.log).expect("log");
    assert!(!log.contains(&token), "a scanner token reached the log");
    assert!(
        !log.contains(&order_id),
        "an order id reached the log in full"
    );
    let actions: Vec<String> = client
        .query("SELECT action FROM audit_log ORDER BY id", &[])
        .await
        .expect("audit")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for action in [
        "product.put",
        "scanner.create",
        "redemption",
        "order.cancel",
        "scanner.revoke",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} not audited: {actions:?}"
        );
    }
}

/// The JWKS verifies a code with PyJWT (and `cryptography`), a JOSE
/// library that is not ours, from the stack's venv; the forged code is
/// refused by it and by order-api alike.
#[tokio::test]
async fn a_foreign_jose_library_verifies_codes_with_the_jwks() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("jwks");
    app.put_product(&sku, "Cap", 5).await;
    let order_id = app.reserve_one(&sku, 74_000, 1).await;
    let now = chrono::Utc::now().timestamp();
    let code = signed_code(&order_id, &sku, Some(now - 60), Some(now + 3600));

    let r = app
        .http
        .get(app.url("/v1/voucher-keys"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("max-age"))
    );
    let jwks: Value = r.json().await.expect("json");
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["kid"]),
        (
            &json!("OKP"),
            &json!("Ed25519"),
            &json!("EdDSA"),
            &json!("test-key")
        )
    );
    assert!(
        key.get("d").is_none(),
        "the private key is published: {jwks}"
    );

    let (head, rest) = code.split_once('.').expect("jws");
    let (payload, sig) = rest.split_once('.').expect("jws");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    claims["sku"] = json!("SOMETHING-ELSE");
    let forged = format!(
        "{head}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );

    let verdicts = pyjwt_verify(&jwks, &[&code, &forged]);
    assert_eq!(verdicts[0]["valid"], true, "{verdicts:?}");
    assert_eq!(verdicts[0]["claims"]["oid"], order_id.as_str());
    assert_eq!(verdicts[0]["claims"]["sku"], sku.as_str());
    assert_eq!(verdicts[0]["claims"]["exp"], now + 3600);
    assert_eq!(verdicts[1]["valid"], false, "{verdicts:?}");
    assert_eq!(verdicts[1]["error"], "InvalidSignatureError");

    let (_, token) = app.create_scanner("Counter 1").await;
    let (status, body) = app.redeem(&token, &forged, &nonce()).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_code"), "{body}");
    let (status, body) = app.redeem(&token, &code, &nonce()).await;
    assert_eq!(status, 200, "{body}");
}

/// Runs PyJWT over `codes` with `jwks`; one verdict per code.
fn pyjwt_verify(jwks: &Value, codes: &[&str]) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys
import jwt
data = json.load(sys.stdin)
keys = jwt.PyJWKSet.from_dict(data["jwks"])
out = []
for code in data["codes"]:
    try:
        kid = jwt.get_unverified_header(code)["kid"]
        key = next(k for k in keys.keys if k.key_id == kid)
        claims = jwt.decode(code, key=key.key, algorithms=["EdDSA"])
        out.append({"valid": True, "claims": claims})
    except Exception as e:
        out.append({"valid": False, "error": type(e).__name__})
print(json.dumps(out))
"#;
    let python = format!("{}/venv/bin/python", env_or("STACK_DIR", "../.stack"));
    let mut child = std::process::Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} (the stack's venv, with PyJWT): {e}"));
    let input = json!({"jwks": jwks, "codes": codes}).to_string();
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("write");
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("python");
    assert!(output.status.success(), "PyJWT failed");
    serde_json::from_slice(&output.stdout).expect("verdicts")
}

#[tokio::test]
async fn the_revocations_feed_names_cancelled_orders_by_hash() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("feed");
    app.put_product(&sku, "Bag", 5).await;
    let kept = app.reserve_one(&sku, 75_000, 1).await;
    let gone = app.reserve_one(&sku, 75_000, 2).await;
    let (_, token) = app.create_scanner("Counter 1").await;
    let feed = |since: Option<String>| {
        let mut req = app
            .http
            .get(app.url("/v1/scanners/revocations"))
            .bearer_auth(&token);
        if let Some(since) = since {
            req = req.query(&[("since", since)]);
        }
        async move { split(req.send().await.expect("GET feed")).await }
    };
    let (status, empty) = feed(None).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["revoked"], json!([]));
    let next = empty["next"].as_str().expect("next").to_owned();

    let (status, cancelled) = app.cancel(&gone).await;
    assert_eq!(status, 200, "{cancelled}");
    let (status, body) = feed(Some(next)).await;
    assert_eq!(status, 200, "{body}");
    let hashes: HashMap<String, Value> = body["revoked"]
        .as_array()
        .expect("revoked")
        .iter()
        .map(|e| {
            (
                e["oid_sha256"].as_str().expect("hash").to_owned(),
                e["cancelled_at"].clone(),
            )
        })
        .collect();
    let hash = |id: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(id.as_bytes()))
    };
    assert_eq!(hashes.get(&hash(&gone)), Some(&cancelled["cancelled_at"]));
    assert!(!hashes.contains_key(&hash(&kept)));
    assert!(
        !body.to_string().contains(&gone),
        "the feed carries an order id"
    );

    let (status, body) = feed(Some("yesterday".into())).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_field"));
    let r = app
        .http
        .get(app.url("/v1/scanners/revocations"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 401);
}

/// The window reaches the renderer in the orders message, which the
/// reservation statement builds in SQL: parsed here with the contract's type.
#[tokio::test]
async fn the_orders_message_carries_the_pickup_window() {
    let db = TestDb::create().await;
    let mut opts = AppOptions::new(&db.url);
    // RabbitMQ unreachable, so the outbox rows stay for inspection.
    opts.amqp_url = unreachable_amqp_url();
    let app = App::spawn(&opts).await;
    let sku = unique_sku("window");
    let r = app
        .http
        .put(app.url(&format!("/v1/products/{sku}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "Coat", "stock": 5,
                      "redeem_from": "2026-12-01T10:00:00.750+02:00",
                      "redeem_until": "2026-12-24T18:00:00Z"}))
        .send()
        .await
        .expect("PUT");
    let (status, product) = split(r).await;
    assert_eq!(status, 201, "{product}");
    // Whole seconds, in UTC: what a code's nbf will say.
    assert_eq!(product["redeem_from"], "2026-12-01T08:00:00Z");
    let order_id = app.reserve_one(&sku, 76_000, 1).await;
    let payload: String = db
        .client()
        .await
        .query_one(
            "SELECT payload::text FROM outbox WHERE order_id = $1",
            &[&order_id],
        )
        .await
        .expect("outbox row")
        .get(0);
    let orders = drop_contract::messages::OrdersMessage::from_slice(payload.as_bytes())
        .expect("an OrdersMessage")
        .into_orders();
    assert_eq!(
        orders[0].redeem_from,
        Some("2026-12-01T08:00:00Z".parse().expect("time"))
    );
    assert_eq!(
        orders[0].redeem_until,
        Some("2026-12-24T18:00:00Z".parse().expect("time"))
    );
    let (_, view) = app.get_order(&order_id).await;
    assert_eq!(view["redeem_from"], "2026-12-01T08:00:00Z");

    // until must follow from.
    let r = app
        .http
        .put(app.url(&format!("/v1/products/{sku}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "Coat", "stock": 5,
                      "redeem_from": "2026-12-24T18:00:00Z", "redeem_until": "2026-12-01T10:00:00Z"}))
        .send()
        .await
        .expect("PUT");
    let (status, body) = split(r).await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "invalid_field"),
        "{body}"
    );
    assert_eq!(body["field"], "redeem_until");
}
