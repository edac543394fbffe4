//! Browsers hear on `stock.<sku>` when a product sells out or is back, so
//! the page changes without polling.

use std::sync::Arc;

use drop_contract::{messages::StockChanged, topology};

use crate::{broker::Broker, domain::Sku};

pub struct Announcer {
    broker: Arc<Broker>,
}

impl Announcer {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// Best effort: a browser that misses it re-reads the product over HTTP
    /// when its connection comes back.
    pub async fn stock_changed(&self, sku: &Sku, available: bool) {
        let body = StockChanged {
            sku: sku.to_string(),
            available,
        };
        let Ok(body) = serde_json::to_vec(&body) else {
            return;
        };
        if let Err(e) = self
            .broker
            .publish_topic(&topology::stock_routing_key(sku.as_str()), &body)
            .await
        {
            tracing::debug!(error = %e, sku = %sku, "stock event not published to RabbitMQ");
        }
    }
}
