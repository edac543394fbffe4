use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn same_key_same_body_replays_the_same_reservation() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("idem");
    app.put_product(&sku, "Idem", 5).await;
    let key = format!("retry-{}", random_suffix());
    let body = customer(&sku, 1, 51);

    let (s1, first) = app.order(&body, Some(&key)).await;
    assert_eq!(s1, 201, "{first}");
    // The same body with the phone written differently is the same request.
    let mut respelled = body.clone();
    let phone = body["phone"].as_str().expect("phone");
    respelled["phone"] = json!(format!("{} {}", &phone[..4], &phone[4..]));
    for retry in [&body, &respelled] {
        let (s, again) = app.order(retry, Some(&key)).await;
        assert_eq!(s, 201, "{again}");
        assert_eq!(again, first);
    }
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        1
    );

    // The same key with another body is refused and reserves nothing.
    let (s, err) = app.order(&customer(&sku, 2, 51), Some(&key)).await;
    assert_eq!((s, error_code(&err)), (422, "idempotency_mismatch"));
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        1
    );

    // A different key for the same phone is a second attempt: already reserved.
    let (s, err) = app.order(&body, Some(&format!("{key}-2"))).await;
    assert_eq!((s, error_code(&err)), (409, "already_reserved"));
}

/// Retries that race each other, across two replicas, still reserve once and
/// all get the same answer.
#[tokio::test]
async fn concurrent_retries_with_one_key_reserve_once() {
    let db = TestDb::create().await;
    let opts = AppOptions::new(&db.url);
    let a = App::spawn(&opts).await;
    let b = App::spawn(&opts).await;
    let sku = unique_sku("idemrace");
    a.put_product(&sku, "Idem race", 10).await;

    for round in 0..5u32 {
        let key = format!("k-{round}-{}", random_suffix());
        let body = customer(&sku, round, 52);
        let tasks = (0..16).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            let (body, key) = (body.clone(), key.clone());
            async move { app.order(&body, Some(&key)).await }
        });
        let results = futures::future::join_all(tasks).await;
        let first = &results[0];
        assert_eq!(first.0, 201, "{results:?}");
        for r in &results {
            assert_eq!(r, first, "every retry gets the same answer");
        }
    }
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        5
    );
}

#[tokio::test]
async fn a_keyed_sold_out_answer_is_replayed_too() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("idemsold");
    app.put_product(&sku, "Idem sold", 1).await;
    let first_key = format!("first-{}", random_suffix());
    let (s, first) = app.order(&customer(&sku, 1, 53), Some(&first_key)).await;
    assert_eq!(s, 201, "{first}");
    // Its retry after the sell-out still gets the reservation, not sold_out.
    assert_eq!(
        app.order(&customer(&sku, 1, 53), Some(&first_key)).await,
        (201, first)
    );
    let key = format!("late-{}", random_suffix());
    let (s, err) = app.order(&customer(&sku, 2, 53), Some(&key)).await;
    assert_eq!((s, error_code(&err)), (409, "sold_out"));
    let (s, err) = app.order(&customer(&sku, 2, 53), Some(&key)).await;
    assert_eq!((s, error_code(&err)), (409, "sold_out"));
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        1
    );
}
