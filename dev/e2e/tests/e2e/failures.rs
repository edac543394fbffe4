//! Bad input and scale-out: poison messages, odd bucket events, two replicas.

use std::time::Duration;

use lapin::BasicProperties;

use crate::support::{EVENTS_KEY, Harness, eventually, free_port, phone};

fn with_id(message_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
}

/// A poison order lands in the dead-letter queue (once, not looping) and the
/// worker keeps rendering the orders after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_order_is_dead_lettered_and_the_worker_keeps_going() {
    let h = Harness::new("poison").await;
    let vouchers = h.collector();
    let dead = h.dead_letters();
    let api = h.order_api().await;
    api.create_product(&h.sku, "Poison drop", 10).await;
    let mut pdfgen = h.pdf_generator("pdf-generator", &[]).await;

    let not_json = format!("poison-not-json-{}", h.id);
    let bad_id = format!("poison-bad-id-{}", h.id);
    h.publish(
        &h.exchange,
        "order.reserved",
        b"{\"order_id\": ",
        with_id(&not_json),
    )
    .await;
    let escaping = serde_json::json!({
        "order_id": "../../0123456789abcdef0123456789",
        "sku": h.sku, "product_name": "x", "first_name": "a", "last_name": "b",
        "created_at": "2026-11-24T12:00:00.123456Z"
    });
    h.publish(
        &h.exchange,
        "order.reserved",
        escaping.to_string().as_bytes(),
        with_id(&bad_id),
    )
    .await;
    dead.wait_all(&[not_json.clone(), bad_id.clone()], Duration::from_secs(20))
        .await;
    dead.with(|c| {
        for key in [&not_json, &bad_id] {
            assert_eq!(c.count[key], 1, "{key} dead-lettered more than once");
            let death = &c.deaths[key];
            assert!(
                death.contains(&h.orders_queue) && death.contains("rejected"),
                "x-death of {key}: {death}"
            );
        }
    });

    // The worker is still alive and still renders.
    let id = api.order(&h.sku, "After", "Poison", &phone(1)).await;
    h.subscribe_voucher(&format!("voucher.{id}")).await;
    let messages = vouchers
        .wait_all(std::slice::from_ref(&id), Duration::from_secs(10))
        .await;
    h.verify_voucher(&messages[&id], &id, &["After Poison"])
        .await;
    assert!(pdfgen.try_alive(), "pdf-generator exited");
    let m = pdfgen.metrics(&h.http).await;
    assert_eq!(
        m.sum(
            "messages_dead_lettered_total",
            &[r#"role="render""#, r#"reason="malformed""#]
        ),
        2.0,
        "{}",
        m.0
    );
}

/// An upload that keeps failing is retried up to MAX_ATTEMPTS, then the order
/// goes to the dead-letter queue instead of looping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_failing_past_the_retry_cap_is_dead_lettered() {
    let h = Harness::new("retry-cap").await;
    let dead = h.dead_letters();
    let api = h.order_api().await;
    api.create_product(&h.sku, "Unreachable store", 10).await;
    // Nothing listens on this port: every PUT fails with connection refused.
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let pdfgen = h
        .pdf_generator(
            "pdf-generator",
            &[
                ("ROLE", "render"),
                ("MAX_ATTEMPTS", "2"),
                ("S3_ENDPOINT", &unreachable),
            ],
        )
        .await;
    let id = api.order(&h.sku, "Never", "Uploaded", &phone(1)).await;
    dead.wait_all(std::slice::from_ref(&id), Duration::from_secs(30))
        .await;
    let death = dead.with(|c| c.deaths[&id].clone());
    assert!(death.contains(&h.orders_queue), "x-death: {death}");
    let m = pdfgen.metrics(&h.http).await;
    assert_eq!(
        m.sum("retries_total", &[r#"operation="upload""#]),
        1.0,
        "{}",
        m.0
    );
    assert_eq!(
        m.sum(
            "messages_dead_lettered_total",
            &[r#"reason="upload_retries_exhausted""#]
        ),
        1.0,
        "{}",
        m.0
    );
    assert!(h.head_voucher(&id).await.is_none());
}

/// An RGW-shaped event record for `key`.
fn event(key: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.2", "eventSource": "ceph:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T12:00:01.123456Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": EVENTS_KEY,
            "bucket": {"name": crate::support::bucket()},
            "object": {"key": key, "size": 5, "eTag": "x"}}
    }]})
    .to_string()
}

