//! A product's template, and vouchers stamped from it.
//!
//! Every voucher of a product shares most of its file: the embedded fonts
//! (their programs, widths and ToUnicode maps, which are most of its bytes
//! and, subset and compressed, most of a whole render's CPU), the product's
//! lines and the labels. [`Template::build`] renders that once per product.
//! A voucher is then the template's objects with its one content stream
//! replaced by the shared drawing (kept uncompressed) followed by the order's
//! own lines and QR code, written here directly as PDF operators, with text
//! encoded as glyph ids of the template's fonts (Identity-H, as printpdf
//! embeds them). Nothing is subset, parsed or compressed again but that one
//! stream.
//!
//! The template's Latin font holds the product's characters and every
//! character of the common Latin ranges ([`super::fonts::common_latin`]),
//! so most European names stamp. A name with a character outside the
//! template's fonts (Greek, Arabic, CJK unless the product has it) does not:
//! [`Template::stamp`] returns `None`, and the caller renders that voucher
//! whole, with fonts subset to its own characters.
//!
//! A font's widths and ToUnicode map cover only the glyphs a page draws
//! (printpdf builds them from the pages), so the template is built with a
//! second page that draws every character of its fonts, then deleted.

use std::collections::HashMap;

use lopdf::content::{Content as Drawing, Operation};
use lopdf::{Object, ObjectId, StringFormat};
use printpdf::{Color, FontId, Op, PdfDocument, PdfFontHandle, Pt, TextItem};

use super::RenderError;
use super::fonts::{Face, Fonts, common_latin};
use super::layout::{self, Content, Item, Line, OWN_FIXED_CHARS, Part};
use super::{pdf, qr};

/// What every voucher of one product shares, rendered.
pub(super) struct Template {
    /// The product's items as placed: an order whose product items differ
    /// (another name for the SKU) needs another template.
    shared: Vec<Item>,
    /// The document, its fonts embedded and compressed.
    doc: lopdf::Document,
    /// The page's content stream, replaced in each voucher.
    content_id: ObjectId,
    /// The shared items' operators, uncompressed: each voucher's stream
    /// starts with them.
    drawing: Vec<u8>,
    /// Per [`Face`], its embedded font, if the template has one.
    faces: [Option<Embedded>; 2],
}

/// One embedded font: its resource name on the page, and the glyph id of
/// every character it holds.
struct Embedded {
    resource: Vec<u8>,
    glyphs: HashMap<char, u16>,
}

impl Template {
    /// The template for the product of `content`, whose page is `items`.
    pub(super) fn build(
        content: &Content<'_>,
        items: &[(Part, Item)],
        fonts: &Fonts,
    ) -> Result<Self, RenderError> {
        let mut used =
            fonts.chars_by_face(content.product_texts().into_iter().chain([OWN_FIXED_CHARS]));
        used[Face::Latin as usize].extend(common_latin());
        let mut doc = PdfDocument::new("Voucher");
        let ids = pdf::embed_fonts(&mut doc, fonts, &used)?;
        let shared: Vec<Item> = items
            .iter()
            .filter(|(part, _)| *part == Part::Product)
            .map(|(_, item)| item.clone())
            .collect();
        let page = layout::blank_page(layout::ops(&shared, "", fonts, &ids)?);

        // The second page draws every character of each embedded font.
        let mut faces = [None, None];
        let mut coverage = Vec::new();
        for face in [Face::Latin, Face::Cjk] {
            let id = &ids[face as usize];
            if face == Face::Cjk && *id == ids[Face::Latin as usize] {
                continue; // not embedded: nothing draws with it
            }
            let font = &doc.resources.fonts.map[id].parsed_font;
            let glyphs: HashMap<char, u16> = used[face as usize]
                .iter()
                .filter_map(|c| Some((*c, font.lookup_glyph_index(*c as u32)?)))
                .collect();
            coverage.extend(cover(id, glyphs.keys().collect()));
            faces[face as usize] = Some(Embedded {
                resource: id.0.clone().into_bytes(),
                glyphs,
            });
        }
        doc.with_pages(vec![page, layout::blank_page(coverage)]);

        let mut pdf = pdf::to_lopdf(&doc);
        pdf.delete_pages(&[2]);
        pdf.prune_objects();
        let page_id = *pdf
            .get_pages()
            .get(&1)
            .ok_or(lopdf::Error::PageNumberNotFound(1))?;
        let content_id = pdf
            .get_dictionary(page_id)?
            .get(b"Contents")?
            .as_reference()?;
        let drawing = pdf.get_object(content_id)?.as_stream()?.content.clone();
        for (id, object) in pdf.objects.iter_mut() {
            if let Object::Stream(stream) = object {
                if *id != content_id {
                    pdf::compress(stream)?;
                }
            }
        }
        Ok(Template {
            shared,
            doc: pdf,
            content_id,
            drawing,
            faces,
        })
    }

