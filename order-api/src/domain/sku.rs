//! Product identifiers.

use super::InvalidField;

/// A stock-keeping unit: 1-64 characters of `A-Z a-z 0-9 _ . -`.
///
/// The alphabet is deliberately narrow: the SKU becomes part of Redis keys and
/// of the RabbitMQ routing key `stock.<sku>`, whose topic permission pattern
/// (docs/design.md) admits exactly this alphabet. A `.` is allowed because the
/// browser only ever binds the exact key, never a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sku(String);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidField::new(
                "sku",
                "must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Sku {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_alphabet() {
        assert!(Sku::parse("SNEAKER-42_v1.0").is_ok());
    }

    #[test]
    fn refuses_wildcards_and_spaces() {
        for bad in ["", "a b", "a*", "#", "a/b", "ä", &"x".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?}");
        }
    }
}
