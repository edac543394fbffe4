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
//! The QR code is drawn as vector rectangles, not an image: it stays sharp at
//! any zoom and costs a few hundred bytes.
//!
//! Every voucher of a product shares its fonts, labels and product lines, so
//! [`Printer`] renders those once per product into a template and stamps
//! each order's name, id, time and QR code onto it ([`stamp`]). A name with a
//! character the template's fonts lack is rendered whole, by
//! [`render_voucher`], with fonts subset to its characters.
//!
//! The parts, each in its own file:
//! - [`fonts`]: the two faces, which one draws each character, text widths,
//!   and cutting a face down to a voucher's characters.
//! - [`layout`]: the page: geometry, labels, and text set to fit.
//! - [`qr`]: the voucher's code (signed, or the bare order id) as a QR code,
//!   drawn as one vector polygon.
//! - [`pdf`]: the document around the page: embedded fonts, saving, and
//!   compressing its streams.
//! - [`stamp`]: a product's template, and vouchers stamped from it.
//!
//! The rest of the crate needs only [`Printer`].

mod fonts;
mod layout;
mod pdf;
mod qr;
mod stamp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use printpdf::PdfDocument;

use crate::order::Order;

pub use fonts::Fonts;
use stamp::Template;

/// Why a voucher could not be rendered.
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

/// How many products' templates a renderer keeps. A drop is one product; past
/// this many, the cache starts again empty rather than track use.
const TEMPLATES: usize = 64;

/// Renders vouchers: the fonts, and a template per product seen.
pub struct Printer {
    fonts: Fonts,
    /// By SKU; a template is used only for orders it [`Template::fits`].
    templates: Mutex<HashMap<String, Arc<Template>>>,
}

/// A rendered voucher, and how.
pub struct Voucher {
    pub bytes: Vec<u8>,
    /// Stamped onto the product's template, or else rendered whole.
    pub stamped: bool,
}

impl Printer {
    pub fn load() -> Result<Self, RenderError> {
        Ok(Self::with_fonts(Fonts::load()?))
    }

    pub fn with_fonts(fonts: Fonts) -> Self {
        Printer {
            fonts,
            templates: Mutex::new(HashMap::new()),
        }
    }

    /// The fonts every render uses.
    pub fn fonts(&self) -> &Fonts {
        &self.fonts
    }

    /// The voucher for `order`: stamped if its product's template has every
    /// character of its name, else rendered whole. Both give the same page,
    /// with `code` in its QR ([`crate::order::voucher_code`]).
    pub fn render(&self, order: &Order, code: &str) -> Result<Voucher, RenderError> {
        let content = layout::Content::new(order, code);
        let items = layout::place(&content, &self.fonts);
        let template = self.template(order, &content, &items)?;
        if let Some(bytes) = template.stamp(&items, code, &self.fonts)? {
            return Ok(Voucher {
                bytes,
                stamped: true,
            });
        }
        Ok(Voucher {
            bytes: render_voucher(order, code, &self.fonts)?,
            stamped: false,
        })
    }

    /// The template for `order`'s product, built on first use. Two renders
    /// may build the same one at once; the second to finish replaces the
    /// first, an equal template.
    fn template(
        &self,
        order: &Order,
        content: &layout::Content<'_>,
        items: &[(layout::Part, layout::Item)],
    ) -> Result<Arc<Template>, RenderError> {
        let cached = self
            .templates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&order.sku)
            .filter(|t| t.fits(items))
            .cloned();
        if let Some(template) = cached {
            return Ok(template);
        }
        let template = Arc::new(Template::build(content, items, &self.fonts)?);
        let mut templates = self.templates.lock().unwrap_or_else(|p| p.into_inner());
        if templates.len() >= TEMPLATES && !templates.contains_key(&order.sku) {
            templates.clear();
        }
        templates.insert(order.sku.clone(), Arc::clone(&template));
        Ok(template)
    }
}

/// Renders the voucher for `order` whole: fonts subset to its characters,
/// every stream compressed. What [`Printer::render`] falls back to.
pub fn render_voucher(order: &Order, code: &str, fonts: &Fonts) -> Result<Vec<u8>, RenderError> {
    let content = layout::Content::new(order, code);
    let used = fonts.chars_by_face(content.texts());
    // printpdf names the document and its fonts from a process-wide counter,
    // in the order they are made: keeping these steps in this order keeps
    // the bytes what they were, not just the page.
    let mut doc = PdfDocument::new("Voucher");
    let ids = pdf::embed_fonts(&mut doc, fonts, &used)?;
    doc.with_pages(vec![layout::page(&content, fonts, &ids)?]);
    pdf::save(&doc)
}

