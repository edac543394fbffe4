//! The messages order-api publishes (docs/design.md, "Orders accepted"), and
//! the order id newtype that every other module trusts.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// 32 lowercase hex characters. The id is the customer's secret capability and
/// becomes an S3 key and a routing key, so anything else is refused at parse
/// time instead of being escaped later.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderId(String);

impl OrderId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(OrderId(s.to_owned()))
        } else {
            Err("order id must be 32 lowercase hex characters".to_owned())
        }
    }

    /// Recognises a voucher object key, `<order_id>.pdf`, and returns its id.
    pub fn from_voucher_key(key: &str) -> Option<Self> {
        key.strip_suffix(".pdf").and_then(|id| Self::parse(id).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn voucher_key(&self) -> String {
        format!("{}.pdf", self.0)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OrderId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An accepted order. Unknown fields are ignored so order-api can add fields
/// without breaking deployed renderers.
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub sku: String,
    pub product_name: String,
    pub first_name: String,
    pub last_name: String,
    pub created_at: DateTime<Utc>,
}

/// Orders of one SKU accepted in one reservation statement: what order-api's
/// outbox publishes. What the orders share is stated once.
#[derive(Debug, Deserialize)]
struct Batch {
    sku: String,
    product_name: String,
    created_at: DateTime<Utc>,
    orders: Vec<BatchEntry>,
}

#[derive(Debug, Deserialize)]
struct BatchEntry {
    order_id: OrderId,
    first_name: String,
    last_name: String,
}

impl Order {
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The orders in one message: a batch (`{"sku", "product_name",
    /// "created_at", "orders": [...]}`) or, as earlier versions of order-api
    /// published, a single order.
    pub fn all_from_json(bytes: &[u8]) -> Result<Vec<Self>, serde_json::Error> {
        #[derive(Deserialize)]
        struct Shape {
            orders: Option<serde::de::IgnoredAny>,
        }
        if serde_json::from_slice::<Shape>(bytes)?.orders.is_none() {
            return Self::from_json(bytes).map(|order| vec![order]);
        }
        let batch: Batch = serde_json::from_slice(bytes)?;
        if batch.orders.is_empty() {
            return Err(serde::de::Error::custom("a batch without orders"));
        }
        Ok(batch
            .orders
            .into_iter()
            .map(|entry| Order {
                order_id: entry.order_id,
                sku: batch.sku.clone(),
                product_name: batch.product_name.clone(),
                first_name: entry.first_name,
                last_name: entry.last_name,
                created_at: batch.created_at,
            })
            .collect())
    }

    pub fn full_name(&self) -> String {
        format!("{} {}", self.first_name.trim(), self.last_name.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_the_design_sample() {
        let json = format!(
            r#"{{"order_id":"{ID}","sku":"sneaker-42","product_name":"Sneaker",
                "first_name":"Zoë","last_name":"Ñúñez","created_at":"2026-11-24T12:00:00.123456Z",
                "added_later":1}}"#
        );
        let order = Order::from_json(json.as_bytes()).expect("valid order");
        assert_eq!(order.order_id.as_str(), ID);
        assert_eq!(order.full_name(), "Zoë Ñúñez");
        assert_eq!(order.created_at.timestamp_subsec_micros(), 123_456);
    }

    #[test]
    fn a_batch_shares_its_sku_product_and_time() {
        let other = "fedcba9876543210fedcba9876543210";
        let json = format!(
            r#"{{"sku":"sneaker-42","product_name":"Sneaker","created_at":"2026-11-24T12:00:00.5Z",
                "orders":[{{"order_id":"{ID}","first_name":"Zoë","last_name":"Ñúñez"}},
                          {{"order_id":"{other}","first_name":"张","last_name":"伟","added_later":1}}]}}"#
        );
        let orders = Order::all_from_json(json.as_bytes()).expect("valid batch");
        let ids: Vec<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
        assert_eq!(ids, [ID, other]);
        assert_eq!(orders[1].full_name(), "张 伟");
        for order in &orders {
            assert_eq!(order.sku, "sneaker-42");
            assert_eq!(order.product_name, "Sneaker");
            assert_eq!(order.created_at.timestamp_subsec_millis(), 500);
        }
    }

    #[test]
    fn a_single_order_message_is_a_batch_of_one() {
        let json = format!(
            r#"{{"order_id":"{ID}","sku":"s","product_name":"p","first_name":"a","last_name":"b",
                "created_at":"2026-11-24T12:00:00Z"}}"#
        );
        let orders = Order::all_from_json(json.as_bytes()).expect("valid order");
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].order_id.as_str(), ID);
    }

    #[test]
    fn refuses_malformed_batches() {
        let entry = format!(r#"{{"order_id":"{ID}","first_name":"a","last_name":"b"}}"#);
        for bad in [
            r#"{"sku":"s","product_name":"p","created_at":"2026-11-24T12:00:00Z","orders":[]}"#
                .to_owned(),
            format!(r#"{{"sku":"s","product_name":"p","orders":[{entry}]}}"#),
            format!(
                r#"{{"sku":"s","product_name":"p","created_at":"2026-11-24T12:00:00Z","orders":[{entry},{{"order_id":"../x","first_name":"a","last_name":"b"}}]}}"#
            ),
            r#"{"orders": 1}"#.to_owned(),
            "[]".to_owned(),
        ] {
            assert!(
                Order::all_from_json(bad.as_bytes()).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn refuses_ids_that_could_escape_a_key_or_routing_key() {
        for bad in [
            "",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcde",
            "../../0123456789abcdef0123456789",
            "0123456789abcdef0123456789abcde#",
        ] {
            assert!(OrderId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refuses_malformed_orders() {
        assert!(Order::from_json(b"not json").is_err());
        assert!(Order::from_json(br#"{"order_id":"x"}"#).is_err());
        let no_time = format!(
            r#"{{"order_id":"{ID}","sku":"s","product_name":"p","first_name":"a","last_name":"b","created_at":"yesterday"}}"#
        );
        assert!(Order::from_json(no_time.as_bytes()).is_err());
    }

    #[test]
    fn voucher_keys() {
        let id = OrderId::parse(ID).expect("valid");
        assert_eq!(id.voucher_key(), format!("{ID}.pdf"));
        assert_eq!(OrderId::from_voucher_key(&id.voucher_key()), Some(id));
        assert_eq!(OrderId::from_voucher_key(ID), None);
        assert_eq!(OrderId::from_voucher_key(&format!("x/{ID}.pdf")), None);
    }
}
