//! Operational routes: health, readiness, metrics (served on the metrics
//! listener, `http::metrics_app`), browser configuration, and
//! JSON answers for unknown routes and methods.

use axum::{Json, extract::State, http::header, response::IntoResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, error::ApiError};

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the replica is not draining, and the background probe
/// (`crate::health`, on a connection of its own, never the request pool)
/// last found PostgreSQL answering. Reading the verdict costs nothing, so a
/// probe at peak load never waits behind requests.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready to take traffic", body = String),
    (status = 503, description = "PostgreSQL unreachable (three checks in a row) or shutting down", body = super::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.is_accepting() && state.db_health.is_healthy() {
        Ok("ready")
    } else {
        Err(ApiError::Unavailable)
    }
}

/// Prometheus metrics in the text exposition format, on the metrics
/// listener only (`METRICS_ADDR`).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Where the browser connects to Web-STOMP. No credentials: a CONNECT
/// without a login header is the broker's Web-STOMP default user, whose
/// password nobody outside the broker knows, so that login cannot be used
/// over AMQP.
#[derive(Serialize, ToSchema)]
pub struct ClientConfig {
    #[schema(example = "ws://127.0.0.1:15674/ws")]
    pub stomp_url: String,
    /// The browsers' vhost, sent as the CONNECT frame's `host` header.
    #[schema(example = "browser")]
    pub stomp_vhost: String,
}

/// Web-STOMP settings for a page that holds an order: the browser user may
/// only read its own `voucher.<order_id>` (and `stock.<sku>`) keys on
/// `amq.topic`, in the browsers' own vhost.
#[utoipa::path(get, path = "/v1/client-config", tag = "browser",
    responses((status = 200, description = "Web-STOMP settings for the page", body = ClientConfig)))]
pub async fn client_config(State(state): State<AppState>) -> Json<ClientConfig> {
    Json(ClientConfig {
        stomp_url: state.stomp.url.clone(),
        stomp_vhost: state.stomp.vhost.clone(),
    })
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
