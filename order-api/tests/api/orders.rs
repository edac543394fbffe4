use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn reservation_is_durable_with_its_outbox_row() {
    let db = TestDb::create().await;
    let mut opts = AppOptions::new(&db.url);
    // RabbitMQ unreachable, so the outbox row stays for inspection (the relay
    // deletes it once published).
    opts.amqp_url = unreachable_amqp_url();
    let app = App::spawn(&opts).await;
    let sku = unique_sku("hoodie");
    app.put_product(&sku, "Hoodie", 10).await;

    let body =
        json!({"sku": sku, "first_name": "张", "last_name": "伟", "phone": "+358 40 765 4321"});
    let (status, created) = app.order(&body, None).await;
    assert_eq!(status, 201, "{created}");
    let order_id = created["order_id"].as_str().expect("order_id").to_owned();
    assert_eq!(order_id.len(), 32);
    assert!(
        order_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(created["status"], "reserved");
    assert_eq!(created["voucher_topic"], format!("voucher.{order_id}"));

    let (status, view) = split(
        app.http
            .get(app.url(&format!("/v1/orders/{order_id}")))
            .send()
            .await
            .expect("GET order"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(view["order_id"], order_id.as_str());
    assert_eq!(view["sku"], sku.as_str());
    assert_eq!(view["first_name"], "张");
    assert_eq!(view["last_name"], "伟");
    assert_eq!(view["status"], "reserved");
    assert!(view["created_at"].is_string());
    assert!(
        view.get("phone").is_none(),
        "the phone is not echoed back: {view}"
    );

    // The order, its normalised phone and its outbox row were committed together.
    let client = db.client().await;
    let row = client
        .query_one("SELECT phone FROM orders WHERE order_id = $1", &[&order_id])
        .await
        .expect("order row");
    assert_eq!(row.get::<_, String>(0), "+358407654321");
    // A batch of one: the outbox row is named by its (lowest) order id.
    let outbox = client
        .query_one(
            "SELECT payload FROM outbox WHERE order_id = $1",
            &[&order_id],
        )
        .await
        .expect("outbox row");
    let payload: serde_json::Value = outbox.get(0);
    assert_eq!(payload["sku"], sku.as_str());
    assert_eq!(payload["product_name"], "Hoodie");
    let created_at = payload["created_at"].as_str().expect("created_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "{payload}"
    );
    let orders = payload["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 1, "{payload}");
    assert_eq!(orders[0]["order_id"], order_id.as_str());
    assert_eq!(orders[0]["first_name"], "张");
    let reserved: i32 = client
        .query_one("SELECT reserved FROM products WHERE sku = $1", &[&sku])
        .await
        .expect("product")
        .get(0);
    assert_eq!(reserved, 1);

    // No voucher yet: 404 voucher_not_ready, never a redirect.
    let (status, err) = split(
        app.http
            .get(app.url(&format!("/v1/orders/{order_id}/voucher")))
            .send()
            .await
            .expect("GET voucher"),
    )
    .await;
    assert_eq!((status, error_code(&err)), (404, "voucher_not_ready"));
}

#[tokio::test]
async fn unknown_and_malformed_order_ids_are_404() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    for id in [
        "0123456789abcdef0123456789abcdef",
        "not-an-id",
        "0123456789ABCDEF0123456789ABCDEF",
    ] {
        let (status, err) = split(
            app.http
                .get(app.url(&format!("/v1/orders/{id}")))
                .send()
                .await
                .expect("GET order"),
        )
        .await;
        assert_eq!(status, 404, "{id}: {err}");
        assert_eq!(error_code(&err), "order_not_found");
    }
    // Orders are never listed.
    let (status, err) = split(
        app.http
            .get(app.url("/v1/orders"))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, 405, "{err}");
    assert_eq!(error_code(&err), "method_not_allowed");
}

#[tokio::test]
async fn one_reservation_per_phone_in_any_format() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("sneaker");
    let other = unique_sku("sneaker");
    app.put_product(&sku, "Sneaker", 10).await;
    app.put_product(&other, "Other sneaker", 10).await;
    let with_phone = |sku: &str, phone: &str| json!({"sku": sku, "first_name": "Aino", "last_name": "Virtanen", "phone": phone});

    assert_eq!(
        app.order(&with_phone(&sku, "+358 40 123 4567"), None)
            .await
            .0,
        201
    );
    for same in [
        "+358401234567",
        "+358 40 123 4567",
        "+358-40-123-4567",
        "+358 (40) 1234567",
    ] {
        let (status, err) = app.order(&with_phone(&sku, same), None).await;
        assert_eq!(
            (status, error_code(&err)),
            (409, "already_reserved"),
            "{same}"
        );
    }
    // The same phone may reserve another product.
    assert_eq!(
        app.order(&with_phone(&other, "+358401234567"), None)
            .await
            .0,
        201
    );

    let count = db
        .count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
        .await;
    assert_eq!(count, 1);
}

/// Concurrent requests with one phone in different spellings: exactly one wins.
#[tokio::test]
async fn concurrent_duplicate_phones_reserve_once() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("race");
    app.put_product(&sku, "Race", 100).await;
    let spellings = [
        "+358 50 111 2222",
        "+358501112222",
        "+358-50-111-2222",
        "+358 (50) 1112222",
    ];
    let tasks = (0..40).map(|i| {
        let body = json!({"sku": sku, "first_name": "Eetu", "last_name": "Mäki", "phone": spellings[i % 4]});
        let app = &app;
        async move { app.order(&body, None).await }
    });
    let results = futures::future::join_all(tasks).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let dup = results
        .iter()
        .filter(|(s, b)| *s == 409 && error_code(b) == "already_reserved")
        .count();
    assert_eq!((created, dup), (1, 39), "{results:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        1
    );
}

/// At the sell-out boundary, a customer who already holds a reservation
/// arrives together with new customers. If units are left when it is
/// decided, it is `already_reserved` and the unit it would have taken goes
/// to a newcomer; if it comes after the last unit, it is `sold_out`. However
/// the requests fall into batches, exactly the stock is sold, to newcomers
/// only, and each phone holds one order.
#[tokio::test]
async fn a_held_phone_at_the_boundary_leaves_its_unit_to_a_newcomer() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    for round in 0..20u32 {
        let sku = unique_sku("edge");
        app.put_product(&sku, "Edge", 3).await;
        let holder = customer(&sku, 0, 40 + round);
        assert_eq!(app.order(&holder, None).await.0, 201);
        // The holder first, then 3 newcomers for the 2 units left.
        let bodies: Vec<_> = std::iter::once(holder.clone())
            .chain((1..=3).map(|i| customer(&sku, i, 40 + round)))
            .collect();
        let results = futures::future::join_all(bodies.iter().map(|b| app.order(b, None))).await;
        let codes: Vec<&str> = results
            .iter()
            .map(|(status, body)| match status {
                201 => "reserved",
                _ => error_code(body),
            })
            .collect();
        assert!(
            ["already_reserved", "sold_out"].contains(&codes[0]),
            "round {round}: {results:?}"
        );
        let mut newcomers = codes[1..].to_vec();
        newcomers.sort_unstable();
        assert_eq!(
            newcomers,
            ["reserved", "reserved", "sold_out"],
            "round {round}: {results:?}"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
                .await,
            3
        );
        assert_eq!(
            db.count(
                "SELECT reserved::int8 FROM products WHERE sku = $1 AND stock = 3",
                &sku
            )
            .await,
            3
        );
        assert_eq!(
            db.count(
                "SELECT count(DISTINCT phone) FROM orders WHERE sku = $1",
                &sku
            )
            .await,
            3
        );
    }
}

#[tokio::test]
async fn sold_out_after_the_last_unit() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("last");
    app.put_product(&sku, "Last", 1).await;
    assert_eq!(app.order(&customer(&sku, 1, 31), None).await.0, 201);
    let (status, err) = app.order(&customer(&sku, 2, 31), None).await;
    assert_eq!((status, error_code(&err)), (409, "sold_out"));
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));

    // Once sold out, the phone is not checked for an unkeyed request (there
    // is nothing to reserve), but the names and a keyed request still are.
    let mut bad_phone = customer(&sku, 3, 31);
    bad_phone["phone"] = "12345".into();
    let (status, err) = app.order(&bad_phone, None).await;
    assert_eq!((status, error_code(&err)), (409, "sold_out"), "{err}");
    let (status, err) = app.order(&bad_phone, Some("sold-out-bad-phone")).await;
    assert_eq!((status, error_code(&err)), (422, "invalid_field"), "{err}");
    assert_eq!(err["field"], "phone", "{err}");
    let mut bad_name = customer(&sku, 4, 31);
    bad_name["first_name"] = "".into();
    let (status, err) = app.order(&bad_name, None).await;
    assert_eq!((status, error_code(&err)), (422, "invalid_field"), "{err}");
}
