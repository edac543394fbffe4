//! The happy path, and a graceful stop.

use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::support::{Harness, eventually, phone};

/// POST /v1/orders → voucher_ready on `voucher.<id>` within 10 s; the voucher
/// parses, names in Chinese script and with accents are in its text, and its
/// QR code decodes to a code signed for the order, which redeems once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_voucher_for_names_in_any_script() {
    let h = Harness::new("happy").await;
    let vouchers = h.collector();
    let api = h.order_api().await;
    let pdfgen = h.pdf_generator("pdf-generator", &[]).await;
    let product = "Sneaker Édition 限定";
    api.create_product(&h.sku, product, 10).await;

    let customers = [("张", "伟"), ("Zoë", "Ñúñez"), ("Łukasz", "Żółć-Øster")];
    let mut ids = Vec::new();
    for (i, (first, last)) in customers.into_iter().enumerate() {
        let posted = Instant::now();
        let id = api.order(&h.sku, first, last, &phone(i)).await;
        // The customer's browser subscribes to its own key only.
        h.subscribe_voucher(&format!("voucher.{id}")).await;
        let messages = vouchers
            .wait_all(std::slice::from_ref(&id), Duration::from_secs(10))
            .await;
        let arrived = vouchers.with(|c| c.first[&id].1);
        assert!(
            arrived.duration_since(posted) <= Duration::from_secs(10),
            "voucher_ready after {:?}",
            arrived.duration_since(posted)
        );
        let full_name = format!("{first} {last}");
        let code = h
            .verify_voucher(&messages[&id], &id, &[&full_name, product])
            .await;

        let meta = h
            .head_voucher(&id)
            .await
            .expect("the voucher object exists");
        let created_at = meta
            .get("order-created-at")
            .expect("order-created-at metadata");
        chrono::DateTime::parse_from_rfc3339(created_at).expect("RFC 3339 created-at");

        // order-api sees the voucher too: the status turns voucher_ready (the
        // renderer reports the voucher stored, and order-api records it; that
        // report and the bucket notification race, so allow it a moment) and
        // the voucher route redirects to a fresh presigned URL that downloads it.
        let order: serde_json::Value = eventually(
            "the order's status turns voucher_ready",
            Duration::from_secs(10),
            || async {
                let order = api.get_order(&id).await;
                (order["status"] == "voucher_ready").then_some(order)
            },
        )
        .await;
        assert_eq!(order["status"], "voucher_ready", "{order}");
        ids.push(drop_contract::OrderId::parse(&id).expect("an order id"));
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let redirect = no_redirects
            .get(api.proc.url(&format!("/v1/orders/{id}/voucher")))
            .send()
            .await
            .expect("GET voucher");
        assert_eq!(redirect.status(), 302);
        let location = redirect
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location header")
            .to_owned();
        assert!(location.contains(&format!("{id}.pdf")), "{location}");
        let pdf = h
            .http
            .get(&location)
            .send()
            .await
            .expect("GET presigned URL");
        assert_eq!(pdf.status(), 200);
        let bytes = pdf.bytes().await.expect("voucher bytes");
        assert!(bytes.starts_with(b"%PDF-"), "the redirect serves the PDF");

        // The clerk scans the printed code: handed over once.
        let (status, body) = api.redeem(&code).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["first_name"], first);
        assert_eq!(api.redeem(&code).await.0, 409, "a second scan");
    }

    // Operations endpoints and the metrics the issue asks for.
    let health = h
        .http
        .get(pdfgen.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    let m = pdfgen.metrics(&h.http).await;
    let n = customers.len() as f64;
    assert!(
        m.sum("messages_consumed_total", &[r#"role="render""#]) >= n,
        "{}",
        m.0
    );
    assert!(m.sum("render_duration_seconds_count", &[]) >= n, "{}", m.0);
    assert!(
        m.sum("upload_duration_seconds_count", &[r#"outcome="ok""#]) >= n,
        "{}",
        m.0
    );
    assert!(m.sum("vouchers_uploaded_total", &[]) >= n, "{}", m.0);
    assert!(m.sum("notifier_published_total", &[]) >= n, "{}", m.0);
    assert!(
        m.sum("voucher_end_to_end_seconds_count", &[]) >= n,
        "{}",
        m.0
    );
    assert!(m.0.contains("voucher_end_to_end_seconds_bucket"), "{}", m.0);

    // The signing key is a secret: neither service logged it.
    let config = crate::support::voucher_key().to_config();
    let secret = config.split_once(':').expect("kid:key").1;
    for log in [&api.proc.log, &pdfgen.log] {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            !text.contains(secret),
            "{} logs the signing key",
            log.display()
        );
    }

    // The order id is the customer's capability: neither service logged
    // one of them in full, from the request to the voucher_ready.
    for log in [&api.proc.log, &pdfgen.log] {
        let leaks = test_support::leaked_order_ids(log, &ids);
        assert!(
            leaks.is_empty(),
            "{} logs full order ids:\n{}",
            log.display(),
            leaks.join("\n")
        );
    }
}

/// order-api publishes one message per reservation batch: one delivery that
/// carries several orders gives each its own voucher, and is acked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_message_gets_a_voucher_per_order_and_one_ack() {
    let h = Harness::new("batch").await;
    let vouchers = h.collector();
    h.subscribe_voucher("voucher.*").await;
    let pdfgen = h.pdf_generator("pdf-generator", &[]).await;

    let customers = [("Ada", "Lovelace"), ("张", "伟"), ("Zoë", "Ñúñez")];
    let ids: Vec<String> = customers
        .iter()
        .map(|_| format!("{:032x}", rand::random::<u128>()))
        .collect();
    let batch = serde_json::json!({
        "sku": h.sku,
        "product_name": "Batch drop",
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "orders": ids.iter().zip(customers).map(|(id, (first, last))| serde_json::json!({
            "order_id": id, "first_name": first, "last_name": last,
        })).collect::<Vec<_>>(),
    });
    let lowest = ids.iter().min().expect("ids").clone();
    h.publish(
        &h.exchange,
        "order.reserved",
        batch.to_string().as_bytes(),
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(lowest.into()),
    )
    .await;

    let messages = vouchers.wait_all(&ids, Duration::from_secs(20)).await;
    for (id, (first, last)) in ids.iter().zip(customers) {
        h.verify_voucher(
            &messages[id],
            id,
            &[&format!("{first} {last}"), "Batch drop"],
        )
        .await;
    }
    let m = eventually("the delivery is acked", Duration::from_secs(10), || async {
        let m = pdfgen.metrics(&h.http).await;
        (m.sum("messages_acked_total", &[r#"role="render""#]) >= 1.0).then_some(m)
    })
    .await;
    let render = [r#"role="render""#];
    for (metric, labels, want) in [
        ("messages_consumed_total", &render[..], 1.0),
        ("messages_acked_total", &render[..], 1.0),
        ("vouchers_uploaded_total", &[][..], ids.len() as f64),
    ] {
        assert_eq!(m.sum(metric, labels), want, "{metric}: {}", m.0);
    }
    // The renderer's report of the batch reaches the notifier too. The
    // vouchers it names were announced from their bucket events (sent during
    // each PUT, so before the report), so it announces none again: no
    // HEAD, presign or publish for them.
    let m = eventually("the report is acked", Duration::from_secs(20), || async {
        let m = pdfgen.metrics(&h.http).await;
        (m.sum("messages_acked_total", &[r#"role="announce""#]) >= 1.0).then_some(m)
    })
    .await;
    assert_eq!(
        m.sum("notifier_already_announced_total", &[]),
        ids.len() as f64,
        "{}",
        m.0
    );
    assert_eq!(
        m.sum("notifier_published_total", &[]),
        ids.len() as f64,
        "{}",
        m.0
    );
}

/// SIGTERM: the replica stops taking deliveries, finishes and acks what it
/// holds, and exits 0. A new replica then does the rest; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_then_exits() {
    let h = Harness::new("sigterm").await;
    let vouchers = h.collector();
    let dead = h.dead_letters();
    h.subscribe_voucher("voucher.*").await;
    let api = h.order_api().await;
    api.create_product(&h.sku, "Drain test", 100).await;
    let mut first = h
        .pdf_generator("pdf-generator-1", &[("PREFETCH", "8")])
        .await;

    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            api.order(&h.sku, "Ada", &format!("Drain {i}"), &phone(i))
                .await,
        );
    }
    eventually(
        "the first replica uploads",
        Duration::from_secs(30),
        || async {
            let m = first.metrics(&h.http).await;
            (m.sum("vouchers_uploaded_total", &[]) >= 1.0).then_some(())
        },
    )
    .await;
    first.signal("TERM");
    let status = first.wait_exit(Duration::from_secs(40)).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        first.log_tail()
    );
    let log = first.log_text();
    assert!(log.contains("draining"), "no drain in the log:\n{log}");
    assert!(!log.contains("drain timeout"), "drain timed out:\n{log}");
    let uploaded = log.matches("voucher uploaded").count();
    eprintln!(
        "the first replica uploaded {uploaded} of {} before exiting",
        ids.len()
    );

    // Everything it uploaded was acked, and nothing else was: what is left
    // ready in the queue is exactly the rest (once the outbox published all).
    let left = eventually(
        "the queue holds the rest",
        Duration::from_secs(20),
        || async {
            let q = h
                .admin()
                .await
                .queue_declare(
                    h.orders_queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("passive declare");
            let ready = q.message_count() as usize;
            (ready + uploaded == ids.len()).then_some(ready)
        },
    )
    .await;
    eprintln!("{left} deliveries waited for the next replica");

    let _second = h.pdf_generator("pdf-generator-2", &[]).await;
    vouchers.wait_all(&ids, Duration::from_secs(90)).await;
    for id in &ids {
        assert!(!dead.has(id), "{id} was dead-lettered");
    }
}
