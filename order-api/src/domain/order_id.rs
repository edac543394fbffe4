//! Order identifiers, which double as the customer's secret capability.

use std::fmt;

/// 128 random bits as 32 lowercase hex digits.
///
/// Knowing an order id is what lets a browser read the order and subscribe to
/// `voucher.<order_id>`, so it must be unguessable: it comes from the thread's
/// CSPRNG, never from a sequence.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrderId(String);

impl OrderId {
    pub fn generate() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }

    /// Accepts exactly 32 lowercase hex digits.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A prefix that is safe to log: enough to correlate, not enough to use.
    pub fn redacted(&self) -> &str {
        &self.0[..8]
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrderId({}…)", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_lowercase_hex_and_distinct() {
        let a = OrderId::generate();
        let b = OrderId::generate();
        assert_ne!(a, b);
        assert!(OrderId::parse(a.as_str()).is_some());
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn parse_refuses_other_shapes() {
        for bad in [
            "",
            "ABCDEF0123456789abcdef0123456789",
            "123",
            &"g".repeat(32),
            &"a".repeat(33),
        ] {
            assert!(OrderId::parse(bad).is_none(), "{bad}");
        }
    }
}
