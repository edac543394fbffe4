//! Phone numbers, normalised to E.164 so that one person is one key.

use super::InvalidField;

/// A valid phone number in E.164 form, e.g. `+358401234567`.
///
/// "+358 40 123 4567", "+358-40-1234567" and "+358401234567" all parse to the
/// same value: the `(sku, phone)` uniqueness rule compares this form. Validity
/// (country code, length, number plan) is checked against libphonenumber's
/// metadata through the `phonenumber` crate rather than by hand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let raw = raw.trim();
        if !raw.starts_with('+') {
            return Err(InvalidField::new(
                "phone",
                "must be in international E.164 form, starting with + and the country code",
            ));
        }
        if raw.len() > 32 {
            return Err(InvalidField::new("phone", "is too long"));
        }
        // libphonenumber is lenient on purpose: it maps keypad letters to
        // digits ("4O" becomes "46", someone else's number) and drops what
        // follows a number (an extension, `#`, a NUL, a zero-width space).
        // So the characters are checked first: one leading +, then ASCII
        // digits and the separators people type.
        if !raw[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'.' | b'-' | b'(' | b')'))
        {
            return Err(InvalidField::new(
                "phone",
                "may contain only digits, spaces, dots, hyphens and parentheses after the leading +",
            ));
        }
        let number = phonenumber::parse(None, raw)
            .map_err(|_| InvalidField::new("phone", "is not a phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(InvalidField::new(
                "phone",
                "is not a valid number for its country code",
            ));
        }
        Ok(Self(e164(&number)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `+`, the country code and the national number with its leading zeros:
/// what `number.format().mode(Mode::E164)` writes, without the formatter's
/// search for a national format pattern, which E.164 never uses (a quarter
/// of the cost of parsing a phone).
fn e164(number: &phonenumber::PhoneNumber) -> String {
    format!("+{}{}", number.country().code(), number.national())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_matches_the_library_formatter() {
        for raw in [
            "+358401234567",
            "+39 06 6982 0000",
            "+39 333 123 4567",
            "+44 20 7946 0958",
            "+1 650 253 0000",
            "+86 138 0013 8000",
            "+49 30 901820",
            "+225 07 0123 4567",
            "+7 495 123 4567",
        ] {
            let number = phonenumber::parse(None, raw).unwrap();
            let library = number.format().mode(phonenumber::Mode::E164).to_string();
            assert_eq!(e164(&number), library, "{raw}");
        }
    }

    #[test]
    fn normalises_spacing_and_punctuation() {
        let a = Phone::parse("+358 40 123 4567").unwrap();
        let b = Phone::parse("+358401234567").unwrap();
        let c = Phone::parse("+358-40-123-4567").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.as_str(), "+358401234567");
        let d = Phone::parse("+358 (40) 123.4567").unwrap();
        assert_eq!(d, a);
    }

    #[test]
    fn refuses_non_e164() {
        for bad in [
            "",
            "0401234567",
            "+",
            "+0 123",
            "+358 40",
            "hello",
            "+1 555 0100",
            "+999 123456789",
            "+358 4O 123 4567",
            "+358 40 123 4567\u{0}",
            "+358 40 123 4567\u{200B}",
            "+358 40 123 4567#",
            "+358 40 123 4567/",
            "+358 40 123 4567 x12",
            "+358 40 123 4567 ext. 12",
            "++358 40 123 4567",
            "+358\u{FF14}0 123 4567",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
