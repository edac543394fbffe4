//! `drop`: simulates a limited-stock drop against running order-api replicas.
//!
//! It creates a product with S units, sends N customers with distinct phones
//! at concurrency C (a share of them retry with their Idempotency-Key, a share
//! submit twice), subscribes every accepted customer to its `voucher.<id>`
//! key, then prints a table, writes JSON, and checks the invariants against
//! PostgreSQL. It exits 1 if any invariant fails, 2 if the run could not start.
//!
//! ```text
//! cargo run --release -p drop -- --units 1000 --customers 20000 -c 64 \
//!     --target http://127.0.0.1:8080 --json drop.json
//! ```

mod load;
mod report;
mod vouchers;

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{
    load::{Live, Load},
    vouchers::Vouchers,
};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "drop",
    about = "Simulates a limited-stock drop and checks its invariants"
)]
pub struct Args {
    /// order-api base URLs; customers are spread over them round robin.
    #[arg(
        long = "target",
        env = "DROP_TARGETS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub targets: Vec<String>,
    /// Bearer token for `PUT /v1/products/{sku}`.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// The database order-api uses: the invariants are checked there.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The browsers' broker, where pdf-generator's notifier publishes
    /// `voucher.<id>`: the customers' voucher subscriptions live there.
    #[arg(
        long,
        env = "FANOUT_AMQP_URL",
        default_value = "amqp://drop:drop@127.0.0.1:5672/browser",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// The product's SKU; a fresh one by default.
    #[arg(long)]
    pub sku: Option<String>,
    /// S: units on sale.
    #[arg(short = 's', long, default_value_t = 1000)]
    pub units: u32,
    /// N: distinct customers (phones).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub customers: u32,
    /// C: requests in flight.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub concurrency: usize,
    /// Share of customers who submit a second time (no key, phone respelled).
    #[arg(long, default_value_t = 0.05)]
    pub duplicates: f64,
    /// Share of customers who send an Idempotency-Key and retry with it.
    #[arg(long, default_value_t = 0.05)]
    pub retries: f64,
    /// Do not subscribe to vouchers nor require them (no pdf-generator running).
    #[arg(long)]
    pub no_vouchers: bool,
    /// How long to wait for the last voucher after the last request.
    #[arg(long, default_value_t = 60)]
    pub voucher_timeout_secs: u64,
    /// Download this many delivered vouchers and check they are PDFs.
    #[arg(long, default_value_t = 5)]
    pub sample_pdfs: usize,
    /// Per-request timeout.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Count request errors (503, timeouts…) in the report without failing.
    #[arg(long)]
    pub allow_errors: bool,
    /// Clients of a drop under faults: every customer sends an
    /// Idempotency-Key and retries an error (503, 5xx, timeout, refused
    /// connection) with it up to this many times, waiting as `Retry-After`
    /// says (else a backoff), as the page does. 0: no retries.
    #[arg(long, default_value_t = 0)]
    pub retry_errors: u32,
    /// Customers arriving per second, spread evenly (0: every worker starts
    /// its next customer at once). A paced drop lasts customers/rate seconds,
    /// long enough for the fault harness to strike while it sells.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seed for the customer plan (random by default).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write every request and its outcome here, one JSON object a line
    /// (customer, phone, key, sent and done as Unix seconds, answer,
    /// order_id, error): the history the fault harness's checker reads.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("drop: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(!args.targets.is_empty(), "--target is required");
    let targets: Vec<String> = args
        .targets
        .iter()
        .map(|t| t.trim_end_matches('/').to_owned())
        .collect();
    let run_id = format!("{:08x}", rand::random::<u32>());
    let sku = args.sku.clone().unwrap_or_else(|| format!("drop-{run_id}"));
    let seed = args.seed.unwrap_or_else(rand::random);
    let started_at = chrono::Utc::now();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.request_timeout_secs))
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // The product, created (or restocked) through the admin API.
    let put = http
        .put(format!("{}/v1/products/{sku}", targets[0]))
        .bearer_auth(&args.admin_token)
        .json(&serde_json::json!({"name": format!("Drop {run_id}"), "stock": args.units}))
        .send()
        .await
        .context("PUT /v1/products")?;
    anyhow::ensure!(
        put.status().is_success(),
        "PUT /v1/products/{sku} answered {}: {}",
        put.status(),
        put.text().await.unwrap_or_default()
    );

    let vouchers = if args.no_vouchers {
        None
    } else {
        Some(
            Vouchers::connect(&args.amqp_url)
                .await
                .context("subscribing to vouchers")?,
        )
    };

    // Retrying clients all hold a key: a retry without one could reserve twice.
    let key_share = if args.retry_errors > 0 {
        1.0
    } else {
        args.retries
    };
    let customers = load::plan(args.customers, args.duplicates, key_share, &run_id, seed);
    let planned = load::planned_requests(&customers);
    let live = Arc::new(Live::default());
    // The fault harness ends a paced drop once its faults are done: new
    // arrivals stop, what is under way finishes and is reported.
    tokio::spawn({
        let live = Arc::clone(&live);
        async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("drop: stopping: no further customers arrive");
            live.stop.store(true, Ordering::Relaxed);
        }
    });
    let bar = progress(
        args.no_progress,
        planned,
        "{prefix} [{bar:30}] {pos}/{len} {per_sec} {msg}",
    );
    bar.set_prefix("orders  ");
    let on_accepted: load::OnAccepted = match &vouchers {
        Some(v) => {
            let v = Arc::clone(v);
            Arc::new(move |id: &str| v.subscribe(id))
        }
        None => Arc::new(|_: &str| {}),
    };
    let on_attempt = {
        let bar = bar.clone();
        let live = Arc::clone(&live);
        Arc::new(move || {
            bar.inc(1);
            let n = live.attempts.load(Ordering::Relaxed);
            if n % 256 == 0 {
                bar.set_message(format!(
                    "accepted {} sold_out {} errors {}",
                    live.accepted.load(Ordering::Relaxed),
                    live.sold_out.load(Ordering::Relaxed),
                    live.errors.load(Ordering::Relaxed)
                ));
            }
        })
    };
    let (stats, load_started) = Load {
        http: http.clone(),
        targets: targets.clone(),
        sku: sku.clone(),
        customers,
        concurrency: args.concurrency,
        retry_errors: args.retry_errors,
        history: args.history.is_some(),
        rate: args.rate,
        live: Arc::clone(&live),
        on_accepted,
        on_attempt,
    }
    .run()
    .await;
    let load_ended = stats.last_response.unwrap_or_else(Instant::now);
    bar.finish_with_message(format!(
        "accepted {} sold_out {} errors {}",
        live.accepted.load(Ordering::Relaxed),
        live.sold_out.load(Ordering::Relaxed),
        live.errors.load(Ordering::Relaxed)
    ));

    if let Some(path) = &args.history {
        write_history(path, &stats.history)?;
    }
    let accepted_ids = load::accepted_by_id(&stats.accepted);
    if let Some(v) = &vouchers {
        let bar = progress(
            args.no_progress,
            accepted_ids.len() as u64,
            "{prefix} [{bar:30}] {pos}/{len} {per_sec}",
        );
        bar.set_prefix("vouchers");
        v.wait(
            accepted_ids.len(),
            Duration::from_secs(args.voucher_timeout_secs),
            |got| bar.set_position(got as u64),
        )
        .await;
        bar.finish();
    }

    let input = report::Input {
        args: &args,
        sku: &sku,
        seed,
        started_at,
        load_started,
        load_ended,
        planned,
        stats: &stats,
        vouchers: vouchers.as_deref(),
        http: &http,
        targets: &targets,
    };
    let report = report::build(input).await?;
    report::print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("drop: wrote {}", path.display());
    }
    Ok(report["ok"] == true)
}

/// The history as JSON lines, sorted by send time, readable by its owner only:
/// it names every order id in full.
fn write_history(path: &std::path::Path, history: &[serde_json::Value]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut lines: Vec<&serde_json::Value> = history.iter().collect();
    lines.sort_by(|a, b| {
        a["sent"]
            .as_f64()
            .partial_cmp(&b["sent"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for line in lines {
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!(
        "drop: wrote {} requests to {}",
        history.len(),
        path.display()
    );
    Ok(())
}

fn progress(hidden: bool, len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
