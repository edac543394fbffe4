//! The report: rates, percentiles, vouchers, errors, and the invariants
//! checked against PostgreSQL.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::{
    Args,
    load::{self, Stats},
    vouchers::Vouchers,
};

pub struct Input<'a> {
    pub args: &'a Args,
    pub sku: &'a str,
    pub seed: u64,
    pub started_at: DateTime<Utc>,
    pub load_started: Instant,
    pub load_ended: Instant,
    pub planned: u64,
    pub stats: &'a Stats,
    pub vouchers: Option<&'a Vouchers>,
    pub http: &'a reqwest::Client,
    pub targets: &'a [String],
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn rate(n: u64, window: Duration) -> Value {
    if n == 0 || window.is_zero() {
        return Value::Null;
    }
    json!(round(n as f64 / secs(window), 1))
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn percentiles_ms(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    let ms = |micros: u64| round(micros as f64 / 1000.0, 3);
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p95": ms(h.value_at_quantile(0.95)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
    })
}

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

pub async fn build(input: Input<'_>) -> anyhow::Result<Value> {
    let Input {
        args,
        sku,
        seed,
        started_at,
        load_started,
        load_ended,
        planned,
        stats,
        vouchers,
        http,
        targets,
    } = input;
    let duration = load_ended.saturating_duration_since(load_started);
    let attempts = stats.attempts();
    let accepted_ids = load::accepted_by_id(&stats.accepted);
    let accepted = accepted_ids.len() as u64;
    let sold_out_answers = stats.counts.get("sold_out").copied().unwrap_or(0);
    let sold_out_now = accepted >= u64::from(args.units);
    // Accepted orders/s over the window in which units were being sold; sold
    // out answers/s over the window after the first one.
    let accept_window = stats.last_accepted.map_or(Duration::ZERO, |t| {
        t.saturating_duration_since(load_started)
    });
    let sold_out_window = stats
        .first_sold_out
        .map_or(Duration::ZERO, |t| load_ended.saturating_duration_since(t));

    let mut checks = Vec::new();
    let expected = u64::from(args.units).min(u64::from(args.customers));
    checks.push(Check {
        name: "accepted == min(S, distinct customers)",
        ok: accepted == expected,
        detail: format!(
            "accepted {accepted}, min(S={}, N={}) = {expected}",
            args.units, args.customers
        ),
    });

    // The database: exactly the accepted orders, one per phone.
    let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL for the checks")?;
    let conn_task = tokio::spawn(connection);
    let rows = db
        .query("SELECT order_id, phone FROM orders WHERE sku = $1", &[&sku])
        .await?;
    let product = db
        .query_opt(
            "SELECT stock, reserved FROM products WHERE sku = $1",
            &[&sku],
        )
        .await?;
    drop(db);
    conn_task.abort();
    let db_ids: HashSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let db_phones: HashSet<String> = rows.iter().map(|r| r.get::<_, String>(1)).collect();
    let ours: HashSet<String> = accepted_ids.keys().map(|k| (*k).to_owned()).collect();
    let missing_in_db = ours.difference(&db_ids).count();
    let unknown_in_db = db_ids.difference(&ours).count();
    let stock: Option<i32> = product.as_ref().map(|p| p.get(0));
    let reserved: Option<i32> = product.as_ref().map(|p| p.get(1));
    checks.push(Check {
        name: "the database holds exactly the accepted orders",
        ok: missing_in_db == 0
            && unknown_in_db == 0
            && reserved.is_some_and(|r| i64::from(r) == rows.len() as i64)
            && stock.is_some_and(|s| rows.len() as i64 <= i64::from(s)),
        detail: format!(
            "{} rows, {missing_in_db} accepted but absent, {unknown_in_db} present but never acknowledged, products.reserved = {reserved:?}, stock = {stock:?}",
            rows.len()
        ),
    });
    let accepted_phones: HashSet<&str> = stats.accepted.iter().map(|a| a.phone.as_str()).collect();
    checks.push(Check {
        name: "no phone appears twice",
        ok: db_phones.len() == rows.len()
            && accepted_phones.len() == accepted_ids.len()
            && stats.duplicate_accepted.is_empty(),
        detail: format!(
            "{} distinct phones in {} rows; {} customers accepted twice",
            db_phones.len(),
            rows.len(),
            stats.duplicate_accepted.len()
        ),
    });
    checks.push(Check {
        name: "idempotent retries replay the first answer",
        ok: stats.replay_mismatches.is_empty(),
        detail: format!(
            "{} retries compared, {} differed{}",
            stats.replays_checked,
            stats.replay_mismatches.len(),
            stats
                .replay_mismatches
                .first()
                .map(|m| format!(" (e.g. {m})"))
                .unwrap_or_default()
        ),
    });
    if !args.allow_errors {
        let errors: u64 = stats.errors.values().sum();
        checks.push(Check {
            name: "no request failed",
            ok: errors == 0 && stats.undecided == 0,
            detail: format!(
                "{errors} failed requests, {} customers undecided",
                stats.undecided
            ),
        });
    }

    let voucher_report = match vouchers {
        None => Value::Null,
        Some(v) => {
            let (report, voucher_checks) = voucher_report(
                v,
                &accepted_ids,
                load_started,
                http,
                targets,
                args.sample_pdfs,
            )
            .await;
            checks.extend(voucher_checks);
            report
        }
    };

    let ok = checks.iter().all(|c| c.ok);
    let latency: serde_json::Map<String, Value> = stats
        .latency
        .iter()
        .map(|(label, h)| ((*label).to_owned(), percentiles_ms(h)))
        .collect();
    Ok(json!({
        "tool": "order-api drop simulator",
        "started_at": started_at.to_rfc3339(),
        "targets": targets,
        "sku": sku,
        "seed": seed,
        "units": args.units,
        "customers": args.customers,
        "concurrency": args.concurrency,
        "duplicate_share": args.duplicates,
        "retry_share": args.retries,
        "planned_requests": planned,
        "duration_s": round(secs(duration), 3),
        "attempts": attempts,
        "attempts_per_s": rate(attempts, duration),
        "accepted": accepted,
        "accepted_per_s": rate(accepted, accept_window),
        "sold_out_answers": sold_out_answers,
        "sold_out_per_s": rate(sold_out_answers, sold_out_window),
        "rate_windows": "attempts/s over the whole load; accepted/s from the first request to the last 201; sold-out/s from the first sold_out answer to the last answer",
        "time_to_sell_out_s": if sold_out_now { json!(round(secs(accept_window), 3)) } else { Value::Null },
        "answers": stats.counts,
        "latency_ms": latency,
        "vouchers": voucher_report,
        "errors": stats.errors,
        "undecided_customers": stats.undecided,
        "invariants": checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
        "ok": ok,
    }))
}

