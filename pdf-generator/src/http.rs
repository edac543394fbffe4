//! The operations endpoints: liveness, readiness and Prometheus metrics.
//!
//! `/healthz` says only "the process answers" (restarting it would not help
//! anything else). `/readyz` says every role this process runs has a live
//! consumer, which is false while reconnecting to RabbitMQ and during drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// Per role, whether its consumer is registered with the broker.
#[derive(Clone, Default)]
pub struct Readiness {
    roles: Vec<(&'static str, Arc<AtomicBool>)>,
}

impl Readiness {
    /// Registers a role and returns the flag its consume loop maintains.
    pub fn track(&mut self, role: &'static str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.roles.push((role, Arc::clone(&flag)));
        flag
    }

    fn not_ready(&self) -> Vec<&'static str> {
        self.roles
            .iter()
            .filter(|(_, ready)| !ready.load(Ordering::SeqCst))
            .map(|(role, _)| *role)
            .collect()
    }
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    readiness: Readiness,
}

pub fn app(metrics: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, readiness })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let waiting = state.readiness.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not consuming: {}\n", waiting.join(", ")),
        )
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::ServiceExt;

    async fn get_status(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_follows_every_role() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let mut readiness = Readiness::default();
        let render = readiness.track("render");
        let notify = readiness.track("notify");
        let app = app(handle, readiness);

        assert_eq!(get_status(app.clone(), "/healthz").await.0, StatusCode::OK);
        let (status, body) = get_status(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("render") && body.contains("notify"));

        render.store(true, Ordering::SeqCst);
        let (status, body) = get_status(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.contains("render") && body.contains("notify"));

        notify.store(true, Ordering::SeqCst);
        assert_eq!(get_status(app.clone(), "/readyz").await.0, StatusCode::OK);
        assert_eq!(get_status(app, "/metrics").await.0, StatusCode::OK);
    }
}
