//! Wiring: [`build`] migrates, builds the adapters, starts the background
//! tasks and binds the listener; [`Application::run`] serves HTTP and shuts
//! everything down in order on SIGTERM or Ctrl-C.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

use deadpool_postgres::Pool;

use crate::{
    broker::Broker,
    config::Config,
    db,
    health::DbHealth,
    http::{self, AppState, Inner},
    outbox::{self, Relay},
    reserve::Reserver,
    stock::{self, Announcer, Stock, StockFlag},
    telemetry,
    voucher_deletions::VoucherDeletions,
    voucher_status::VoucherStatusConsumer,
    vouchers::Vouchers,
};

/// A built application: migrated, connected (lazily) and bound, but not yet
/// serving. Tests build one on port 0 and read [`Application::addr`].
pub struct Application {
    config: Config,
    listener: TcpListener,
    metrics_listener: TcpListener,
    state: AppState,
    background: CancellationToken,
    relay: tokio::task::JoinHandle<()>,
    broker: Arc<Broker>,
    stock: Arc<Stock>,
    pool: Pool,
}

/// Migrates the schema, builds the adapters, starts the background tasks
/// and binds `LISTEN_ADDR`.
pub async fn build(config: Config) -> anyhow::Result<Application> {
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
    let flag = Arc::new(StockFlag::new(&config.redis_url)?);
    flag.start(background.clone());
    flag.wait_connected(Duration::from_secs(2)).await;
    let stock = Arc::new(Stock::new(flag, Announcer::new(Arc::clone(&broker))));
    stock::spawn_reconciler(
        Arc::clone(&stock),
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
    tokio::spawn(
        VoucherStatusConsumer {
            pool: pool.clone(),
            amqp_url: config.amqp_url.clone(),
            exchange: config.orders_exchange.clone(),
            queue: config.voucher_status_queue.clone(),
        }
        .run(background.clone()),
    );
    if config.voucher_keys.is_empty() {
        tracing::warn!(
            "VOUCHER_PUBLIC_KEYS is not set: no signed voucher code verifies; bare order-id codes still redeem"
        );
    }
    let deletions_wakeup = Arc::new(Notify::new());
    tokio::spawn(
        VoucherDeletions::new(pool.clone(), &config.s3, Arc::clone(&deletions_wakeup))
            .run(background.clone()),
    );
    let db_health = DbHealth::spawn(db::pg_config(&config)?, background.clone());
    let reserver = Reserver::new(pool.clone(), Arc::clone(&stock), wakeup, config.max_batch);

    let state = AppState::new(Inner {
        pool: pool.clone(),
        reserver,
        stock: Arc::clone(&stock),
        db_health,
        vouchers: Vouchers::new(&config.s3, config.voucher_url_ttl),
        stomp: config.stomp.clone(),
        metrics,
        admin_token_digest: Sha256::digest(config.admin_token.expose_secret().as_bytes()).into(),
        voucher_keys: config.voucher_keys.clone(),
        deletions_wakeup: Arc::clone(&deletions_wakeup),
        accepting: AtomicBool::new(true),
        draining: tokio_util::sync::CancellationToken::new(),
        stock_events_lifetime: config.stock_events_lifetime,
    });

    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR={}", config.listen_addr))?;
    let metrics_listener = TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("binding METRICS_ADDR={}", config.metrics_addr))?;
    Ok(Application {
        config,
        listener,
        metrics_listener,
        state,
        background,
        relay,
        broker,
        stock,
        pool,
    })
}

impl Application {
    /// The address it is bound to (port 0 in `LISTEN_ADDR` picks a free one).
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address /metrics is served on (`METRICS_ADDR`).
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        tokio::spawn(wait_for_signal(stop.clone()));
        self.run_until(stop).await
    }

    /// Serves until `stop` is cancelled, then drains in order: readiness
    /// fails at once, in-flight requests finish (bounded by
    /// `SHUTDOWN_TIMEOUT_SECS`), then the background tasks stop and the
    /// pools close.
    pub async fn run_until(self, stop: CancellationToken) -> anyhow::Result<()> {
        let addr = self.addr()?;
        let metrics_addr = self.metrics_addr()?;
        tracing::info!(%addr, dev_profile = self.config.dev_profile, "order-api listening on http://{addr}");
        tracing::info!(%metrics_addr, "metrics on http://{metrics_addr}/metrics");
        let state = self.state.clone();
        let stopping = {
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                tracing::info!("shutdown signal received; draining");
                state.stop_accepting();
            }
        };
        let timeouts = self.config.http_timeouts;
        // The metrics listener has the same slow-client limits, and stops
        // with the background tasks, so the last scrape sees the drain.
        let metrics = tokio::spawn(http::serve::serve(
            self.metrics_listener,
            http::metrics_app(self.state.clone()),
            timeouts,
            self.background.clone().cancelled_owned(),
        ));
        let app = http::with_body_deadline(http::app(self.state), timeouts.request_body);
        let server = http::serve::serve(self.listener, app, timeouts, stopping);
        // Graceful shutdown waits for in-flight requests; bound that wait.
        let drain_deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(self.config.shutdown_timeout).await;
        };
        tokio::select! {
            () = server => {}
            () = drain_deadline => tracing::warn!("drain timed out; closing remaining connections"),
        }
        tracing::info!("HTTP drained; stopping background tasks");

        self.background.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), metrics).await;
        if tokio::time::timeout(Duration::from_secs(5), self.relay)
            .await
            .is_err()
        {
            tracing::warn!(
                "outbox relay did not stop in time; unpublished rows stay in the outbox"
            );
        }
        self.stock.flag.close().await;
        self.broker.close().await;
        self.pool.close();
        tracing::info!("order-api stopped");
        Ok(())
    }
}

/// Cancels `stop` on SIGTERM or Ctrl-C.
async fn wait_for_signal(stop: CancellationToken) {
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