async fn voucher_report(
    v: &Vouchers,
    accepted: &HashMap<&str, &load::Accepted>,
    load_started: Instant,
    http: &reqwest::Client,
    targets: &[String],
    sample_pdfs: usize,
) -> (Value, Vec<Check>) {
    let (received, accepted_at, malformed, redelivered, bind_errors) = {
        let s = v.state.lock().unwrap_or_else(|p| p.into_inner());
        (
            s.received.clone(),
            s.accepted_at.clone(),
            s.malformed.clone(),
            s.redelivered,
            s.bind_errors.clone(),
        )
    };
    let mut e2e = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
    let mut last = None::<Instant>;
    for (id, r) in &received {
        if let Some(t0) = accepted_at.get(id) {
            let micros =
                u64::try_from(r.at.saturating_duration_since(*t0).as_micros()).unwrap_or(u64::MAX);
            e2e.saturating_record(micros.max(1));
        }
        last = Some(last.map_or(r.at, |l| l.max(r.at)));
    }
    let delivered = accepted
        .keys()
        .filter(|id| received.contains_key(**id))
        .count();
    let expected = accepted.len();
    let share = if expected == 0 {
        1.0
    } else {
        delivered as f64 / expected as f64
    };
    // Vouchers not announced on the topic: does the order say it is ready?
    let mut missing: Vec<&str> = accepted
        .keys()
        .filter(|id| !received.contains_key(**id))
        .copied()
        .collect();
    missing.sort_unstable();
    let mut ready_not_announced = 0;
    for id in missing.iter().take(50) {
        let url = format!("{}/v1/orders/{id}", targets[0]);
        if let Ok(r) = http.get(url).send().await {
            if let Ok(body) = r.json::<Value>().await {
                if body["status"] == "voucher_ready" {
                    ready_not_announced += 1;
                }
            }
        }
    }
    // A few vouchers downloaded through their presigned URL.
    let mut sampled = 0;
    let mut sampled_ok = 0;
    let mut sample_failures = Vec::new();
    for r in received.values().take(sample_pdfs) {
        sampled += 1;
        match http.get(&r.url).send().await {
            Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                Ok(bytes) if bytes.starts_with(b"%PDF-") => sampled_ok += 1,
                Ok(_) => sample_failures.push("not a PDF".to_owned()),
                Err(e) => sample_failures.push(e.to_string()),
            },
            Ok(resp) => sample_failures.push(format!("HTTP {}", resp.status())),
            Err(e) => sample_failures.push(e.to_string()),
        }
    }
    let window = last.map_or(Duration::ZERO, |l| {
        l.saturating_duration_since(load_started)
    });
    // From the first 201 of the drop to its last voucher_ready: how long the
    // vouchers take to get out, without the time before the first sale.
    let first_accepted = accepted_at.values().min().copied();
    let out_window = match (first_accepted, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    let report = json!({
        "expected": expected,
        "delivered": delivered,
        "delivered_share": round(share, 4),
        "e2e_ms": percentiles_ms(&e2e),
        "e2e_from": "the 201 that accepted the order, to voucher_ready on voucher.<order_id>",
        "throughput_per_s": rate(delivered as u64, window),
        "throughput_window": "from the first request to the last voucher_ready",
        "last_voucher_after_s": round(secs(window), 3),
        "first_201_to_last_voucher_s": round(secs(out_window), 3),
        "throughput_after_first_201_per_s": rate(delivered as u64, out_window),
        "ready_but_not_announced": ready_not_announced,
        "malformed_or_foreign": malformed.len(),
        "redelivered": redelivered,
        "bind_errors": bind_errors.len(),
        "sampled_pdfs": sampled,
        "sampled_pdfs_ok": sampled_ok,
    });
    let checks = vec![
        Check {
            name: "every accepted order got its voucher",
            ok: delivered == expected && bind_errors.is_empty(),
            detail: format!(
                "{delivered}/{expected} voucher_ready received; {} bind errors; {ready_not_announced} of the first {} missing ones are ready but were not announced",
                bind_errors.len(),
                missing.len().min(50)
            ),
        },
        Check {
            name: "voucher messages follow the contract",
            ok: malformed.is_empty(),
            detail: format!(
                "{} malformed{}",
                malformed.len(),
                malformed
                    .first()
                    .map(|m| format!(" (e.g. {m})"))
                    .unwrap_or_default()
            ),
        },
        Check {
            name: "sampled vouchers download as PDFs",
            ok: sampled_ok == sampled && (expected == 0 || sample_pdfs == 0 || sampled > 0),
            detail: format!(
                "{sampled_ok}/{sampled} ok{}",
                sample_failures
                    .first()
                    .map(|m| format!(" (e.g. {m})"))
                    .unwrap_or_default()
            ),
        },
    ];
    (report, checks)
}

