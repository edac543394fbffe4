//! The two embedded faces and everything about choosing and embedding them.
//!
//! DejaVu Sans draws Latin, Greek and Cyrillic, Droid Sans Fallback draws CJK
//! (res/fonts/LICENSES.md). Each character goes to the first face that has a
//! glyph for it ([`Fonts::runs`]), which is also how the layout measures text
//! ([`Fonts::width`]). Embedding a whole face would cost 0.4 MB or 4 MB per
//! voucher, so each voucher embeds a subset of just its characters
//! ([`Fonts::subset`]), taken from a cached cut of the face to be fast.

use printpdf::ParsedFont;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use super::RenderError;

const LATIN_TTF: &[u8] = include_bytes!("../../../res/fonts/DejaVuSans.ttf");
const CJK_TTF: &[u8] = include_bytes!("../../../res/fonts/DroidSansFallbackFull.ttf");

/// The parsed fonts, loaded once at startup and shared by every render.
pub struct Fonts {
    faces: [ParsedFont; 2],
    /// Per face, a copy cut down to the characters vouchers have used so far.
    /// Subsetting reads every glyph of its source: 6,253 for DejaVu Sans and
    /// 49,382 for the CJK face. A voucher whose characters are all in the cut
    /// is subset from the cut instead, to the same font file. A voucher with a
    /// new character first grows the cut (reading the whole face once), up to
    /// `cut_limit` characters; past that, it is subset from the whole face.
    /// DejaVu's cut starts with [`COMMON_LATIN`]. A Latin voucher rendered in
    /// 0.93 ms instead of 1.15 ms; a CJK one in about 0.9 ms instead of 2.2 ms
    /// once its characters were seen.
    cuts: [RwLock<Arc<Cut>>; 2],
    cut_limit: usize,
}

/// A face cut down to `chars`: its file and its parsed form.
struct Cut {
    chars: BTreeSet<char>,
    bytes: Vec<u8>,
    font: ParsedFont,
}

/// How many characters a face's cut may grow to: subsetting from a cut this
/// size still reads 24 times fewer glyphs than from the whole CJK face.
const CUT_LIMIT: usize = 2048;

/// The characters DejaVu's cut starts with: ASCII, Latin-1, Latin
/// Extended-A (most European names) and common typographic punctuation.
const COMMON_LATIN: [std::ops::RangeInclusive<char>; 6] = [
    ' '..='~',
    '\u{a0}'..='\u{17f}',
    '\u{2013}'..='\u{2014}',
    '\u{2018}'..='\u{201e}',
    '\u{2026}'..='\u{2026}',
    '\u{20ac}'..='\u{20ac}',
];

