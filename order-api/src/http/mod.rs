//! The HTTP layer: routes, extractors, error mapping and request metrics.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{delete, get, post, put},
};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{
    config::StompConfig, health::DbHealth, reserve::Reserver, stock::Stock, vouchers::Vouchers,
};

pub mod error;
mod exports;
pub mod extract;
mod metrics;
pub mod openapi;
mod ops;
mod orders;
mod page;
mod products;
mod redemptions;
mod scanners;
pub mod serve;
mod stock_events;

/// Everything a handler may use. Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: Pool,
    pub reserver: Arc<Reserver>,
    pub stock: Arc<Stock>,
    /// The readiness probe's last verdict on PostgreSQL.
    pub db_health: Arc<DbHealth>,
    pub vouchers: Vouchers,
    pub stomp: StompConfig,
    pub metrics: PrometheusHandle,
    pub admin_token_digest: [u8; 32],
    /// The keys that verify voucher codes, and the JWKS they publish.
    pub voucher_keys: drop_contract::voucher_code::VerifyingKeys,
    /// Wakes the voucher deletion worker after a cancellation commits.
    pub deletions_wakeup: Arc<tokio::sync::Notify>,
    /// Cleared on SIGTERM so that /readyz takes the replica out of rotation
    /// while it drains.
    pub accepting: AtomicBool,
    /// Cancelled with `accepting`: open event streams end, so the drain does
    /// not wait for them.
    pub draining: tokio_util::sync::CancellationToken,
    /// How long one `GET /v1/products/{sku}/events` stream lasts.
    pub stock_events_lifetime: std::time::Duration,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    pub fn stop_accepting(&self) {
        self.0.accepting.store(false, Ordering::SeqCst);
        self.0.draining.cancel();
    }

    pub fn is_accepting(&self) -> bool {
        self.0.accepting.load(Ordering::SeqCst)
    }
}

/// What the metrics listener (`METRICS_ADDR`) serves: /metrics alone. It is
/// kept off the public router, since it names every SKU with its exact
/// remaining stock, unreleased products included.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state)
}

/// The public router with the request-body deadline of the public
/// listener: a body not complete `timeout` after its head is answered 408
/// `request_timeout` (`extract::JsonBody`).
pub fn with_body_deadline(app: Router, timeout: std::time::Duration) -> Router {
    app.layer(
        tower::ServiceBuilder::new()
            .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(timeout))
            .map_request(|req: axum::http::Request<_>| req.map(axum::body::Body::new)),
    )
}

/// The whole application as a `Router`, so tests can drive it directly.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/products/{sku}",
            put(products::put_product).get(products::get_product),
        )
        .route("/v1/products/{sku}/events", get(stock_events::stock_events))
        .route("/v1/orders", post(orders::create_order))
        .route("/v1/products/{sku}/orders.csv", get(exports::orders_csv))
        .route("/v1/products/{sku}/stats", get(exports::stats))
        .route(
            "/v1/orders/{order_id}",
            get(orders::get_order).delete(orders::cancel_order),
        )
        .route("/v1/voucher-keys", get(redemptions::voucher_keys))
        .route("/v1/redemptions", post(redemptions::redeem))
        .route("/v1/scanners", post(scanners::create_scanner))
        .route("/v1/scanners/revocations", get(scanners::revocations))
        .route(
            "/v1/scanners/{scanner_id}",
            delete(scanners::revoke_scanner),
        )
        .route("/v1/orders/{order_id}/voucher", get(orders::get_voucher))
        .route("/v1/client-config", get(ops::client_config))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/openapi.json", get(openapi::serve))
        .route("/", get(page::index))
        .route("/scan", get(page::scan))
        .route("/assets/{*path}", get(page::asset))
        .route_layer(middleware::from_fn(metrics::track))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<_>| {
                    // The path can hold an order id, the customer's secret:
                    // log the route template, never the concrete path.
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map_or("unmatched", |p| p.as_str());
                    tracing::info_span!("request", method = %req.method(), route)
                },
            ),
        )
        .with_state(state)
}