/// The human table.
pub fn print_table(r: &Value) {
    let num = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    println!();
    println!(
        "drop {}: S={} N={} C={} duplicates={} retries={}",
        r["sku"].as_str().unwrap_or(""),
        r["units"],
        r["customers"],
        r["concurrency"],
        r["duplicate_share"],
        r["retry_share"]
    );
    println!("{:-<72}", "");
    println!("{:<34}{:>14}", "duration (s)", num(&r["duration_s"]));
    println!(
        "{:<34}{:>14}{:>14}",
        "attempts",
        num(&r["attempts"]),
        format!("{}/s", num(&r["attempts_per_s"]))
    );
    println!(
        "{:<34}{:>14}{:>14}",
        "accepted orders",
        num(&r["accepted"]),
        format!("{}/s", num(&r["accepted_per_s"]))
    );
    println!(
        "{:<34}{:>14}{:>14}",
        "sold-out answers",
        num(&r["sold_out_answers"]),
        format!("{}/s", num(&r["sold_out_per_s"]))
    );
    println!(
        "{:<34}{:>14}",
        "time to sell out (s)",
        num(&r["time_to_sell_out_s"])
    );
    println!();
    println!(
        "{:<20}{:>10}{:>11}{:>11}{:>11}{:>11}",
        "latency (ms)", "count", "p50", "p95", "p99", "max"
    );
    if let Some(map) = r["latency_ms"].as_object() {
        for (label, p) in map {
            if p["count"] == 0 {
                continue;
            }
            println!(
                "{:<20}{:>10}{:>11}{:>11}{:>11}{:>11}",
                label,
                num(&p["count"]),
                num(&p["p50"]),
                num(&p["p95"]),
                num(&p["p99"]),
                num(&p["max"])
            );
        }
    }
    let v = &r["vouchers"];
    if !v.is_null() {
        println!();
        println!(
            "vouchers: {}/{} delivered ({}), e2e p50 {} ms, p99 {} ms, {} vouchers/s",
            num(&v["delivered"]),
            num(&v["expected"]),
            num(&v["delivered_share"]),
            num(&v["e2e_ms"]["p50"]),
            num(&v["e2e_ms"]["p99"]),
            num(&v["throughput_per_s"])
        );
    }
    if let Some(errors) = r["errors"].as_object() {
        if !errors.is_empty() {
            println!();
            for (kind, n) in errors {
                println!("error {kind}: {n}");
            }
        }
    }
    println!();
    if let Some(checks) = r["invariants"].as_array() {
        for c in checks {
            println!(
                "[{}] {}: {}",
                if c["ok"] == true { "ok" } else { "FAIL" },
                c["name"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or("")
            );
        }
    }
    println!(
        "{}",
        if r["ok"] == true {
            "drop: all invariants hold"
        } else {
            "drop: INVARIANTS FAILED"
        }
    );
}