/// The characters of [`COMMON_LATIN`].
pub(super) fn common_latin() -> impl Iterator<Item = char> {
    COMMON_LATIN.iter().cloned().flatten()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Face {
    Latin = 0,
    Cjk = 1,
}

impl Face {
    fn file(self) -> (&'static [u8], &'static str) {
        match self {
            Face::Latin => (LATIN_TTF, "DejaVuSans.ttf"),
            Face::Cjk => (CJK_TTF, "DroidSansFallbackFull.ttf"),
        }
    }
}

impl Fonts {
    pub fn load() -> Result<Self, RenderError> {
        Self::with_cut_limit(CUT_LIMIT)
    }

    fn with_cut_limit(cut_limit: usize) -> Result<Self, RenderError> {
        let parse = |face: Face| {
            let (bytes, name) = face.file();
            ParsedFont::from_bytes(bytes, 0, &mut Vec::new()).ok_or(RenderError::Font(name))
        };
        let faces = [parse(Face::Latin)?, parse(Face::Cjk)?];
        let latin = cut(
            Face::Latin,
            &faces[0],
            COMMON_LATIN.iter().cloned().flatten().collect(),
        )?;
        let cjk = cut(Face::Cjk, &faces[1], BTreeSet::from([' ']))?;
        Ok(Fonts {
            faces,
            cuts: [RwLock::new(Arc::new(latin)), RwLock::new(Arc::new(cjk))],
            cut_limit,
        })
    }

    fn face(&self, face: Face) -> &ParsedFont {
        &self.faces[face as usize]
    }

    fn cut(&self, face: Face) -> Arc<Cut> {
        let cut = self.cuts[face as usize]
            .read()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(&cut)
    }

    /// A copy of `face` cut down to the glyphs of `chars`, to embed.
    ///
    /// printpdf subsets fonts only with its `text_layout` feature (a whole
    /// HTML layout engine); without it every voucher would embed the whole
    /// font, 0.4 MB for DejaVu and 4 MB for the CJK face. Subsetting here
    /// keeps a voucher at a few tens of kB. Advance widths do not change, so
    /// layout keeps measuring with the full faces.
    pub(super) fn subset(
        &self,
        face: Face,
        chars: &BTreeSet<char>,
    ) -> Result<ParsedFont, RenderError> {
        let (_, name) = face.file();
        parse_subset(&self.subset_bytes(face, chars)?, name)
    }

    /// The subset font file: from the face's cut when it has every character
    /// the face has; else from a cut grown to take them in, while it stays
    /// within `cut_limit`; else from the whole face.
    fn subset_bytes(&self, face: Face, chars: &BTreeSet<char>) -> Result<Vec<u8>, RenderError> {
        let (bytes, name) = face.file();
        let whole = self.face(face);
        // Characters the face lacks are left out of any subset alike.
        let drawn: BTreeSet<char> = chars
            .iter()
            .copied()
            .filter(|c| whole.lookup_glyph_index(*c as u32).is_some())
            .collect();
        let current = self.cut(face);
        if drawn.is_subset(&current.chars) {
            return subset(&current.bytes, &current.font, name, &drawn);
        }
        let grown: BTreeSet<char> = current.chars.union(&drawn).copied().collect();
        if grown.len() > self.cut_limit {
            return subset(bytes, whole, name, &drawn);
        }
        // Reading the whole face once, to grow the cut, then subsetting from
        // the cut costs about what subsetting from the whole face would.
        let next = Arc::new(cut(face, whole, grown)?);
        let out = subset(&next.bytes, &next.font, name, &drawn)?;
        let mut slot = self.cuts[face as usize]
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // Another render may have grown it meanwhile: keep the larger.
        if slot.chars.is_subset(&next.chars) {
            *slot = next;
        }
        Ok(out)
    }

    /// The characters of `texts`, sorted by the face that will draw them and
    /// indexed by [`Face`]: what each face's subset has to hold.
    pub(super) fn chars_by_face<'t>(
        &self,
        texts: impl IntoIterator<Item = &'t str>,
    ) -> [BTreeSet<char>; 2] {
        // A space in both, whatever line wrapping does to runs.
        let mut used = [BTreeSet::from([' ']), BTreeSet::from([' '])];
        for text in texts {
            // The same split as drawing uses: a space inside a CJK run is drawn
            // with the CJK face, so its subset needs the space glyph too.
            for (face, run) in self.runs(text) {
                used[face as usize].extend(run.chars());
            }
        }
        used
    }

    /// Picks the face for one character. Characters neither font covers stay
    /// with the Latin face (they render as its "missing glyph" box, which is
    /// still better than dropping them silently).
    fn face_for(&self, c: char) -> Face {
        if c.is_whitespace()
            || self
                .face(Face::Latin)
                .lookup_glyph_index(c as u32)
                .is_some()
        {
            Face::Latin
        } else if self.face(Face::Cjk).lookup_glyph_index(c as u32).is_some() {
            Face::Cjk
        } else {
            Face::Latin
        }
    }

    /// Splits text into runs that each use one face. Whitespace joins the run
    /// it is in, so a space between two CJK words does not switch fonts twice.
    pub(super) fn runs(&self, text: &str) -> Vec<(Face, String)> {
        let mut runs: Vec<(Face, String)> = Vec::new();
        for c in text.chars() {
            let face = match runs.last() {
                Some((current, _)) if c.is_whitespace() => *current,
                _ => self.face_for(c),
            };
            match runs.last_mut() {
                Some((current, run)) if *current == face => run.push(c),
                _ => runs.push((face, c.to_string())),
            }
        }
        runs
    }

    /// Advance width of `text` at `size`, in points.
    pub(super) fn width(&self, text: &str, size: f32) -> f32 {
        self.runs(text)
            .iter()
            .map(|(face, run)| {
                let font = self.face(*face);
                let units: u32 = run
                    .chars()
                    .map(|c| {
                        font.lookup_glyph_index(c as u32)
                            .and_then(|gid| font.get_glyph_width(gid))
                            .map_or(u32::from(font.units_per_em) / 2, u32::from)
                    })
                    .sum();
                units as f32 * size / f32::from(font.units_per_em.max(1))
            })
            .sum()
    }
}

