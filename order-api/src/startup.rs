//! Wiring: builds the adapters, starts the background tasks, serves HTTP, and
//! shuts everything down in order on SIGTERM or Ctrl-C.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    broker::Broker,
    config::Config,
    db,
    http::{self, AppState, Inner},
    outbox::{self, Relay},
    reserve::Reserver,
    stock_flag::StockFlag,
    telemetry,
    vouchers::Vouchers,
};

pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = telemetry::init_metrics()?;
    migrate_with_retry(&config).await?;
    let pool = db::pool(&config)?;

    // One token for the background tasks, cancelled after HTTP has drained,
    // so that in-flight requests can still publish and reconcile.
    let background = CancellationToken::new();
    telemetry::spawn_metrics_upkeep(metrics.clone(), background.clone());
    let broker = Arc::new(Broker::new(
        config.amqp_url.clone(),
        config.orders_exchange.clone(),
    ));
    let flag = Arc::new(StockFlag::new(&config.redis_url, Arc::clone(&broker))?);
    flag.start(background.clone());
    flag.wait_connected(Duration::from_secs(2)).await;
    flag.spawn_reconciler(
        pool.clone(),
        config.stock_reconcile_interval,
        background.clone(),
    );
    let wakeup = Arc::new(Notify::new());
    let relay = tokio::spawn(
        Relay::new(
            pool.clone(),
            Arc::clone(&broker),
            Arc::clone(&wakeup),
            config.outbox_linger,
        )
        .run(background.clone()),
    );
    outbox::spawn_backlog_gauge(pool.clone(), Duration::from_secs(5), background.clone());
    let reserver = Reserver::new(pool.clone(), Arc::clone(&flag), wakeup, config.max_batch);

    let state = AppState::new(Inner {
        pool: pool.clone(),
        reserver,
        flag: Arc::clone(&flag),
        vouchers: Vouchers::new(&config.s3),
        stomp: config.stomp.clone(),
        metrics,
        admin_token_digest: Sha256::digest(config.admin_token.expose_secret().as_bytes()).into(),
        accepting: AtomicBool::new(true),
    });

    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR={}", config.listen_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, dev_profile = config.dev_profile, "order-api listening on http://{addr}");

    let stop = CancellationToken::new();
    tokio::spawn(wait_for_signal(state.clone(), stop.clone()));
    let server = axum::serve(listener, http::app(state))
        .with_graceful_shutdown(stop.clone().cancelled_owned());
    // Graceful shutdown waits for in-flight requests; bound that wait.
    let drain_deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        result = server => result.context("HTTP server")?,
        () = drain_deadline => tracing::warn!("drain timed out; closing remaining connections"),
    }
    tracing::info!("HTTP drained; stopping background tasks");

    background.cancel();
    if tokio::time::timeout(Duration::from_secs(5), relay)
        .await
        .is_err()
    {
        tracing::warn!("outbox relay did not stop in time; unpublished rows stay in the outbox");
    }
    flag.close().await;
    broker.close().await;
    pool.close();
    tracing::info!("order-api stopped");
    Ok(())
}

/// On SIGTERM or Ctrl-C: fail readiness first, then stop accepting.
async fn wait_for_signal(state: AppState, stop: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
    state.stop_accepting();
    stop.cancel();
}

/// PostgreSQL may still be starting (or failing over) when a replica boots:
/// retry for a while before giving up, so the orchestrator's restart loop is
/// the last resort, not the first.
async fn migrate_with_retry(config: &Config) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(250);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match db::migrate(config).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "migrations not applied yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
