//! Where everything goes on the page: the A5 geometry, the labels, and text
//! set top to bottom, shrunk, wrapped or cut with an ellipsis to fit.
//!
//! Measuring is by advance widths from [`Fonts::width`], in points, while
//! positions are in mm from the bottom left corner, as PDF has them.

use printpdf::{Color, FontId, Mm, Op, PdfFontHandle, PdfPage, Point, Pt, Rgb, TextItem};

use super::RenderError;
use super::fonts::Fonts;
use super::qr;
use crate::order::Order;

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
const LABEL_PICKUP: &str = "Pickup";
const FOOTER: &str = "Show this code at the counter to collect your order.";

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

/// What the page says about one order, formatted once, so that the fonts are
/// subset from the very strings the page then draws.
pub(super) struct Content<'a> {
    order: &'a Order,
    /// What the QR holds.
    code: &'a str,
    full_name: String,
    issued: String,
    sku: String,
    /// The pickup window in words; empty without one.
    pickup: String,
}

/// The pickup window as the voucher says it: "From … until …", "From …",
/// "Until …", in UTC to the minute; empty when the product has none.
fn pickup_words(order: &Order) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M UTC";
    match (order.redeem_from, order.redeem_until) {
        (Some(from), Some(until)) => format!(
            "From {} until {}",
            from.format(FORMAT),
            until.format(FORMAT)
        ),
        (Some(from), None) => format!("From {}", from.format(FORMAT)),
        (None, Some(until)) => format!("Until {}", until.format(FORMAT)),
        (None, None) => String::new(),
    }
}

impl<'a> Content<'a> {
    pub(super) fn new(order: &'a Order, code: &'a str) -> Self {
        Content {
            order,
            code,
            pickup: pickup_words(order),
            full_name: order.full_name(),
            issued: order.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            sku: format!("SKU {}", order.sku),
        }
    }

    /// Every text the page can show, including the ellipsis `fitted` may add.
    /// A text [`page`] draws that is missing here would find no glyphs in the
    /// embedded subsets.
    pub(super) fn texts(&self) -> [&str; 13] {
        [
            LABEL_TITLE,
            LABEL_TO,
            LABEL_ORDER,
            LABEL_ISSUED,
            LABEL_PICKUP,
            &self.pickup,
            FOOTER,
            "…",
            &self.order.product_name,
            &self.sku,
            &self.full_name,
            self.order.order_id.as_str(),
            &self.issued,
        ]
    }
}

/// The voucher's one page, its text set in the fonts embedded as `ids`
/// (indexed by face, as [`Fonts::runs`] splits text).
pub(super) fn page(
    content: &Content<'_>,
    fonts: &Fonts,
    ids: &[FontId; 2],
) -> Result<PdfPage, RenderError> {
    let order = content.order;
    let mut page = PageWriter {
        fonts,
        ids,
        ops: Vec::new(),
        y: PAGE_H - MARGIN,
    };

    page.line(LABEL_TITLE, 10.0, 10.0, GREY);
    page.gap(2.0);
    page.fitted(&order.product_name, 22.0, 13.0, BLACK);
    page.line(&content.sku, 9.0, 7.0, GREY);
    page.gap(6.0);
    page.line(LABEL_TO, 9.0, 9.0, GREY);
    page.fitted(&content.full_name, 16.0, 10.0, BLACK);
    page.gap(4.0);
    page.line(LABEL_ORDER, 9.0, 9.0, GREY);
    page.line(order.order_id.as_str(), 11.0, 11.0, BLACK);
    page.gap(4.0);
    page.line(LABEL_ISSUED, 9.0, 9.0, GREY);
    page.line(&content.issued, 11.0, 11.0, BLACK);
    if !content.pickup.is_empty() {
        page.gap(4.0);
        page.line(LABEL_PICKUP, 9.0, 9.0, GREY);
        page.line(&content.pickup, 11.0, 8.0, BLACK);
    }

    let qr = qr::encode(content.code)?;
    let qr_x = (PAGE_W - QR_SIZE) / 2.0;
    let qr_y = MARGIN + 14.0;
    page.ops.push(Op::SetFillColor { col: BLACK });
    page.ops.push(qr::polygon(&qr, qr_x, qr_y, QR_SIZE));

    page.y = MARGIN + 6.0;
    page.line(FOOTER, 9.0, 9.0, GREY);

    Ok(PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), page.ops))
}

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
    use super::super::render_voucher;
    use super::super::test_support::{ID, fonts, order};
    use super::*;

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
        render_voucher(&order(&long, &long, &long), ID, fonts()).expect("renders");
    }
}