/// `face` cut down to `chars`, as a source to subset from. Characters the face
/// lacks are left out of every subset alike, so `chars` may name some.
fn cut(face: Face, whole: &ParsedFont, chars: BTreeSet<char>) -> Result<Cut, RenderError> {
    let (bytes, name) = face.file();
    let bytes = subset(bytes, whole, name, &chars)?;
    let font = parse_subset(&bytes, name)?;
    Ok(Cut { chars, bytes, font })
}

fn parse_subset(bytes: &[u8], name: &'static str) -> Result<ParsedFont, RenderError> {
    ParsedFont::from_bytes(bytes, 0, &mut Vec::new())
        .ok_or_else(|| RenderError::Subset(name, "a subset of the face does not parse".into()))
}

/// The font file `bytes` (parsed as `font`) cut down to the glyphs of
/// `chars`: glyph 0 (.notdef), then the used glyphs in their order in the
/// source, so cutting a cut face keeps the same glyph order.
fn subset(
    bytes: &[u8],
    font: &ParsedFont,
    name: &'static str,
    chars: &BTreeSet<char>,
) -> Result<Vec<u8>, RenderError> {
    use allsorts::binary::read::ReadScope;
    use allsorts::font_data::FontData;
    use allsorts::subset::{CmapTarget, SubsetProfile};

    let glyphs: BTreeSet<u16> = std::iter::once(0)
        .chain(
            chars
                .iter()
                .filter_map(|c| font.lookup_glyph_index(*c as u32)),
        )
        .collect();
    let glyphs: Vec<u16> = glyphs.into_iter().collect();
    let err = |e: String| RenderError::Subset(name, e);
    let font_file = ReadScope::new(bytes)
        .read::<FontData<'_>>()
        .map_err(|e| err(e.to_string()))?;
    let provider = font_file
        .table_provider(0)
        .map_err(|e| err(e.to_string()))?;
    allsorts::subset::subset(&provider, &glyphs, &SubsetProfile::Pdf, CmapTarget::Unicode)
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::fonts;
    use super::*;

    /// Subsetting from a face's cut gives the same font file as from the whole
    /// face, so which source a voucher took never shows in the voucher.
    fn whole_subset(fonts: &Fonts, face: Face, text: &str) -> Vec<u8> {
        let (bytes, name) = face.file();
        let chars: BTreeSet<char> = text
            .chars()
            .filter(|c| fonts.face(face).lookup_glyph_index(*c as u32).is_some())
            .collect();
        subset(bytes, fonts.face(face), name, &chars).expect("subsets")
    }

    #[test]
    fn the_pre_cut_latin_face_subsets_to_the_same_font_file() {
        let fonts = Fonts::load().expect("fonts load");
        for text in [
            "Zoë Ñúñez VOUCHER 0123456789abcdef… SKU",
            "Łukasz Żółć – „Sneaker“ ‘42’ €",
            " ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}",
        ] {
            let chars: BTreeSet<char> = text.chars().collect();
            assert!(
                chars.is_subset(&fonts.cut(Face::Latin).chars),
                "{text:?} is not within the pre-cut face"
            );
            let from_cut = fonts.subset_bytes(Face::Latin, &chars).expect("subsets");
            assert!(
                from_cut == whole_subset(&fonts, Face::Latin, text),
                "{text:?} subsets differently"
            );
        }
        // Outside the pre-cut face (Greek here), the whole face is used.
        let text = "Ωμέγα Zoë";
        let chars: BTreeSet<char> = text.chars().collect();
        assert!(
            fonts
                .cut(Face::Latin)
                .font
                .lookup_glyph_index('Ω' as u32)
                .is_none()
        );
        let from_whole = fonts.subset_bytes(Face::Latin, &chars).expect("subsets");
        assert!(from_whole == whole_subset(&fonts, Face::Latin, text));
        let font = ParsedFont::from_bytes(&from_whole, 0, &mut Vec::new()).expect("parses");
        assert!(font.lookup_glyph_index('Ω' as u32).is_some());
    }

    #[test]
    fn the_pre_cut_latin_face_has_every_common_character() {
        let fonts = Fonts::load().expect("fonts load");
        let full = fonts.face(Face::Latin);
        let cut = fonts.cut(Face::Latin);
        let mut checked = 0;
        for c in COMMON_LATIN.iter().cloned().flatten() {
            let gid = full
                .lookup_glyph_index(c as u32)
                .unwrap_or_else(|| panic!("{c:?} missing from DejaVu Sans"));
            let in_cut = cut
                .font
                .lookup_glyph_index(c as u32)
                .unwrap_or_else(|| panic!("{c:?} missing from the pre-cut face"));
            assert_eq!(
                full.get_glyph_width(gid),
                cut.font.get_glyph_width(in_cut),
                "{c:?} has another advance width"
            );
            checked += 1;
        }
        assert_eq!(checked, 95 + 224 + 2 + 7 + 1 + 1);
        assert_eq!(cut.chars.len(), checked);
    }

    #[test]
    fn a_face_learns_the_characters_it_was_asked_for() {
        let fonts = Fonts::load().expect("fonts load");
        for (face, text) in [
            (Face::Cjk, "张伟 限量版运动鞋"),
            (Face::Latin, "Ἀλέξανδρος محمد"),
        ] {
            let chars: BTreeSet<char> = text.chars().collect();
            assert!(!chars.is_subset(&fonts.cut(face).chars));
            // First from the whole face; the cut then holds the characters.
            let first = fonts.subset_bytes(face, &chars).expect("subsets");
            assert!(
                chars.is_subset(&fonts.cut(face).chars),
                "{text:?} not learnt"
            );
            // Then from the cut, to the same file.
            let again = fonts.subset_bytes(face, &chars).expect("subsets");
            assert!(first == again, "{text:?} subsets differently from the cut");
            assert!(first == whole_subset(&fonts, face, text));
        }
        // What the face lacks is left out alike, and not learnt.
        let chars = BTreeSet::from(['\u{e000}', '张']);
        let bytes = fonts.subset_bytes(Face::Cjk, &chars).expect("subsets");
        assert!(bytes == whole_subset(&fonts, Face::Cjk, "\u{e000}张"));
        assert!(!fonts.cut(Face::Cjk).chars.contains(&'\u{e000}'));
    }

    #[test]
    fn a_cut_stops_growing_at_its_limit() {
        let fonts = Fonts::with_cut_limit(4).expect("fonts load");
        let chars = BTreeSet::from(['张', '伟']);
        fonts.subset_bytes(Face::Cjk, &chars).expect("subsets");
        assert_eq!(
            fonts.cut(Face::Cjk).chars,
            BTreeSet::from([' ', '张', '伟'])
        );
        // Two more would make five: the cut stays, the subset is still right.
        let text = "限量";
        let chars: BTreeSet<char> = text.chars().collect();
        let bytes = fonts.subset_bytes(Face::Cjk, &chars).expect("subsets");
        assert!(bytes == whole_subset(&fonts, Face::Cjk, text));
        assert_eq!(fonts.cut(Face::Cjk).chars.len(), 3);
    }

    #[test]
    fn chooses_a_face_per_character() {
        let runs = fonts().runs("Zoë 张伟 Ñ");
        let faces: Vec<Face> = runs.iter().map(|(f, _)| *f).collect();
        assert_eq!(faces, [Face::Latin, Face::Cjk, Face::Latin]);
        assert_eq!(runs[1].1, "张伟 ");
    }
}
