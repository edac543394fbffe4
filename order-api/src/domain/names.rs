//! Human and product names: any script, bounded length, stored in NFC, and
//! made of characters a person can see.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

use super::InvalidField;

/// Letters and symbols that render as nothing. U+115F, U+1160, U+3164 and
/// U+FFA0 are the Hangul fillers, letters (Lo) that Unicode lists as
/// Default_Ignorable_Code_Point; U+2800 is the blank Braille pattern, a
/// symbol (So) with no dots. Their general category alone would pass them.
const BLANK_GRAPHICS: [char; 5] = ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{2800}'];

/// What a name may not contain anywhere, by general category: controls (Cc),
/// format characters (Cf: the bidi controls U+202A-202E and U+2066-2069,
/// ZWSP, ZWJ, word joiner, BOM, soft hyphen, the tag characters), line and
/// paragraph separators (Zl U+2028, Zp U+2029), private use (Co), surrogates
/// (Cs) and unassigned code points, noncharacters included (Cn).
fn refused(c: char) -> Option<&'static str> {
    match c.general_category() {
        GeneralCategory::Control => Some("must not contain control characters"),
        GeneralCategory::Format => Some("must not contain invisible format characters"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("must not contain line or paragraph separators")
        }
        GeneralCategory::PrivateUse | GeneralCategory::Surrogate | GeneralCategory::Unassigned => {
            Some("must not contain private-use, unassigned or noncharacter code points")
        }
        _ if BLANK_GRAPHICS.contains(&c) => Some("must not contain blank filler characters"),
        _ => None,
    }
}

/// A character that shows something: a letter, digit, punctuation or symbol.
/// Marks (combining accents, variation selectors) and spaces do not count.
fn visible(c: char) -> bool {
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter
            | GeneralCategoryGroup::Number
            | GeneralCategoryGroup::Punctuation
            | GeneralCategoryGroup::Symbol
    )
}

/// Checks a display name: trims surrounding white space and normalises to
/// NFC (so "Zoë" typed with a combining diaeresis is the same name), then
/// requires 1..=max characters (Unicode scalar values, so "张伟" is 2), none
/// of the [`refused`] ones, a visible first character (not a lone combining
/// mark) and so at least one visible character. Returns the normalised text.
fn parse_name(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidField> {
    let name: String = raw.trim().nfc().collect();
    let len = name.chars().count();
    if len == 0 {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if len > max {
        return Err(InvalidField::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if let Some(reason) = name.chars().find_map(refused) {
        return Err(InvalidField::new(field, reason));
    }
    if !name.chars().next().is_some_and(visible) {
        return Err(InvalidField::new(
            field,
            "must start with a visible character: a letter, digit, punctuation or symbol",
        ));
    }
    Ok(name)
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
    fn refuses_invisible_and_bidi_characters() {
        for bad in [
            "\u{202E}",
            "abc\u{202E}def",
            "Ada\u{2066}x\u{2069}",
            "\u{200D}",
            "\u{200B}",
            "\u{FEFF}",
            "\u{2060}",
            "\u{00AD}",
            "\u{FE0F}",
            "\u{3164}",
            "\u{2800}",
            "\u{0301}",
            "\u{0301}abc",
            "a\u{2028}b",
            "a\u{2029}b",
            "a\u{FDD0}",
            "a\u{FFFF}",
            "a\u{E000}",
            "a\u{E0041}",
            "\u{3164}\u{3164}",
            "\u{200B}\u{200B}",
        ] {
            let err = PersonName::parse("first_name", bad).unwrap_err();
            assert_eq!(err.field, "first_name", "{bad:?}");
        }
        assert!(ProductName::parse("\u{202E}").is_err());
    }

    #[test]
    fn normalises_to_nfc() {
        // "Zoe" + COMBINING DIAERESIS is stored as the precomposed "Zoë".
        let decomposed = "Zoe\u{0308}";
        assert_eq!(
            PersonName::parse("first_name", decomposed).map(|n| n.0),
            Ok("Zo\u{00EB}".to_owned())
        );
        assert_eq!(
            PersonName::parse("last_name", "N\u{0303}u\u{0301}n\u{0303}ez").map(|n| n.0),
            Ok("Ñúñez".to_owned())
        );
    }

    #[test]
    fn trims_surrounding_space() {
        assert_eq!(
            PersonName::parse("first_name", "  Ada ").map(|n| n.0),
            Ok("Ada".into())
        );
    }
}
