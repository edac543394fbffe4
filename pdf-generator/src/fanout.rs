//! The notifier's connection to the browsers' broker (`FANOUT_AMQP_URL`),
//! where `voucher.<order_id>` is published for Web-STOMP.
//!
//! Browsers never share a broker, or a vhost, with the order pipeline
//! (issue #21): in Kubernetes the fan-out is a RabbitmqCluster of its own,
//! so a memory alarm or a connection flood caused by browsers blocks this
//! publisher only, never the outbox relay or the renderer. Locally it is the
//! `browser` vhost of the one node (docs/operations.md says what that does
//! and does not isolate).
//!
//! The connection is opened on first use and again whenever it is found
//! closed, so the notifier's consumer (on the pipeline broker) keeps running
//! while the fan-out broker is away; each publish is retried within the
//! message's budget like any other.

use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::publish::{self, Message, PublishError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Fanout {
    url: SecretString,
    /// The open connection and its confirm channel, if any.
    open: Mutex<Option<(Connection, Channel)>>,
}

impl Fanout {
    pub fn new(url: SecretString) -> Self {
        Self {
            url,
            open: Mutex::new(None),
        }
    }

    /// Publishes with a confirm, (re)connecting first when needed.
    pub async fn publish(&self, message: &Message<'_>) -> Result<(), PublishError> {
        let channel = self.channel().await?;
        let result = publish::publish(&channel, message).await;
        if result.is_err() && !channel.status().connected() {
            // Connect afresh on the next attempt.
            self.open.lock().await.take();
        }
        result
    }

    async fn channel(&self) -> Result<Channel, PublishError> {
        let mut open = self.open.lock().await;
        if let Some((connection, channel)) = open.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        if let Some((connection, _)) = open.take() {
            let _ = connection.close(320, "reconnecting".into()).await;
        }
        let props = ConnectionProperties::default()
            .with_connection_name("pdf-generator-notify-fanout".into());
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(self.url.expose_secret(), props),
        )
        .await
        .map_err(|_| PublishError::Unconfirmed(CONNECT_TIMEOUT))??;
        let channel = publish::confirm_channel(&connection).await?;
        tracing::info!("connected to the fan-out broker");
        *open = Some((connection, channel.clone()));
        Ok(channel)
    }

    pub async fn close(&self) {
        if let Some((connection, _)) = self.open.lock().await.take() {
            let _ = connection.close(200, "shutting down".into()).await;
        }
    }
}
