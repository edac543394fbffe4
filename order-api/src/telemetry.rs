//! Logging (tracing) and the Prometheus recorder.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Structured logs to stdout; `LOG_FORMAT=json` for one JSON object per line.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(fmt::layer().json().with_current_span(true))
            .init();
    } else {
        registry.with(fmt::layer()).init();
    }
}

/// Installs the process-wide metrics recorder with histogram buckets suited
/// to each measurement. The recorder is global, so a process that builds
/// several applications (the in-process tests) installs it once and shares it.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: std::sync::Mutex<Option<PrometheusHandle>> = std::sync::Mutex::new(None);
    let mut installed = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = install_metrics()?;
    *installed = Some(handle.clone());
    Ok(handle)
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)?
        .set_buckets_for_metric(
            Matcher::Full("reservation_batch_size".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )?
        .install_recorder()?;
    Ok(handle)
}

/// Histograms keep raw samples until upkeep folds them into their buckets:
/// without this, a replica grows by every request it serves between scrapes
/// (tens of MiB in a minute of a drop), and without bound if never scraped.
pub fn spawn_metrics_upkeep(handle: PrometheusHandle, cancel: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => handle.run_upkeep(),
                () = cancel.cancelled() => return,
            }
        }
    });
}
