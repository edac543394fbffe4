//! Order identifiers, which double as the customer's secret capability.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 32 lowercase hex digits: the order's creation time in Unix milliseconds
/// (48 bits, first, as in a version 7 UUID of RFC 9562), then 80 random
/// bits. Ids made before this layout are 128 random bits, and stay valid:
/// only the shape is checked.
///
/// Knowing an order id is what lets a browser read the order, fetch its
/// voucher and subscribe to `voucher.<order_id>`, so its 80 random bits come
/// from the thread's CSPRNG, and it never reaches a log in full: both
/// `Debug` and `Display` show only [`OrderId::redacted`], the last 6 random
/// digits. Even knowing the millisecond an order was made (a sell-out
/// makes a few orders per millisecond), guessing it takes about 2^78
/// tries, and a log reader who saw its redacted form still needs about
/// 2^54.
///
/// Why the time comes first: the id is the orders table's primary key.
/// Random keys send each insert to a random leaf of a B-tree that grows
/// with every drop. After 5,000,000 earlier orders the index no longer
/// stayed in memory. Each insert then read a leaf, and after a checkpoint
/// wrote it whole to the WAL: about 5,000 WAL bytes per order, against
/// 580 on an empty table, and 0.69x the reservations with a cold cache.
/// With the time first, a drop's inserts share the index's right edge
/// (about 600 bytes, 0.96x; `dev/bench/notes.md`). Code
/// that needs the whole id (a response body, an SQL parameter, a key) asks
/// for it by name with [`OrderId::as_str`], [`OrderId::voucher_key`] or
/// [`OrderId::voucher_routing_key`], so a `{}` in a log line cannot leak it.
///
/// The id becomes an S3 key and an AMQP routing key, so anything other than
/// 32 lowercase hex digits is refused when parsed, rather than escaped later.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(String);

/// Why a string is not an order id. It never repeats the input, which may
/// be someone's capability with one character wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order id is 32 lowercase hex digits")]
pub struct InvalidOrderId;

impl OrderId {
    /// How many characters of the id logs show, from its random end: enough
    /// to correlate a customer's report with the logs (16.7 million values),
    /// far too few to use.
    pub const REDACTED_LEN: usize = 6;

    pub fn generate() -> Self {
        Self::at(chrono::Utc::now(), rand::random::<u128>())
    }

    /// The id of an order made at `time`, from `random` (its low 80 bits).
    fn at(time: chrono::DateTime<chrono::Utc>, random: u128) -> Self {
        const MILLIS: u64 = (1 << 48) - 1;
        const RANDOM: u128 = (1 << 80) - 1;
        // Before 1970 (a clock gone wrong) counts as 0; 48 bits of
        // milliseconds last until the year 10889.
        let millis = u64::try_from(time.timestamp_millis()).unwrap_or(0) & MILLIS;
        Self(format!("{millis:012x}{:020x}", random & RANDOM))
    }

    /// Accepts exactly 32 lowercase hex digits.
    pub fn parse(raw: &str) -> Result<Self, InvalidOrderId> {
        if raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidOrderId)
        }
    }

    /// The whole id. Never put it in a log line.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part that is safe to log: the last [`Self::REDACTED_LEN`] digits,
    /// which are random (the first ones are the time, the same for every
    /// order of a drop).
    pub fn redacted(&self) -> &str {
        &self.0[self.0.len() - Self::REDACTED_LEN..]
    }

    /// The voucher's object key in the bucket: `<order_id>.pdf`.
    pub fn voucher_key(&self) -> String {
        format!("{}.pdf", self.0)
    }

    /// Recognises a voucher object key and returns its order id.
    pub fn from_voucher_key(key: &str) -> Option<Self> {
        key.strip_suffix(".pdf").and_then(|id| Self::parse(id).ok())
    }

    /// The `amq.topic` routing key on which the customer hears that their
    /// voucher is ready: `voucher.<order_id>`.
    pub fn voucher_routing_key(&self) -> String {
        format!("{}{}", crate::topology::VOUCHER_KEY_PREFIX, self.0)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "…{}", self.redacted())
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrderId(…{})", self.redacted())
    }
}

impl Serialize for OrderId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        OrderId::parse(&raw).map_err(serde::de::Error::custom)
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
        assert_eq!(OrderId::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn ids_start_with_their_millisecond_and_end_with_80_random_bits() {
        let t = chrono::DateTime::from_timestamp_millis(1_764_590_400_123).unwrap();
        let id = OrderId::at(t, u128::MAX);
        assert_eq!(id.as_str(), "019ad9c8b27bffffffffffffffffffff");
        assert_eq!(
            OrderId::at(t, 0x1234).as_str(),
            "019ad9c8b27b00000000000000001234"
        );
        // A later millisecond sorts after, whatever the random bits.
        let later = t + chrono::Duration::milliseconds(1);
        assert!(OrderId::at(later, 0) > id);
        // Ids from now on sort after those of today and keep the shape.
        let now = OrderId::generate();
        assert!(now > id, "{}", now.as_str());
        assert_eq!(OrderId::parse(now.as_str()), Ok(now.clone()));
    }

    #[test]
    fn parse_refuses_other_shapes() {
        for bad in [
            "",
            "ABCDEF0123456789abcdef0123456789",
            "0123456789abcdef0123456789abcde",
            "../../0123456789abcdef0123456789",
            "0123456789abcdef0123456789abcde#",
            &"g".repeat(32),
            &"a".repeat(33),
        ] {
            assert_eq!(OrderId::parse(bad), Err(InvalidOrderId), "{bad:?}");
        }
    }

    #[test]
    fn logs_never_see_the_whole_id() {
        let id = OrderId::parse("0123456789abcdef0123456789abcdef").unwrap();
        for shown in [
            format!("{id}"),
            format!("{id:?}"),
            format!("{:?}", Some(&id)),
        ] {
            assert!(shown.contains("…abcdef"), "{shown}");
            assert!(!shown.contains("9abcdef"), "{shown} shows too much");
            assert!(!shown.contains("012345"), "{shown} shows the time part");
        }
        assert_eq!(id.as_str(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn serde_carries_the_whole_id_and_validates_it() {
        let id = OrderId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.as_str()));
        assert_eq!(serde_json::from_str::<OrderId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<OrderId>("\"../x\"").is_err());
    }

    #[test]
    fn keys_derived_from_the_id() {
        let id = OrderId::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(id.voucher_key(), "0123456789abcdef0123456789abcdef.pdf");
        assert_eq!(
            OrderId::from_voucher_key(&id.voucher_key()),
            Some(id.clone())
        );
        assert_eq!(OrderId::from_voucher_key(id.as_str()), None);
        assert_eq!(
            OrderId::from_voucher_key("x/0123456789abcdef0123456789abcdef.pdf"),
            None
        );
        assert_eq!(
            id.voucher_routing_key(),
            "voucher.0123456789abcdef0123456789abcdef"
        );
    }
}
