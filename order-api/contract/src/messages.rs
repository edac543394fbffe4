//! Every message the two services exchange, and the ones browsers read.
//!
//! | message | exchange, routing key | from → to |
//! |---|---|---|
//! | [`OrdersMessage`] | `orders`, `order.reserved` | order-api's outbox → pdf-generator's renderer |
//! | [`VoucherStatus`] | `orders`, `voucher.stored` | renderer → order-api, which records the order's status |
//! | [`VoucherEvent`] | `amq.topic`, `voucher.<order_id>` | notifier → the customer's browser |
//! | [`StockChanged`] | `amq.topic`, `stock.<sku>` | order-api → browsers |
//!
//! Messages between services carry a `type` tag with a version, so a reader
//! can tell a form it does not know from a malformed message, and a new
//! form can be added while old ones are still in queues and outbox rows.
//! Readers ignore fields they do not know, so a writer may add optional
//! fields without a new version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::OrderId;

/// What the outbox relay publishes: one reservation batch, the orders of one
/// SKU that one statement inserted in one transaction.
///
/// order-api builds the batch form inside its reservation statement
/// (`jsonb_build_object`, so the row costs no extra round trip); its stack
/// tests parse those rows with this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OrdersMessage {
    #[serde(rename = "order_batch.v1")]
    BatchV1(OrderBatch),
}

/// Orders of one SKU accepted together; what they share is stated once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderBatch {
    pub sku: String,
    pub product_name: String,
    /// The batch's commit-time stamp.
    pub created_at: DateTime<Utc>,
    /// The product's pickup window when the batch was accepted: the `nbf`
    /// and `exp` of the vouchers' codes. Absent (or null) without a window,
    /// and in messages written before windows existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeem_from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeem_until: Option<DateTime<Utc>>,
    pub orders: Vec<BatchOrder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOrder {
    pub order_id: OrderId,
    pub first_name: String,
    pub last_name: String,
}

/// One order, as one voucher is rendered from it; also the untagged form
/// that order-api published before it batched its outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub sku: String,
    pub product_name: String,
    pub first_name: String,
    pub last_name: String,
    pub created_at: DateTime<Utc>,
    /// As [`OrderBatch::redeem_from`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeem_from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeem_until: Option<DateTime<Utc>>,
}

impl Order {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first_name.trim(), self.last_name.trim())
    }
}

/// Why an orders message cannot be used. Never quotes the message, which
/// holds order ids and names.
#[derive(Debug, thiserror::Error)]
pub enum MalformedOrders {
    #[error("not an orders message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a batch without orders")]
    Empty,
}

impl OrdersMessage {
    /// Parses a message from the `orders` exchange: a tagged form, or one of
    /// the two untagged forms written by earlier versions of order-api, which
    /// outbox rows and queues may still hold during an upgrade (the batch
    /// form before the tag, and the single order before batching).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, MalformedOrders> {
        #[derive(Deserialize)]
        struct Shape {
            #[serde(rename = "type")]
            tag: Option<serde::de::IgnoredAny>,
            orders: Option<serde::de::IgnoredAny>,
        }
        let shape: Shape = serde_json::from_slice(bytes)?;
        let message = match (shape.tag, shape.orders) {
            (Some(_), _) => serde_json::from_slice(bytes)?,
            // Legacy, before the tag: the batch form.
            (None, Some(_)) => OrdersMessage::BatchV1(serde_json::from_slice(bytes)?),
            // Legacy, before batching: one order.
            (None, None) => {
                let order: Order = serde_json::from_slice(bytes)?;
                OrdersMessage::BatchV1(OrderBatch {
                    sku: order.sku,
                    product_name: order.product_name,
                    created_at: order.created_at,
                    redeem_from: order.redeem_from,
                    redeem_until: order.redeem_until,
                    orders: vec![BatchOrder {
                        order_id: order.order_id,
                        first_name: order.first_name,
                        last_name: order.last_name,
                    }],
                })
            }
        };
        let OrdersMessage::BatchV1(batch) = &message;
        if batch.orders.is_empty() {
            return Err(MalformedOrders::Empty);
        }
        Ok(message)
    }

    /// The orders, each with what its batch shares.
    pub fn into_orders(self) -> Vec<Order> {
        let OrdersMessage::BatchV1(batch) = self;
        batch
            .orders
            .into_iter()
            .map(|o| Order {
                order_id: o.order_id,
                sku: batch.sku.clone(),
                product_name: batch.product_name.clone(),
                first_name: o.first_name,
                last_name: o.last_name,
                created_at: batch.created_at,
                redeem_from: batch.redeem_from,
                redeem_until: batch.redeem_until,
            })
            .collect()
    }
}

