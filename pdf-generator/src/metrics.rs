//! Metric names and the Prometheus recorder.
//!
//! Names live here so a dashboard author finds every series in one file.
//! All durations are histograms in seconds (not summaries) so they can be
//! aggregated across replicas.

use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Deliveries taken from a queue, by `role` (`render` or `notify`).
pub const CONSUMED: &str = "messages_consumed_total";
/// From taking a delivery to settling it (ack, dead-letter or requeue), by `role`:
/// the consume latency.
pub const HANDLE_SECONDS: &str = "message_handle_duration_seconds";
/// Deliveries acked, by `role`.
pub const ACKED: &str = "messages_acked_total";
/// Deliveries rejected without requeue (so they go to `orders.dlx`), by `role` and `reason`.
pub const DEAD_LETTERED: &str = "messages_dead_lettered_total";
/// Deliveries handed back to the broker (shutdown while waiting to retry), by `role`.
pub const REQUEUED: &str = "messages_requeued_total";
/// Retries after a transient failure, by `operation` (`upload`, `head`, `publish`).
pub const RETRIES: &str = "retries_total";
/// Time to render one voucher.
pub const RENDER_SECONDS: &str = "render_duration_seconds";
/// Vouchers rendered, by `how`: `stamped` onto the product's template, or
/// rendered `whole` (a name with characters the template's fonts lack).
pub const RENDERED: &str = "voucher_renders_total";
/// Time of one S3 PUT attempt, by `outcome` (`ok` or `error`).
pub const UPLOAD_SECONDS: &str = "upload_duration_seconds";
/// Vouchers uploaded (after retries).
pub const UPLOADED: &str = "vouchers_uploaded_total";
/// One voucher_ready publish until its broker confirm, by `outcome`.
pub const PUBLISH_SECONDS: &str = "notifier_publish_duration_seconds";
/// voucher_ready messages confirmed by the broker.
pub const PUBLISHED: &str = "notifier_published_total";
/// Vouchers in the renderer's reports that this process had announced from
/// their bucket events already, so not again.
pub const ALREADY_ANNOUNCED: &str = "notifier_already_announced_total";
/// From the order's commit (`order-created-at`) to its voucher_ready publish.
pub const END_TO_END_SECONDS: &str = "voucher_end_to_end_seconds";
/// 1 while the fan-out broker blocks the notifier's publishes (a resource
/// alarm there), else 0.
pub const FANOUT_BLOCKED: &str = "fanout_blocked";
/// Connections to RabbitMQ opened after the first, by `role`.
pub const RECONNECTS: &str = "amqp_reconnects_total";

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Installs the global recorder. Call once, before anything records.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .install_recorder()?;
    describe_counter!(CONSUMED, "Deliveries taken from a queue");
    describe_histogram!(
        HANDLE_SECONDS,
        Unit::Seconds,
        "From taking a delivery to settling it"
    );
    describe_histogram!(
        PUBLISH_SECONDS,
        Unit::Seconds,
        "One voucher_ready publish until its broker confirm"
    );
    describe_counter!(ACKED, "Deliveries acknowledged after their work succeeded");
    describe_counter!(
        DEAD_LETTERED,
        "Deliveries rejected to the dead-letter exchange"
    );
    describe_counter!(REQUEUED, "Deliveries handed back to the broker");
    describe_counter!(RETRIES, "Retries after a transient failure");
    describe_histogram!(RENDER_SECONDS, Unit::Seconds, "Time to render one voucher");
    describe_counter!(RENDERED, "Vouchers rendered, stamped or whole");
    describe_histogram!(UPLOAD_SECONDS, Unit::Seconds, "Time of one S3 PUT attempt");
    describe_counter!(UPLOADED, "Vouchers uploaded to the object store");
    describe_counter!(PUBLISHED, "voucher_ready messages confirmed by the broker");
    describe_counter!(
        ALREADY_ANNOUNCED,
        "Reported vouchers announced from their bucket events already"
    );
    describe_histogram!(
        END_TO_END_SECONDS,
        Unit::Seconds,
        "From the order's commit to its voucher_ready publish"
    );
    describe_counter!(RECONNECTS, "Reconnections to RabbitMQ");
    describe_gauge!(
        FANOUT_BLOCKED,
        "1 while the fan-out broker blocks the notifier's publishes"
    );
    Ok(handle)
}

/// Histograms keep raw samples until upkeep folds them into buckets; without
/// this a replica that is never scraped grows without bound.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}
