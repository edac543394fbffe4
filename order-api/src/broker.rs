//! RabbitMQ: one lazily (re)connected AMQP channel in publisher-confirm mode,
//! shared by the outbox relay and the stock-change events.
//!
//! RabbitMQ being down must never stop reservations, so nothing on the request
//! path waits for this: callers get an error and the outbox keeps the work.

use std::time::Duration;

use drop_contract::topology;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

pub struct Broker {
    url: SecretString,
    orders_exchange: String,
    // A tokio Mutex: connecting awaits, and concurrent callers should wait
    // for the one connection attempt rather than each open their own.
    state: Mutex<Option<(Connection, Channel)>>,
}

impl Broker {
    pub fn new(url: SecretString, orders_exchange: String) -> Self {
        Self {
            url,
            orders_exchange,
            state: Mutex::new(None),
        }
    }

    /// A connected channel in confirm mode, connecting (and declaring the
    /// orders exchange) first if needed.
    pub async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut state = self.state.lock().await;
        if let Some((conn, channel)) = state.as_ref() {
            if conn.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *state = None;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(
                self.url.expose_secret(),
                ConnectionProperties::default().with_connection_name("order-api".into()),
            ),
        )
        .await
        .map_err(|_| lapin::Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology::declare_orders_exchange(&channel, &self.orders_exchange).await?;
        tracing::info!(exchange = %self.orders_exchange, "connected to RabbitMQ");
        *state = Some((conn, channel.clone()));
        Ok(channel)
    }

    /// Forgets the current connection after an error, so the next call reconnects.
    pub async fn reset(&self) {
        if let Some((conn, _)) = self.state.lock().await.take() {
            let _ = conn.close(0, "reset".into()).await;
        }
    }

    /// Publishes a transient JSON event on `amq.topic` for browsers. Best effort:
    /// a browser that misses it re-reads the state over HTTP on (re)connect.
    pub async fn publish_topic(&self, routing_key: &str, body: &[u8]) -> Result<(), lapin::Error> {
        let channel = self.channel().await?;
        let result = channel
            .basic_publish(
                topology::TOPIC_EXCHANGE.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await;
        if result.is_err() {
            self.reset().await;
        }
        result.map(|_confirm| ())
    }

    /// Publishes one outbox row (a batch of accepted orders, or one order if
    /// an earlier version wrote it), persistent, returning the pending confirm.
    pub async fn publish_order(
        &self,
        channel: &Channel,
        order_id: &str,
        body: &[u8],
    ) -> Result<PublisherConfirm, lapin::Error> {
        channel
            .basic_publish(
                self.orders_exchange.as_str().into(),
                topology::ORDER_RESERVED_KEY.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2)
                    .with_message_id(order_id.into()),
            )
            .await
    }

    pub async fn close(&self) {
        if let Some((conn, _)) = self.state.lock().await.take() {
            let _ = conn.close(200, "shutting down".into()).await;
        }
    }
}
