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
//!
//! A resource alarm on the fan-out broker (memory or disk, e.g. caused by
//! browsers) is not such a failure: the broker sends `connection.blocked`
//! and stops reading what this connection publishes until the alarm clears
//! (RabbitMQ's "Blocked Connection Notifications"; lapin then holds our
//! frames too). While blocked, a publish waits for `connection.unblocked`
//! without spending the message's retry budget, so a long alarm delays the
//! announcements and dead-letters none: the bucket events wait, unacked and
//! durable, on the pipeline broker. The customer's page meanwhile finds its
//! voucher through `GET /v1/orders/{id}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::publish::{self, Message, PublishError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a publisher held by `connection.blocked` looks again.
const BLOCKED_POLL: Duration = Duration::from_millis(250);

pub struct Fanout {
    url: SecretString,
    /// The open connection and its confirm channel, if any.
    open: Mutex<Option<(Connection, Channel)>>,
    /// Whether publishes wait for the broker to unblock us: one log line and
    /// one gauge change per alarm, not one per message in flight.
    waiting: AtomicBool,
}

impl Fanout {
    pub fn new(url: SecretString) -> Self {
        Self {
            url,
            open: Mutex::new(None),
            waiting: AtomicBool::new(false),
        }
    }

    /// Publishes with a confirm, (re)connecting first when needed, and
    /// waiting out a blocked connection (module docs).
    pub async fn publish(
        &self,
        message: &Message<'_>,
        shutdown: &CancellationToken,
    ) -> Result<(), PublishError> {
        loop {
            self.wait_unblocked(shutdown).await?;
            let channel = self.channel().await?;
            let result = self
                .watch_blocked(publish::publish(&channel, message))
                .await;
            if result.is_err() && self.blocked().await {
                // Blocked while this publish was out (its confirm timed out
                // behind the alarm): not this message's failure. Publish it
                // again once unblocked; a duplicate at worst.
                continue;
            }
            if result.is_err() && !channel.status().connected() {
                // Connect afresh on the next attempt.
                self.open.lock().await.take();
            }
            return result;
        }
    }

    /// Whether the broker has blocked the open connection.
    async fn blocked(&self) -> bool {
        self.open
            .lock()
            .await
            .as_ref()
            .is_some_and(|(connection, _)| {
                let status = connection.status();
                status.connected() && status.blocked()
            })
    }

    async fn wait_unblocked(&self, shutdown: &CancellationToken) -> Result<(), PublishError> {
        while self.blocked().await {
            self.note_blocked(true);
            tokio::select! {
                () = tokio::time::sleep(BLOCKED_POLL) => {}
                () = shutdown.cancelled() => return Err(PublishError::Blocked),
            }
        }
        self.note_blocked(false);
        Ok(())
    }

    /// Runs one publish to its confirm, noting meanwhile whether the broker
    /// blocked the connection. The broker blocks a connection when it
    /// publishes during an alarm, so the publishes that were already out
    /// when it began are the ones that learn it first; they wait for their
    /// confirms, and the gauge must show it then, not once their confirm
    /// timeout sends them round again. A publish that ends on an unblocked
    /// connection clears it, so the gauge cannot stay up after the alarm.
    async fn watch_blocked<F>(&self, publishing: F) -> Result<(), PublishError>
    where
        F: std::future::Future<Output = Result<(), PublishError>>,
    {
        tokio::pin!(publishing);
        loop {
            tokio::select! {
                result = &mut publishing => {
                    if !self.blocked().await {
                        self.note_blocked(false);
                    }
                    return result;
                }
                () = tokio::time::sleep(BLOCKED_POLL) => {
                    if self.blocked().await {
                        self.note_blocked(true);
                    }
                }
            }
        }
    }

    /// One log line and one gauge change per alarm, however many publishes
    /// see it.
    fn note_blocked(&self, blocked: bool) {
        if self.waiting.swap(blocked, Ordering::Relaxed) == blocked {
            return;
        }
        if blocked {
            tracing::warn!(
                "the fan-out broker blocks our publishes (a resource alarm); announcements wait for it"
            );
        } else {
            tracing::info!("the fan-out broker unblocked our publishes");
        }
        ::metrics::gauge!(metrics::FANOUT_BLOCKED).set(if blocked { 1.0 } else { 0.0 });
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
        // A fresh connection is not blocked (yet): exported from the start,
        // so a dashboard and the alert see 0 rather than nothing.
        ::metrics::gauge!(metrics::FANOUT_BLOCKED).set(0.0);
        *open = Some((connection, channel.clone()));
        Ok(channel)
    }

    pub async fn close(&self) {
        if let Some((connection, _)) = self.open.lock().await.take() {
            let _ = connection.close(200, "shutting down".into()).await;
        }
    }
}
