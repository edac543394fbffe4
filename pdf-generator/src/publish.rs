//! Publishing with publisher confirms, for both roles: the notifier's
//! `voucher_ready` and the renderer's voucher status. A delivery is acked
//! only after what it publishes is confirmed, so a crash in between means a
//! duplicate message, never a missing one.

use std::time::{Duration, Instant};

use lapin::options::ConfirmSelectOptions;
use lapin::{BasicProperties, Channel, Connection, options::BasicPublishOptions};

use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::retry::{Backoff, RetryError, retry};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error("broker nacked the publish")]
    Nacked,
    #[error("no publisher confirm within {0:?}")]
    Unconfirmed(Duration),
    #[error("shutting down while the broker blocks our publishes")]
    Blocked,
}

/// A confirm normally takes milliseconds; a broker that sits on one is as
/// good as down, and the retry budget handles it like any other failure.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// A channel in confirm mode, shared by all handlers on one connection.
pub async fn confirm_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// What to publish, and where.
pub struct Message<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    /// Lets a consumer recognise a redelivery. Not for logs: it can be an
    /// order id.
    pub message_id: &'a str,
    pub body: &'a [u8],
}

/// Publishes one persistent JSON message and waits for its confirm. Not
/// mandatory: nobody listening (a customer who closed the page) is normal.
pub async fn publish(channel: &Channel, message: &Message<'_>) -> Result<(), PublishError> {
    let started = Instant::now();
    let result = publish_confirmed(channel, message).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ::metrics::histogram!(metrics::PUBLISH_SECONDS, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

async fn publish_confirmed(channel: &Channel, message: &Message<'_>) -> Result<(), PublishError> {
    let publish = async {
        channel
            .basic_publish(
                message.exchange.into(),
                message.routing_key.into(),
                BasicPublishOptions::default(),
                message.body,
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_message_id(message.message_id.into())
                    // Persistent, so a durable queue keeps it across a
                    // broker restart.
                    .with_delivery_mode(2),
            )
            .await?
            .await
    };
    let confirm = tokio::time::timeout(CONFIRM_TIMEOUT, publish)
        .await
        .map_err(|_| PublishError::Unconfirmed(CONFIRM_TIMEOUT))??;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(PublishError::Nacked)
    }
}

/// [`publish`] within the message's retry budget. A closed channel is not
/// retried: it will not come back, and the delivery being handled is
/// redelivered after the reconnect, so the caller requeues instead of waiting.
pub async fn publish_retrying(
    channel: &Channel,
    message: &Message<'_>,
    max_attempts: u32,
    shutdown: &CancellationToken,
) -> Result<(), RetryError<PublishError>> {
    retry(
        "publish",
        Backoff::RETRY,
        max_attempts,
        shutdown,
        |_: &PublishError| channel.status().connected(),
        || publish(channel, message),
    )
    .await
}
