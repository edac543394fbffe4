//! Human and product names: any script, bounded length, no control characters.

use super::InvalidField;

/// Checks a display name: trims surrounding white space, then requires
/// 1..=max characters (Unicode scalar values, so "张伟" is 2) and no control
/// characters. Returns the trimmed text.
fn parse_name(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidField> {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len == 0 {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if len > max {
        return Err(InvalidField::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// A customer's first or last name: 1-100 characters of any script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidField> {
        parse_name(field, raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's display name: 1-200 characters of any script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        parse_name("name", raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_script() {
        for name in [
            "Zoë",
            "Ñúñez",
            "张伟",
            "O'Brien-Smith",
            "Ἀλέξανδρος",
            "محمد",
        ] {
            assert_eq!(
                PersonName::parse("first_name", name).map(|n| n.0),
                Ok(name.to_owned())
            );
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let hundred_cjk = "张".repeat(100);
        assert!(PersonName::parse("first_name", &hundred_cjk).is_ok());
        let too_long = "张".repeat(101);
        let err = PersonName::parse("first_name", &too_long).unwrap_err();
        assert_eq!(err.field, "first_name");
    }

    #[test]
    fn refuses_empty_blank_and_control_characters() {
        assert!(PersonName::parse("last_name", "").is_err());
        assert!(PersonName::parse("last_name", "   ").is_err());
        assert!(PersonName::parse("last_name", "a\u{0}b").is_err());
        assert!(PersonName::parse("last_name", "line\nbreak").is_err());
        assert!(PersonName::parse("last_name", "bell\u{7}").is_err());
    }

    #[test]
    fn trims_surrounding_space() {
        assert_eq!(
            PersonName::parse("first_name", "  Ada ").map(|n| n.0),
            Ok("Ada".into())
        );
    }
}