    /// Whether `items` are of this template's product, as it placed them.
    pub(super) fn fits(&self, items: &[(Part, Item)]) -> bool {
        let mut shared = items
            .iter()
            .filter(|(part, _)| *part == Part::Product)
            .map(|(_, item)| item);
        self.shared.iter().all(|item| shared.next() == Some(item)) && shared.next().is_none()
    }

    /// The voucher whose page is `items`, its QR code encoding `code`; `None`
    /// if a character of its text is not in the template's fonts.
    pub(super) fn stamp(
        &self,
        items: &[(Part, Item)],
        code: &str,
        fonts: &Fonts,
    ) -> Result<Option<Vec<u8>>, RenderError> {
        let mut ops = Vec::new();
        for (part, item) in items {
            match (part, item) {
                (Part::Product, _) => {}
                (Part::Order, Item::Text(line)) => {
                    if !self.text(&mut ops, line, fonts) {
                        return Ok(None);
                    }
                }
                (Part::Order, Item::Qr { x, y, size }) => {
                    ops.push(fill(&layout::BLACK));
                    for [x0, y0, x1, y1] in qr::rectangles(&qr::encode(code)?, *x, *y, *size) {
                        let (x0, y0) = layout::mm_to_pt(x0, y0);
                        let (x1, y1) = layout::mm_to_pt(x1, y1);
                        ops.push(Operation::new(
                            "re",
                            vec![x0.into(), y0.into(), (x1 - x0).into(), (y1 - y0).into()],
                        ));
                    }
                    ops.push(Operation::new("f", vec![]));
                }
            }
        }
        let mut drawing = self.drawing.clone();
        // The template's stream may end on an operator with no whitespace
        // after it ("ET"): without a separator, the first stamped operator
        // would run into it ("ET0 0 0 rg"), and readers drop the order's text.
        drawing.push(b'\n');
        drawing.extend(Drawing { operations: ops }.encode()?);
        let mut doc = self.doc.clone();
        let stream = doc.get_object_mut(self.content_id)?.as_stream_mut()?;
        stream.set_content(drawing);
        pdf::compress(stream)?;
        pdf::write(&mut doc).map(Some)
    }

    /// Adds the operators that draw `line` to `ops`; false if one of its
    /// characters is not in the font of its face.
    fn text(&self, ops: &mut Vec<Operation>, line: &Line, fonts: &Fonts) -> bool {
        let (x, y) = layout::origin_pt(line);
        ops.push(fill(&line.col));
        ops.push(Operation::new("BT", vec![]));
        ops.push(Operation::new("Td", vec![x.into(), y.into()]));
        for (face, run) in fonts.runs(&line.text) {
            let Some(font) = &self.faces[face as usize] else {
                return false;
            };
            let mut codes = Vec::with_capacity(run.len() * 2);
            for c in run.chars() {
                let Some(gid) = font.glyphs.get(&c) else {
                    return false;
                };
                codes.extend(gid.to_be_bytes());
            }
            ops.push(Operation::new(
                "Tf",
                vec![Object::Name(font.resource.clone()), line.size.into()],
            ));
            ops.push(Operation::new(
                "Tj",
                vec![Object::String(codes, StringFormat::Hexadecimal)],
            ));
        }
        ops.push(Operation::new("ET", vec![]));
        true
    }
}

