//! The orders the renderer receives. The types are the contract with
//! order-api, owned once in drop-contract; this module only names them for
//! the rest of the crate.

pub use drop_contract::{OrderId, messages::Order};

use drop_contract::voucher_code::{SigningKey, VoucherClaims};

/// The text of an order's QR: its code signed with `key`, with the pickup
/// window as `nbf`/`exp` and the order's commit time as `iat`, so rendering
/// the same order again prints the same code (Ed25519 is deterministic).
/// Without a key, the bare order id, as vouchers had before codes were signed.
pub fn voucher_code(order: &Order, key: Option<&SigningKey>) -> String {
    match key {
        None => order.order_id.as_str().to_owned(),
        Some(key) => key.sign(&VoucherClaims {
            oid: order.order_id.clone(),
            sku: order.sku.clone(),
            iat: order.created_at.timestamp(),
            nbf: order.redeem_from.map(|t| t.timestamp()),
            exp: order.redeem_until.map(|t| t.timestamp()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drop_contract::voucher_code::{ScannedCode, VerifyingKeys};

    #[test]
    fn the_code_carries_the_order_and_its_window() {
        let mut order = Order {
            order_id: OrderId::parse("0123456789abcdef0123456789abcdef").expect("valid"),
            sku: "SKU-1".into(),
            product_name: "p".into(),
            first_name: "a".into(),
            last_name: "b".into(),
            created_at: "2026-11-24T12:00:00.5Z".parse().expect("time"),
            redeem_from: Some("2026-12-01T10:00:00Z".parse().expect("time")),
            redeem_until: None,
        };
        assert_eq!(voucher_code(&order, None), order.order_id.as_str());
        let key = SigningKey::generate("k1").expect("kid");
        let keys = VerifyingKeys::parse(&key.public_config()).expect("keys");
        let code = voucher_code(&order, Some(&key));
        let ScannedCode::Signed(claims) = ScannedCode::parse(&code, &keys).expect("verifies")
        else {
            panic!("not signed");
        };
        assert_eq!(claims.oid, order.order_id);
        assert_eq!(claims.sku, "SKU-1");
        assert_eq!(claims.iat, order.created_at.timestamp());
        assert_eq!(claims.nbf, Some(1_796_119_200));
        assert_eq!(claims.exp, None);
        assert_eq!(voucher_code(&order, Some(&key)), code, "deterministic");
        order.redeem_until = Some("2026-12-24T18:00:00Z".parse().expect("time"));
        let code = voucher_code(&order, Some(&key));
        assert_ne!(voucher_code(&order, None), code);
    }
}
