//! Order → one-page PDF voucher. Pure and synchronous: no I/O, no clock, so the
//! same order always gives the same page, and callers run it in
//! `spawn_blocking` because it is CPU-bound (font subsetting and Flate
//! compression are most of it).
//!
//! Text uses two embedded fonts (res/fonts/LICENSES.md): DejaVu Sans for Latin,
//! Greek and Cyrillic, and Droid Sans Fallback for CJK. Each character goes to
//! the first font that has a glyph for it, so "Zoë 张伟" mixes both on one line.
//! Fonts are embedded as Type0/Identity-H with a ToUnicode map (printpdf does
//! this), which is what lets PDF readers and tests extract the text again.
//!
//! The QR code is drawn as vector rectangles, not an image ([`qr`]): it stays
//! sharp at any zoom and costs a few hundred bytes.

use printpdf::{
    Color, Mm, Op, ParsedFont, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, Rgb,
    TextItem,
};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::order::Order;

mod qr;

const LATIN_TTF: &[u8] = include_bytes!("../../../res/fonts/DejaVuSans.ttf");
const CJK_TTF: &[u8] = include_bytes!("../../../res/fonts/DroidSansFallbackFull.ttf");

// A5 portrait: fits a phone screen and prints on half a sheet.
const PAGE_W: f32 = 148.0;
const PAGE_H: f32 = 210.0;
const MARGIN: f32 = 14.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN;
const QR_SIZE: f32 = 60.0;