/// The renderer's word that vouchers are in the bucket, published (with
/// confirms) before it acks the orders message. order-api records the
/// status from it, so `GET /v1/orders/{id}` only reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum VoucherStatus {
    #[serde(rename = "vouchers_stored.v1")]
    StoredV1 { order_ids: Vec<OrderId> },
}

/// What a customer's browser receives on `voucher.<order_id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum VoucherEvent {
    /// `{"order_id", "status": "voucher_ready", "voucher_url"}`; the URL is
    /// presigned, a bearer credential for the PDF: never log it.
    #[serde(rename = "voucher_ready")]
    Ready {
        order_id: OrderId,
        voucher_url: String,
    },
}

/// What browsers receive on `stock.<sku>` when the sold-out flag flips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockChanged {
    pub sku: String,
    pub available: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn id(s: &str) -> OrderId {
        OrderId::parse(s).unwrap()
    }

    fn batch() -> OrdersMessage {
        OrdersMessage::BatchV1(OrderBatch {
            sku: "sneaker-42".into(),
            product_name: "Sneaker".into(),
            created_at: "2026-11-24T12:00:00.123456Z".parse().unwrap(),
            redeem_from: None,
            redeem_until: None,
            orders: vec![
                BatchOrder {
                    order_id: id(ID),
                    first_name: "Zoë".into(),
                    last_name: "Ñúñez".into(),
                },
                BatchOrder {
                    order_id: id(OTHER),
                    first_name: "张".into(),
                    last_name: "伟".into(),
                },
            ],
        })
    }

    #[test]
    fn the_tagged_batch_round_trips() {
        let bytes = serde_json::to_vec(&batch()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["type"], "order_batch.v1");
        assert_eq!(value["orders"][0]["order_id"], ID);
        assert_eq!(OrdersMessage::from_slice(&bytes).unwrap(), batch());
    }

    #[test]
    fn the_legacy_forms_still_parse() {
        let untagged_batch = json!({
            "sku": "sneaker-42", "product_name": "Sneaker",
            "created_at": "2026-11-24T12:00:00.123456Z",
            "orders": [
                {"order_id": ID, "first_name": "Zoë", "last_name": "Ñúñez"},
                {"order_id": OTHER, "first_name": "张", "last_name": "伟", "added_later": 1}
            ]
        });
        let parsed = OrdersMessage::from_slice(untagged_batch.to_string().as_bytes()).unwrap();
        assert_eq!(parsed, batch());

        let single = json!({
            "order_id": ID, "sku": "s", "product_name": "p", "first_name": "a",
            "last_name": "b", "created_at": "2026-11-24T12:00:00Z", "added_later": 1
        });
        let orders = OrdersMessage::from_slice(single.to_string().as_bytes())
            .unwrap()
            .into_orders();
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].order_id, id(ID));
        assert_eq!(orders[0].full_name(), "a b");
    }

    #[test]
    fn the_pickup_window_is_optional_and_null_means_none() {
        let entry = json!({"order_id": ID, "first_name": "a", "last_name": "b"});
        let t = "2026-11-24T12:00:00Z";
        let with = json!({"type": "order_batch.v1", "sku": "s", "product_name": "p", "created_at": t,
            "redeem_from": "2026-12-01T10:00:00Z", "redeem_until": "2026-12-24T18:00:00Z",
            "orders": [entry]});
        let orders = OrdersMessage::from_slice(with.to_string().as_bytes())
            .unwrap()
            .into_orders();
        assert_eq!(
            orders[0].redeem_from,
            Some("2026-12-01T10:00:00Z".parse().unwrap())
        );
        assert_eq!(
            orders[0].redeem_until,
            Some("2026-12-24T18:00:00Z".parse().unwrap())
        );
        // What the reservation statement writes for a product without one.
        let nulls = json!({"type": "order_batch.v1", "sku": "s", "product_name": "p", "created_at": t,
            "redeem_from": null, "redeem_until": null, "orders": [entry]});
        let orders = OrdersMessage::from_slice(nulls.to_string().as_bytes())
            .unwrap()
            .into_orders();
        assert_eq!(
            (orders[0].redeem_from, orders[0].redeem_until),
            (None, None)
        );
        // And it is not written when absent.
        let value = serde_json::to_value(batch()).unwrap();
        assert!(value.get("redeem_from").is_none(), "{value}");
    }

    #[test]
    fn a_batch_shares_its_sku_product_and_time() {
        let orders = batch().into_orders();
        let ids: Vec<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
        assert_eq!(ids, [ID, OTHER]);
        assert_eq!(orders[1].full_name(), "张 伟");
        for order in &orders {
            assert_eq!(order.sku, "sneaker-42");
            assert_eq!(order.created_at.timestamp_subsec_micros(), 123_456);
        }
    }

    #[test]
    fn malformed_orders_are_refused() {
        let entry = json!({"order_id": ID, "first_name": "a", "last_name": "b"});
        let t = "2026-11-24T12:00:00Z";
        for bad in [
            json!({"type": "order_batch.v1", "sku": "s", "product_name": "p", "created_at": t, "orders": []}),
            json!({"type": "order_batch.v9", "sku": "s", "product_name": "p", "created_at": t, "orders": [entry]}),
            json!({"sku": "s", "product_name": "p", "orders": [entry]}),
            json!({"sku": "s", "product_name": "p", "created_at": t,
                   "orders": [entry, {"order_id": "../x", "first_name": "a", "last_name": "b"}]}),
            json!({"orders": 1}),
            json!({"order_id": "x"}),
            json!({"order_id": ID, "sku": "s", "product_name": "p", "first_name": "a",
                   "last_name": "b", "created_at": "yesterday"}),
            json!([]),
        ] {
            let err = OrdersMessage::from_slice(bad.to_string().as_bytes());
            assert!(err.is_err(), "{bad} accepted");
            assert!(
                !format!("{:?}", err.unwrap_err()).contains(ID),
                "error quotes an id"
            );
        }
        assert!(OrdersMessage::from_slice(b"not json").is_err());
    }

    #[test]
    fn voucher_status_round_trips() {
        let m = VoucherStatus::StoredV1 {
            order_ids: vec![id(ID), id(OTHER)],
        };
        let value = serde_json::to_value(&m).unwrap();
        assert_eq!(
            value,
            json!({"type": "vouchers_stored.v1", "order_ids": [ID, OTHER]})
        );
        assert_eq!(serde_json::from_value::<VoucherStatus>(value).unwrap(), m);
        assert!(serde_json::from_value::<VoucherStatus>(json!({"order_ids": [ID]})).is_err());
    }

    #[test]
    fn voucher_ready_has_the_shape_browsers_read() {
        let m = VoucherEvent::Ready {
            order_id: id(ID),
            voucher_url: "http://s3/x?sig".into(),
        };
        let value = serde_json::to_value(&m).unwrap();
        assert_eq!(
            value,
            json!({"status": "voucher_ready", "order_id": ID, "voucher_url": "http://s3/x?sig"})
        );
        assert_eq!(serde_json::from_value::<VoucherEvent>(value).unwrap(), m);
    }

    #[test]
    fn stock_changed_round_trips() {
        let m = StockChanged {
            sku: "SNEAKER-42".into(),
            available: false,
        };
        let value = serde_json::to_value(&m).unwrap();
        assert_eq!(value, json!({"sku": "SNEAKER-42", "available": false}));
        assert_eq!(serde_json::from_value::<StockChanged>(value).unwrap(), m);
    }
}
