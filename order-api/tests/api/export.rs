//! The operator's exports: the orders CSV (its columns, and that it streams
//! in flat memory) and the stats.

use crate::helpers::*;

/// The resident set of a process, in bytes (Linux).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Downloads an export, sampling the server's RSS every MiB received:
/// (the body's size, its line count, the highest RSS seen).
async fn download(app: &App, sku: &str) -> (u64, u64, u64) {
    let r = app
        .admin_get(&format!("/v1/products/{sku}/orders.csv"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    let (mut size, mut lines, mut peak, mut next_sample) = (0u64, 0u64, rss_bytes(app.pid()), 0u64);
    let mut r = r;
    while let Some(chunk) = r.chunk().await.expect("chunk") {
        size += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        if size >= next_sample {
            peak = peak.max(rss_bytes(app.pid()));
            next_sample = size + (1 << 20);
        }
    }
    (size, lines, peak.max(rss_bytes(app.pid())))
}

#[tokio::test]
async fn the_csv_has_every_order_with_its_fate() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("csv");
    app.put_product(&sku, "Tee", 5).await;
    let redeemed = app.reserve_one(&sku, 91_000, 1).await;
    let cancelled = app.reserve_one(&sku, 91_000, 2).await;
    let (status, quoted) = app
        .order(
            &serde_json::json!({"sku": sku, "first_name": "Zoë \"Z\", Jr", "last_name": "张",
                                "phone": phone(91_000, 3)}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{quoted}");
    let (_, token) = app.create_scanner("Counter 7").await;
    assert_eq!(app.redeem(&token, &redeemed, "n").await.0, 200);
    assert_eq!(app.cancel(&cancelled).await.0, 200);

    let text = app
        .admin_get(&format!("/v1/products/{sku}/orders.csv"))
        .await
        .text()
        .await
        .expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "order_id,created_at,first_name,last_name,phone,status,redeemed_at,scanner,cancelled_at"
    );
    assert_eq!(lines.len(), 4, "{text}");
    let row = |id: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for an order: {text}"))
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    let r = row(&redeemed);
    assert_eq!(r[4], phone(91_000, 1).replace(' ', ""));
    assert_eq!(r[5], "redeemed");
    assert!(r[6].ends_with('Z') && r[6].contains('T'), "{r:?}");
    assert_eq!((r[7].as_str(), r[8].as_str()), ("Counter 7", ""));
    let c = row(&cancelled);
    assert_eq!(
        (c[5].as_str(), c[6].as_str(), c[7].as_str()),
        ("cancelled", "", "")
    );
    assert!(c[8].ends_with('Z'), "{c:?}");
    let quoted_id = quoted["order_id"].as_str().expect("id");
    let q = lines
        .iter()
        .find(|l| l.starts_with(quoted_id))
        .expect("row");
    assert!(q.contains(r#","Zoë ""Z"", Jr",张,"#), "CSV quoting: {q}");

    // Admin only, and 404 for an unknown SKU.
    for path in [
        format!("/v1/products/{sku}/orders.csv"),
        format!("/v1/products/{sku}/stats"),
    ] {
        let r = app.http.get(app.url(&path)).send().await.expect("GET");
        assert_eq!(r.status(), 401, "{path}");
    }
    for path in [
        "/v1/products/NOPE-1/orders.csv",
        "/v1/products/NOPE-1/stats",
    ] {
        let (status, body) = split(app.admin_get(path).await).await;
        assert_eq!((status, error_code(&body)), (404, "unknown_sku"), "{path}");
    }
    let (status, stats) = split(app.admin_get(&format!("/v1/products/{sku}/stats")).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        stats,
        serde_json::json!({"sku": sku, "stock": 5, "reserved": 2, "redeemed": 1, "cancelled": 1})
    );
}

/// 100,000 orders with long names (about 50 MB of CSV) stream through
/// order-api without its memory growing with them: the peak RSS during the
/// big export stays within a bound far below the body's size, measured
/// against the same process after a small export.
#[tokio::test]
async fn a_100k_order_csv_streams_in_flat_memory() {
    const ORDERS: i64 = 100_000;
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let small = unique_sku("csv-small");
    let big = unique_sku("csv-big");
    app.put_product(&small, "Small", 10).await;
    for i in 0..10 {
        app.reserve_one(&small, 92_000, i).await;
    }
    app.put_product(&big, "Big", ORDERS).await;
    // Bulk-inserted: 100 two-byte characters per name.
    db.client()
        .await
        .execute(
            "WITH ins AS (
                 INSERT INTO orders (order_id, sku, first_name, last_name, phone, status)
                 SELECT md5($1 || g), $1, repeat('é', 100), repeat('ñ', 100),
                        '+1555' || lpad(g::text, 7, '0'), 'voucher_ready'
                 FROM generate_series(1, $2::bigint) g
                 RETURNING 1)
             UPDATE products SET reserved = (SELECT count(*) FROM ins) WHERE sku = $1",
            &[&big, &ORDERS],
        )
        .await
        .expect("bulk insert");

    let (_, small_lines, small_peak) = download(&app, &small).await;
    assert_eq!(small_lines, 11);
    let (size, lines, big_peak) = download(&app, &big).await;
    assert_eq!(lines, ORDERS as u64 + 1, "every order and the header");
    assert!(size > 45 << 20, "the body is {size} bytes");
    let growth = big_peak.saturating_sub(small_peak);
    eprintln!(
        "orders.csv: {} MiB streamed; server RSS {} MiB after a small export, peak {} MiB",
        size >> 20,
        small_peak >> 20,
        big_peak >> 20
    );
    assert!(
        growth < 24 << 20,
        "RSS grew by {} MiB while streaming {} MiB",
        growth >> 20,
        size >> 20
    );
}