/// What the tests of every part share: the fonts, loaded once, an order to
/// render, and a way to read a voucher's text back.
#[cfg(test)]
mod test_support {
    use super::Fonts;
    use crate::order::{Order, OrderId};
    use printpdf::PdfDocument;
    use std::sync::OnceLock;

    /// The order id of [`order`].
    pub(super) const ID: &str = "0123456789abcdef0123456789abcdef";

    pub(super) fn fonts() -> &'static Fonts {
        static FONTS: OnceLock<Fonts> = OnceLock::new();
        FONTS.get_or_init(|| Fonts::load().expect("embedded fonts parse"))
    }

    pub(super) fn order(first: &str, last: &str, product: &str) -> Order {
        Order {
            order_id: OrderId::parse(ID).expect("valid"),
            sku: "sku-1".into(),
            product_name: product.into(),
            first_name: first.into(),
            last_name: last.into(),
            created_at: chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00.123456Z")
                .expect("valid time")
                .to_utc(),
            redeem_from: None,
            redeem_until: None,
        }
    }

    /// The text of a PDF, read through its fonts' ToUnicode maps.
    pub(super) fn text_of(bytes: &[u8]) -> String {
        let doc = PdfDocument::parse(
            bytes,
            &printpdf::PdfParseOptions::default(),
            &mut Vec::new(),
        )
        .expect("parses back");
        doc.extract_text().concat().concat()
    }
}

#[cfg(test)]
mod tests {
    use super::render_voucher;
    use super::test_support::{ID, fonts, order, text_of};

    #[test]
    fn renders_a_pdf() {
        let bytes =
            render_voucher(&order("Zoë", "Ñúñez", "Sneaker 42"), ID, fonts()).expect("renders");
        assert!(bytes.starts_with(b"%PDF-"), "not a PDF header");
        let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(64)..]);
        assert!(tail.contains("%%EOF"), "no PDF trailer");
        // Subset fonts keep a voucher small, even with the CJK face embedded.
        assert!(bytes.len() < 60_000, "{} bytes", bytes.len());
        let cjk = render_voucher(&order("张", "伟", "限量版运动鞋"), ID, fonts()).expect("renders");
        assert!(cjk.len() < 60_000, "{} bytes", cjk.len());
    }

    #[test]
    fn text_is_extractable_including_accents_and_cjk() {
        // Parse the produced bytes back and read the text through the fonts'
        // ToUnicode maps, as a PDF reader would.
        let bytes =
            render_voucher(&order("张", "伟", "Zoë Ñúñez Edition"), ID, fonts()).expect("renders");
        let text = text_of(&bytes);
        assert!(text.contains("0123456789abcdef0123456789abcdef"), "{text}");
        assert!(text.contains("张 伟"), "{text}");
        assert!(text.contains("Zoë Ñúñez Edition"), "{text}");
        assert!(text.contains("2026-11-24 12:00:00 UTC"), "{text}");
    }

    #[test]
    fn the_pickup_window_is_printed_when_there_is_one() {
        let mut with = order("Zoë", "Ñúñez", "Sneaker 42");
        with.redeem_from = Some("2026-12-01T10:00:00Z".parse().expect("time"));
        with.redeem_until = Some("2026-12-24T18:30:00Z".parse().expect("time"));
        let text = text_of(&render_voucher(&with, ID, fonts()).expect("renders"));
        assert!(text.contains("Pickup"), "{text}");
        assert!(
            text.contains("From 2026-12-01 10:00 UTC until 2026-12-24 18:30 UTC"),
            "{text}"
        );
        with.redeem_from = None;
        let text = text_of(&render_voucher(&with, ID, fonts()).expect("renders"));
        assert!(text.contains("Until 2026-12-24 18:30 UTC"), "{text}");
        let without = order("Zoë", "Ñúñez", "Sneaker 42");
        let text = text_of(&render_voucher(&without, ID, fonts()).expect("renders"));
        assert!(!text.contains("Pickup"), "{text}");
    }
}