const LABEL_TITLE: &str = "VOUCHER";
const LABEL_TO: &str = "Issued to";
const LABEL_ORDER: &str = "Order";
const LABEL_ISSUED: &str = "Issued";
const FOOTER: &str = "Show this code at the counter to collect your order.";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("embedded font {0} does not parse")]
    Font(&'static str),
    #[error("subsetting font {0}: {1}")]
    Subset(&'static str, String),
    #[error("QR code: {0}")]
    Qr(#[from] fast_qr::qr::QRCodeError),
    #[error("compressing a stream: {0}")]
    Compress(#[from] std::io::Error),
    #[error("writing the PDF: {0}")]
    Write(#[from] lopdf::Error),
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
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
    fn subset(&self, face: Face, chars: &BTreeSet<char>) -> Result<ParsedFont, RenderError> {
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
    fn runs(&self, text: &str) -> Vec<(Face, String)> {
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
    fn width(&self, text: &str, size: f32) -> f32 {
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

/// Renders the voucher for `order`.
pub fn render_voucher(order: &Order, fonts: &Fonts) -> Result<Vec<u8>, RenderError> {
    let full_name = order.full_name();
    let issued = order.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let sku = format!("SKU {}", order.sku);

    // Every character the page can show, including the ellipsis `fitted`
    // may add, sorted by the face that will draw it.
    // A space in both, whatever line wrapping does to runs.
    let mut used = [BTreeSet::from([' ']), BTreeSet::from([' '])];
    let texts = [
        LABEL_TITLE,
        LABEL_TO,
        LABEL_ORDER,
        LABEL_ISSUED,
        FOOTER,
        "…",
        &order.product_name,
        &sku,
        &full_name,
        order.order_id.as_str(),
        &issued,
    ];
    for text in texts {
        // The same split as drawing uses: a space inside a CJK run is drawn
        // with the CJK face, so its subset needs the space glyph too.
        for (face, run) in fonts.runs(text) {
            used[face as usize].extend(run.chars());
        }
    }

    let mut doc = PdfDocument::new("Voucher");
    let latin = doc.add_font(&fonts.subset(Face::Latin, &used[0])?);
    // A face that draws nothing is not embedded: most vouchers have no CJK
    // text, and subsetting the 4 MB CJK face is most of a render's cost.
    // Only CJK runs (from `runs`, as drawing splits them) reference its id.
    let cjk = if used[1].iter().all(|c| c.is_whitespace()) {
        latin.clone()
    } else {
        doc.add_font(&fonts.subset(Face::Cjk, &used[1])?)
    };
    let ids = [latin, cjk];
    let mut page = PageWriter {
        fonts,
        ids: &ids,
        ops: Vec::new(),
        y: PAGE_H - MARGIN,
    };

    page.line(LABEL_TITLE, 10.0, 10.0, GREY);
    page.gap(2.0);
    page.fitted(&order.product_name, 22.0, 13.0, BLACK);
    page.line(&sku, 9.0, 7.0, GREY);
    page.gap(6.0);
    page.line(LABEL_TO, 9.0, 9.0, GREY);
    page.fitted(&full_name, 16.0, 10.0, BLACK);
    page.gap(4.0);
    page.line(LABEL_ORDER, 9.0, 9.0, GREY);
    page.line(order.order_id.as_str(), 11.0, 11.0, BLACK);
    page.gap(4.0);
    page.line(LABEL_ISSUED, 9.0, 9.0, GREY);
    page.line(&issued, 11.0, 11.0, BLACK);

    let qr = qr::encode(order.order_id.as_str())?;
    let qr_x = (PAGE_W - QR_SIZE) / 2.0;
    let qr_y = MARGIN + 14.0;
    page.ops.push(Op::SetFillColor { col: BLACK });
    page.ops.push(qr::polygon(&qr, qr_x, qr_y, QR_SIZE));

    page.y = MARGIN + 6.0;
    page.line(FOOTER, 9.0, 9.0, GREY);

    let pdf_page = PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), page.ops);
    doc.with_pages(vec![pdf_page]);
    save(&doc)
}

/// Serialises `doc` with every stream Flate-compressed at a fast level.
///
/// `PdfDocument::save` compresses at `Compression::best()`, which took a fifth
/// of the worker's CPU under load. The fast level renders in 1.17 ms instead
/// of 1.80 ms, and a Latin voucher grows from 18.5 to 22.7 KB (mostly the font
/// subset); level 3 gave 1.39 ms and 18.8 KB.
fn save(doc: &PdfDocument) -> Result<Vec<u8>, RenderError> {
    let options = PdfSaveOptions {
        optimize: false,
        ..PdfSaveOptions::default()
    };
    let mut pdf = printpdf::serialize::to_lopdf_doc(doc, &options, &mut Vec::new());
    for object in pdf.objects.values_mut() {
        if let lopdf::Object::Stream(stream) = object {
            compress(stream)?;
        }
    }
    let mut bytes = Vec::new();
    pdf.save_to(&mut bytes)?;
    Ok(bytes)
}

fn compress(stream: &mut lopdf::Stream) -> Result<(), RenderError> {
    use std::io::Write as _;
    if stream.dict.has(b"Filter") {
        return Ok(());
    }
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(stream.content.len() / 2),
        flate2::Compression::fast(),
    );
    encoder.write_all(&stream.content)?;
    let compressed = encoder.finish()?;
    if compressed.len() < stream.content.len() {
        stream.dict.set("Filter", "FlateDecode");
        stream.set_content(compressed);
    }
    Ok(())
}

const BLACK: Color = Color::Rgb(Rgb {
    r: 0.0,
    g: 0.0,
    b: 0.0,
    icc_profile: None,
});
const GREY: Color = Color::Rgb(Rgb {
    r: 0.4,
    g: 0.4,
    b: 0.4,
    icc_profile: None,
});

/// Lays text out top to bottom.
struct PageWriter<'a> {
    fonts: &'a Fonts,
    ids: &'a [printpdf::FontId; 2],
    ops: Vec<Op>,
    /// Top of the next line, in mm from the bottom of the page.
    y: f32,
}

impl PageWriter<'_> {
    fn gap(&mut self, mm: f32) {
        self.y -= mm;
    }

    /// One line at `size`, shrunk down to `min_size` if it is too wide.
    fn line(&mut self, text: &str, size: f32, min_size: f32, col: Color) {
        let size = self.fit_size(text, size, min_size);
        self.emit(text, size, col);
    }

    /// Like `line`, but text still too wide at `min_size` wraps onto up to
    /// three lines, and anything beyond is cut with an ellipsis.
    fn fitted(&mut self, text: &str, size: f32, min_size: f32, col: Color) {
        let size = self.fit_size(text, size, min_size);
        let lines = wrap(self.fonts, text, size, 3);
        for l in lines {
            self.emit(&l, size, col.clone());
        }
    }

    fn fit_size(&self, text: &str, size: f32, min_size: f32) -> f32 {
        let width = self.fonts.width(text, size);
        let max = Pt::from(Mm(TEXT_W)).0;
        if width <= max {
            size
        } else {
            (size * max / width).max(min_size)
        }
    }

    fn emit(&mut self, text: &str, size: f32, col: Color) {
        // Baseline sits one font size below the top of the line (size is in pt).
        let line_height_mm = Mm::from(Pt(size * 1.3)).0;
        self.y -= line_height_mm;
        self.ops.push(Op::SetFillColor { col });
        self.ops.push(Op::StartTextSection);
        self.ops.push(Op::SetTextCursor {
            pos: Point::new(Mm(MARGIN), Mm(self.y)),
        });
        for (face, run) in self.fonts.runs(text) {
            self.ops.push(Op::SetFont {
                font: PdfFontHandle::External(self.ids[face as usize].clone()),
                size: Pt(size),
            });
            self.ops.push(Op::ShowText {
                items: vec![TextItem::Text(run)],
            });
        }
        self.ops.push(Op::EndTextSection);
    }
}

/// Greedy wrap by characters, preferring to break after whitespace.
fn wrap(fonts: &Fonts, text: &str, size: f32, max_lines: usize) -> Vec<String> {
    let max = Pt::from(Mm(TEXT_W)).0;
    let mut lines: Vec<String> = Vec::new();
    let mut rest: Vec<char> = text.trim().chars().collect();
    while !rest.is_empty() {
        if lines.len() + 1 == max_lines {
            lines.push(ellipsize(
                fonts,
                &rest.iter().collect::<String>(),
                size,
                max,
            ));
            break;
        }
        // The longest prefix that fits, at least one character.
        let mut end = rest.len();
        while end > 1 && fonts.width(&rest[..end].iter().collect::<String>(), size) > max {
            end -= 1;
        }
        if end < rest.len() {
            if let Some(space) = rest[..end].iter().rposition(|c| c.is_whitespace()) {
                if space > 0 {
                    end = space + 1;
                }
            }
        }
        lines.push(rest[..end].iter().collect::<String>().trim_end().to_owned());
        rest.drain(..end);
        while rest.first().is_some_and(|c| c.is_whitespace()) {
            rest.remove(0);
        }
    }
    lines
}

fn ellipsize(fonts: &Fonts, text: &str, size: f32, max: f32) -> String {
    if fonts.width(text, size) <= max {
        return text.to_owned();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let candidate = format!("{}…", chars.iter().collect::<String>().trim_end());
        if fonts.width(&candidate, size) <= max {
            return candidate;
        }
    }
    "…".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::OrderId;
    use std::sync::OnceLock;

    fn fonts() -> &'static Fonts {
        static FONTS: OnceLock<Fonts> = OnceLock::new();
        FONTS.get_or_init(|| Fonts::load().expect("embedded fonts parse"))
    }

    fn order(first: &str, last: &str, product: &str) -> Order {
        Order {
            order_id: OrderId::parse("0123456789abcdef0123456789abcdef").expect("valid"),
            sku: "sku-1".into(),
            product_name: product.into(),
            first_name: first.into(),
            last_name: last.into(),
            created_at: chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00.123456Z")
                .expect("valid time")
                .to_utc(),
        }
    }

    #[test]
    fn renders_a_pdf() {
        let bytes = render_voucher(&order("Zoë", "Ñúñez", "Sneaker 42"), fonts()).expect("renders");
        assert!(bytes.starts_with(b"%PDF-"), "not a PDF header");
        let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(64)..]);
        assert!(tail.contains("%%EOF"), "no PDF trailer");
        // Subset fonts keep a voucher small, even with the CJK face embedded.
        assert!(bytes.len() < 60_000, "{} bytes", bytes.len());
        let cjk = render_voucher(&order("张", "伟", "限量版运动鞋"), fonts()).expect("renders");
        assert!(cjk.len() < 60_000, "{} bytes", cjk.len());
    }

    #[test]
    fn text_is_extractable_including_accents_and_cjk() {
        // Parse the produced bytes back and read the text through the fonts'
        // ToUnicode maps, as a PDF reader would.
        let bytes =
            render_voucher(&order("张", "伟", "Zoë Ñúñez Edition"), fonts()).expect("renders");
        let text = text_of(&bytes);
        assert!(text.contains("0123456789abcdef0123456789abcdef"), "{text}");
        assert!(text.contains("张 伟"), "{text}");
        assert!(text.contains("Zoë Ñúñez Edition"), "{text}");
        assert!(text.contains("2026-11-24 12:00:00 UTC"), "{text}");
    }

    /// The text of a PDF, read through its fonts' ToUnicode maps.
    fn text_of(bytes: &[u8]) -> String {
        let doc = PdfDocument::parse(
            bytes,
            &printpdf::PdfParseOptions::default(),
            &mut Vec::new(),
        )
        .expect("parses back");
        doc.extract_text().concat().concat()
    }

    /// How many font programs a PDF embeds.
    fn embedded_fonts(bytes: &[u8]) -> usize {
        let doc = lopdf::Document::load_mem(bytes).expect("parses");
        doc.objects
            .values()
            .filter_map(|o| o.as_dict().ok())
            .filter(|d| d.has(b"FontFile2"))
            .count()
    }

    #[test]
    fn every_stream_is_flate_compressed_and_decodes() {
        let bytes = render_voucher(&order("张", "伟", "Sneaker 42"), fonts()).expect("renders");
        let doc = lopdf::Document::load_mem(&bytes).expect("parses");
        let streams: Vec<&lopdf::Stream> = doc
            .objects
            .values()
            .filter_map(|o| o.as_stream().ok())
            .collect();
        // The page's content stream and the two font programs at least.
        assert!(streams.len() >= 3, "{} streams", streams.len());
        for stream in streams {
            let filter = stream.dict.get(b"Filter").and_then(|f| f.as_name());
            assert_eq!(filter.ok(), Some(&b"FlateDecode"[..]), "{:?}", stream.dict);
            let plain = stream.decompressed_content().expect("inflates");
            assert!(plain.len() > stream.content.len(), "{:?}", stream.dict);
        }
    }

    #[test]
    fn the_cjk_face_is_embedded_only_when_it_draws_something() {
        let latin = render_voucher(&order("Zoë", "Ñúñez", "Sneaker 42"), fonts()).expect("renders");
        assert_eq!(embedded_fonts(&latin), 1);
        let text = text_of(&latin);
        assert!(text.contains("Zoë Ñúñez"), "{text}");
        let cjk = render_voucher(&order("张", "伟", "Sneaker 42"), fonts()).expect("renders");
        assert_eq!(embedded_fonts(&cjk), 2);
    }

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

    #[test]
    fn long_names_wrap_and_are_cut() {
        let long = "Wolfeschlegelsteinhausenbergerdorff ".repeat(8);
        let lines = wrap(fonts(), &long, 16.0, 3);
        assert_eq!(lines.len(), 3);
        let max = Pt::from(Mm(TEXT_W)).0;
        for l in &lines {
            assert!(fonts().width(l, 16.0) <= max + 0.01, "{l}");
        }
        assert!(lines[2].ends_with('…'));
        // A long voucher still renders.
        render_voucher(&order(&long, &long, &long), fonts()).expect("renders");
    }
}
