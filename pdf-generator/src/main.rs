//! pdf-generator: turns accepted orders into PDF vouchers and tells each
//! customer, on their own topic, where to download theirs.
//!
//! Code tour, in the order a message travels:
//! - [`config`]: environment variables (docs/design.md), read once.
//! - [`consumer`]: the shared consume loop: acks, prefetch, reconnects, drain.
//! - [`worker`]: the renderer role: [`order`] message → [`render`] → [`store`].
//! - [`notifier`]: the notify role: bucket [`events`] → `voucher.<id>` publish
//!   into the browsers' broker ([`fanout`]).
//! - [`retry`]: backoff and the retry budget both roles use.
//! - [`http`] and [`metrics`]: /healthz, /readyz, /metrics.
//! - [`publish`]: publishing with confirms, for both roles.
//! - [`telemetry`]: log setup.
//! - [`bench`]: `pdf-generator bench-render N`, the renderer alone, for make bench.
//!
//! What pdf-generator shares with order-api (the order id, the messages, the
//! broker names, the S3 client, the rule for environment variables) is in
//! the drop-contract crate.

mod bench;
mod config;
mod consumer;
mod events;
mod fanout;
mod http;
mod metrics;
mod notifier;
mod order;
mod publish;
mod render;
mod retry;
mod store;
mod telemetry;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::Readiness;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, rest @ ..] = args.as_slice() {
        if command == "bench-render" {
            return bench::run(rest.first().map_or("2000", String::as_str));
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pdf-generator: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "pdf-generator failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let metrics_handle = metrics::install().context("installing the metrics recorder")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));

    let store = store::Store::new(&config.s3);
    let mut readiness = Readiness::default();
    let roles = TaskTracker::new();

    if config.role.renders() {
        // Parsing a 4 MB CJK font takes a moment; keep it off the runtime.
        let printer = tokio::task::spawn_blocking(render::Printer::load)
            .await
            .context("loading fonts")??;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let renderer = worker::Renderer {
            store: store.clone(),
            printer: Arc::new(printer),
            exchange: config.orders_exchange.clone(),
            queue: config.orders_queue.clone(),
            max_attempts: config.max_attempts,
            render_slots: Arc::new(Semaphore::new(cores)),
            order_slots: Arc::new(Semaphore::new(config.prefetch.into())),
            signing_key: config.signing_key.clone(),
        };
        match &config.signing_key {
            // The key id only: the key is a secret.
            Some(key) => tracing::info!(kid = key.kid(), "voucher codes are signed"),
            None => tracing::warn!(
                "VOUCHER_SIGNING_KEY is not set: vouchers carry the bare order id, which only online redemption accepts"
            ),
        }
        roles.spawn(consumer::run(
            Arc::new(renderer),
            consumer_settings(&config),
            readiness.track("render"),
            shutdown.clone(),
        ));
    }
    let fanout = Arc::new(fanout::Fanout::new(config.fanout_amqp_url.clone()));
    if config.role.notifies() {
        let notifier = notifier::Notifier {
            store: store.clone(),
            queue: config.events_queue.clone(),
            max_attempts: config.max_attempts,
            url_ttl: config.voucher_url_ttl,
            fanout: Arc::clone(&fanout),
            // A 10,000-unit drop fits twice; about 100 bytes each.
            announced: notifier::Announced::new(20_000),
        };
        let notifier = Arc::new(notifier);
        let announcer = notifier::StoredAnnouncer {
            notifier: Arc::clone(&notifier),
            exchange: config.orders_exchange.clone(),
            queue: config.stored_queue.clone(),
        };
        roles.spawn(consumer::run(
            notifier,
            consumer_settings(&config),
            readiness.track("notify"),
            shutdown.clone(),
        ));
        roles.spawn(consumer::run(
            Arc::new(announcer),
            consumer_settings(&config),
            readiness.track("announce"),
            shutdown.clone(),
        ));
    }
    roles.close();

    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("binding METRICS_ADDR {}", config.metrics_addr))?;
    tracing::info!(addr = %listener.local_addr()?, role = ?config.role, "pdf-generator started");
    let http_shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let app = http::app(metrics_handle.clone(), readiness);
        let stop = http_shutdown.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });
    tokio::spawn(metrics::upkeep(metrics_handle, shutdown.clone()));

    shutdown.cancelled().await;
    // Consumers bound their own drain by SHUTDOWN_TIMEOUT_SECS; the margin
    // covers closing connections to a broker that may not answer.
    let bound = config.shutdown_timeout + Duration::from_secs(5);
    if tokio::time::timeout(bound, roles.wait()).await.is_err() {
        tracing::warn!("roles did not stop in time; exiting anyway");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), fanout.close()).await;
    // The HTTP server stops last so /readyz reports the drain while it runs.
    http_shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "metrics server error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics server task failed"),
        Ok(Ok(Ok(()))) | Err(_) => {}
    }
    tracing::info!("pdf-generator stopped");
    Ok(())
}

fn consumer_settings(config: &Config) -> consumer::Settings {
    consumer::Settings {
        amqp_url: config.amqp_url.clone(),
        prefetch: config.prefetch,
        drain_timeout: config.shutdown_timeout,
    }
}

/// Cancels `shutdown` on SIGTERM (Kubernetes, `kill`) or ctrl-c. A second
/// signal exits at once, for an operator who does not want to wait the drain.
async fn wait_for_signal(shutdown: CancellationToken) {
    signal().await;
    tracing::info!("shutdown signal received; draining (send again to exit now)");
    shutdown.cancel();
    signal().await;
    tracing::warn!("second signal; exiting without draining");
    std::process::exit(130);
}

#[cfg(unix)]
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; ctrl-c only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn signal() {
    let _ = tokio::signal::ctrl_c().await;
}