/// Bucket notifications: a malformed event is dead-lettered; an event for an
/// object that is not a voucher (a real upload, and a published one) is
/// acked and ignored with a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_events_malformed_dead_lettered_others_ignored() {
    let h = Harness::new("events").await;
    let dead = h.dead_letters();
    let mut pdfgen = h
        .pdf_generator("pdf-generator", &[("ROLE", "notify")])
        .await;

    // A real object that is not a voucher: RGW's own event reaches us.
    let real_key = format!("e2e/{}/readme.txt", h.id);
    h.put_object(&real_key, b"hello", "text/plain").await;
    // The same shape published straight into our queue, with an id to track.
    let other = format!("event-not-a-voucher-{}", h.id);
    let other_key = format!("e2e/{}/index.html", h.id);
    h.publish(
        "",
        &h.events_queue,
        event(&other_key).as_bytes(),
        with_id(&other),
    )
    .await;
    // Malformed: no usable Records.
    let malformed = format!("event-malformed-{}", h.id);
    h.publish(
        "",
        &h.events_queue,
        br#"{"Records": "nope"}"#,
        with_id(&malformed),
    )
    .await;

    dead.wait_all(std::slice::from_ref(&malformed), Duration::from_secs(20))
        .await;
    let death = dead.with(|c| c.deaths[&malformed].clone());
    assert!(death.contains(&h.events_queue), "x-death: {death}");
    eventually(
        "both non-vouchers are logged as ignored",
        Duration::from_secs(20),
        || async {
            let log = pdfgen.log_text();
            let ignored = |key: &str| {
                log.lines()
                    .any(|l| l.contains("ignoring object that is not a voucher") && l.contains(key))
            };
            (ignored(&real_key) && ignored(&other_key)).then_some(())
        },
    )
    .await;
    let m = pdfgen.metrics(&h.http).await;
    assert!(
        m.sum("messages_acked_total", &[r#"role="notify""#]) >= 2.0,
        "{}",
        m.0
    );
    assert_eq!(
        m.sum(
            "messages_dead_lettered_total",
            &[r#"role="notify""#, r#"reason="malformed_event""#]
        ),
        1.0,
        "{}",
        m.0
    );
    assert!(!dead.has(&other), "a non-voucher event was dead-lettered");
    assert!(pdfgen.try_alive(), "pdf-generator exited");
    h.delete_object(&real_key).await;
}

/// Two replicas on the same queues share the work, and every voucher arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_load() {
    let h = Harness::new("replicas").await;
    let vouchers = h.collector();
    h.subscribe_voucher("voucher.*").await;
    let api = h.order_api().await;
    api.create_product(&h.sku, "Shared drop", 1000).await;
    let a = h.pdf_generator("pdf-generator-a", &[]).await;
    let b = h.pdf_generator("pdf-generator-b", &[]).await;

    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            api.order(&h.sku, "Two", &format!("Replicas {i}"), &phone(i))
                .await,
        );
    }
    vouchers.wait_all(&ids, Duration::from_secs(60)).await;
    // The bucket event (and so voucher_ready) can overtake the renderer's own
    // bookkeeping of the PUT it is still finishing: let the counters settle.
    let total = ids.len() as f64;
    let (uploaded_a, uploaded_b) = eventually(
        "both replicas count every upload",
        Duration::from_secs(20),
        || async {
            let ua = a.metrics(&h.http).await.sum("vouchers_uploaded_total", &[]);
            let ub = b.metrics(&h.http).await.sum("vouchers_uploaded_total", &[]);
            (ua + ub >= total).then_some((ua, ub))
        },
    )
    .await;
    eprintln!("replica a uploaded {uploaded_a}, replica b {uploaded_b}");
    assert!(
        uploaded_a >= 1.0 && uploaded_b >= 1.0,
        "a {uploaded_a}, b {uploaded_b}"
    );
    let published_a = a
        .metrics(&h.http)
        .await
        .sum("notifier_published_total", &[]);
    let published_b = b
        .metrics(&h.http)
        .await
        .sum("notifier_published_total", &[]);
    assert!(published_a + published_b >= total);
}

/// The object store's event never reaches this harness's notifier (its
/// events queue is unbound from `s3.events` once it consumes, as if the
/// store had lost every event): each voucher is still announced on
/// `voucher.<id>`, from the renderer's `vouchers_stored.v1`, and the events
/// queue delivered nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bucket_event_still_gets_its_voucher_announced() {
    let h = Harness::new("lost-event").await;
    let vouchers = h.collector();
    h.subscribe_voucher("voucher.*").await;
    let api = h.order_api().await;
    api.create_product(&h.sku, "Lost events", 10).await;
    let pdfgen = h.pdf_generator("pdf-generator", &[]).await;
    h.admin()
        .await
        .queue_unbind(
            h.events_queue.as_str().into(),
            drop_contract::topology::EVENTS_EXCHANGE.into(),
            EVENTS_KEY.into(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("unbinding the events queue");

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            api.order(&h.sku, "Lost", &format!("Event {i}"), &phone(i))
                .await,
        );
    }
    let messages = vouchers.wait_all(&ids, Duration::from_secs(30)).await;
    for id in &ids {
        h.verify_voucher(&messages[id], id, &["Lost Event"]).await;
    }
    let m = pdfgen.metrics(&h.http).await;
    assert_eq!(
        m.sum("messages_consumed_total", &[r#"role="notify""#]),
        0.0,
        "{}",
        m.0
    );
    assert!(
        m.sum("messages_acked_total", &[r#"role="announce""#]) >= 1.0,
        "{}",
        m.0
    );
    assert!(m.sum("notifier_published_total", &[]) >= 3.0, "{}", m.0);
}