/// The fill colour operator for `col` (the layout uses RGB only).
fn fill(col: &Color) -> Operation {
    let (r, g, b) = match col {
        Color::Rgb(c) => (c.r, c.g, c.b),
        _ => (0.0, 0.0, 0.0),
    };
    Operation::new("rg", vec![r.into(), g.into(), b.into()])
}

/// Operations that draw every character of `chars` in the font `id`, so that
/// its widths and ToUnicode map hold them all.
fn cover(id: &FontId, chars: Vec<&char>) -> Vec<Op> {
    let mut chars: Vec<char> = chars.into_iter().copied().collect();
    chars.sort_unstable();
    vec![
        Op::StartTextSection,
        Op::SetFont {
            font: PdfFontHandle::External(id.clone()),
            size: Pt(10.0),
        },
        Op::ShowText {
            items: vec![TextItem::Text(chars.into_iter().collect())],
        },
        Op::EndTextSection,
    ]
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{fonts, order, text_of};
    use super::super::{Printer, Voucher, qr};
    use super::common_latin;
    use crate::order::Order;

    fn printer() -> Printer {
        Printer::with_fonts(super::super::Fonts::load().expect("fonts load"))
    }

    fn render(printer: &Printer, order: &Order) -> Voucher {
        printer
            .render(order, order.order_id.as_str())
            .expect("renders")
    }

    /// The texts a voucher must show, as a reader extracts them.
    fn assert_shows(bytes: &[u8], texts: &[&str]) {
        let text = text_of(bytes);
        for want in texts {
            assert!(text.contains(want), "{want:?} not in {text:?}");
        }
    }

    #[test]
    fn a_latin_voucher_is_stamped_and_reads_like_a_whole_one() {
        let printer = printer();
        let o = order("Zoë", "Ñúñez", "Sneaker 42");
        let stamped = render(&printer, &o);
        assert!(stamped.stamped);
        let whole =
            super::super::render_voucher(&o, o.order_id.as_str(), fonts()).expect("renders");
        let shown = [
            "VOUCHER",
            "Sneaker 42",
            "SKU sku-1",
            "Issued to",
            "Zoë Ñúñez",
            "Order",
            "0123456789abcdef0123456789abcdef",
            "Issued",
            "2026-11-24 12:00:00 UTC",
            "Show this code at the counter to collect your order.",
        ];
        assert_shows(&stamped.bytes, &shown);
        assert_shows(&whole, &shown);
        // The same page: every text in the same place, the same QR code.
        let ops = |bytes: &[u8]| {
            let doc = lopdf::Document::load_mem(bytes).expect("parses");
            let page = *doc.get_pages().get(&1).expect("a page");
            let mut ops: Vec<String> = doc
                .get_and_decode_page_content(page)
                .expect("content decodes")
                .operations
                .iter()
                .filter(|op| ["Td", "re", "m"].contains(&op.operator.as_str()))
                .map(|op| format!("{} {:?}", op.operator, op.operands))
                .collect();
            ops.sort();
            ops
        };
        // The template's last operator and the first stamped one are apart:
        // "ET0 0 0 rg" is one unknown operator to poppler, which then drops
        // the order's text (lopdf's own reader is more lenient).
        let doc = lopdf::Document::load_mem(&stamped.bytes).expect("parses");
        let page = *doc.get_pages().get(&1).expect("a page");
        let content = doc.get_page_content(page);
        assert!(
            content
                .split(|b| *b == b'\n')
                .all(|line| !line.starts_with(b"ET") || line == b"ET"),
            "an operator runs into ET"
        );
        let (stamped_ops, whole_ops) = (ops(&stamped.bytes), ops(&whole));
        let positions = |ops: &[String]| {
            ops.iter()
                .filter(|o| o.starts_with("Td"))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(positions(&stamped_ops), positions(&whole_ops));
        let rects = stamped_ops.iter().filter(|o| o.starts_with("re")).count();
        let qr = qr::encode(o.order_id.as_str()).expect("encodes");
        assert_eq!(rects, qr::rectangles(&qr, 0.0, 0.0, 1.0).len());
        assert!(
            stamped.bytes.len() < 60_000,
            "{} bytes",
            stamped.bytes.len()
        );
    }

    #[test]
    fn every_voucher_of_a_product_shows_its_own_order() {
        let printer = printer();
        let first = render(&printer, &order("Aino", "Virtanen", "Sneaker 42"));
        let mut second_order = order("Łukasz", "O'Brien-Smith", "Sneaker 42");
        second_order.order_id =
            crate::order::OrderId::parse("fedcba9876543210fedcba9876543210").expect("valid");
        let second = render(&printer, &second_order);
        assert!(first.stamped && second.stamped);
        assert_shows(
            &second.bytes,
            &["Łukasz O'Brien-Smith", "fedcba9876543210fedcba9876543210"],
        );
        let text = text_of(&second.bytes);
        assert!(
            !text.contains("Aino") && !text.contains("0123456789abcdef"),
            "{text}"
        );
        // The same order stamps to the same bytes: redelivery overwrites alike.
        assert!(render(&printer, &second_order).bytes == second.bytes);
    }

    #[test]
    fn another_product_under_the_same_sku_gets_its_own_template() {
        let printer = printer();
        render(&printer, &order("Aino", "Virtanen", "Sneaker 42"));
        let renamed = render(&printer, &order("Aino", "Virtanen", "Sneaker 43"));
        assert!(renamed.stamped);
        let text = text_of(&renamed.bytes);
        assert!(
            text.contains("Sneaker 43") && !text.contains("Sneaker 42"),
            "{text}"
        );
    }

    #[test]
    fn names_in_other_scripts_are_rendered_whole_and_still_read() {
        let printer = printer();
        for (first, last) in [
            ("张伟", "Lee"),
            ("Ἀλέξανδρος", "Müller"),
            ("محمد", "Okafor"),
        ] {
            let voucher = render(&printer, &order(first, last, "Sneaker 42"));
            assert!(!voucher.stamped, "{first}");
            assert_shows(&voucher.bytes, &[&format!("{first} {last}"), "Sneaker 42"]);
        }
        // A CJK product's template holds its characters: a name made of them stamps.
        let voucher = render(&printer, &order("限量", "Zoë", "限量版运动鞋"));
        assert!(voucher.stamped);
        assert_shows(&voucher.bytes, &["限量 Zoë", "限量版运动鞋"]);
    }

    #[test]
    fn every_common_latin_character_stamps_and_reads_back_with_its_width() {
        let printer = printer();
        let chars: Vec<char> = common_latin().filter(|c| !c.is_whitespace()).collect();
        for chunk in chars.chunks(12) {
            let name: String = chunk.iter().collect();
            let voucher = render(&printer, &order(&name, "x", "Sneaker 42"));
            assert!(voucher.stamped, "{name:?}");
            assert_shows(&voucher.bytes, &[&format!("{name} x")]);
        }
        // Every glyph of the template's fonts has its width in the file
        // (else a reader draws it at the default width, 1000).
        let voucher = render(&printer, &order("Aino", "Virtanen", "Sneaker 42"));
        let doc = lopdf::Document::load_mem(&voucher.bytes).expect("parses");
        let cid_font = doc
            .objects
            .values()
            .filter_map(|o| o.as_dict().ok())
            .flat_map(|d| {
                d.get(b"DescendantFonts")
                    .and_then(|f| f.as_array())
                    .into_iter()
                    .flatten()
            })
            .filter_map(|f| f.as_dict().ok())
            .next()
            .expect("a CID font");
        let widths = cid_font.get(b"W").and_then(|w| w.as_array()).expect("W");
        let mut glyphs = 0;
        for entry in widths {
            if let Ok(run) = entry.as_array() {
                glyphs += run.len();
            }
        }
        // Every common character's glyph (some share one), and .notdef's maybe.
        assert!(
            glyphs >= chars.len() - 8,
            "{glyphs} widths for {} characters",
            chars.len()
        );
    }
}
