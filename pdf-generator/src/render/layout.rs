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

pub(super) const BLACK: Color = Color::Rgb(Rgb {
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
    /// A text [`place`] sets that is missing here would find no glyphs in the
    /// embedded subsets.
    pub(super) fn texts(&self) -> [&str; 13] {
        let [a, b, c, d, e, f, g, h, i, j] = self.product_texts();
        [
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            i,
            j,
            &self.full_name,
            self.order.order_id.as_str(),
            &self.issued,
        ]
    }

    /// The texts every voucher of the product shows: the labels, the ellipsis,
    /// the product. With [`OWN_FIXED_CHARS`], every character a voucher of the
    /// product draws besides the customer's name. The pickup window is the
    /// product's (every order of a drop has the same), although its lines sit
    /// below the name and so are stamped with the order's.
    pub(super) fn product_texts(&self) -> [&str; 10] {
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
        ]
    }
}

/// Every character an order's own lines hold apart from the name and the
/// labels: the order id (lower-case hex) and the issue time.
pub(super) const OWN_FIXED_CHARS: &str = "0123456789abcdef-: UTC";

/// Whether a line says the same on every voucher of a product, in the same
/// place, or belongs to the order. A template renders the shared part once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Product,
    Order,
}

/// One line of text, set: at `y` mm from the bottom of the page, from the
/// left margin.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Line {
    pub(super) text: String,
    pub(super) size: f32,
    pub(super) col: Color,
    pub(super) y: f32,
}

/// What goes on the page, in drawing order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    Text(Line),
    /// The voucher's code as a QR code: lower left corner and side, in mm.
    Qr {
        x: f32,
        y: f32,
        size: f32,
    },
}

/// The page of `content`, set: every item with its [`Part`]. A line placed
/// below the customer's name is the order's even when its text is fixed,
/// because the name's wrapping moves it.
pub(super) fn place(content: &Content<'_>, fonts: &Fonts) -> Vec<(Part, Item)> {
    let order = content.order;
    let mut page = PageWriter {
        fonts,
        items: Vec::new(),
        y: PAGE_H - MARGIN,
        part: Part::Product,
    };

    page.line(LABEL_TITLE, 10.0, 10.0, GREY);
    page.gap(2.0);
    page.fitted(&order.product_name, 22.0, 13.0, BLACK);
    page.line(&content.sku, 9.0, 7.0, GREY);
    page.gap(6.0);
    page.line(LABEL_TO, 9.0, 9.0, GREY);
    page.part = Part::Order;
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

    page.items.push((
        Part::Order,
        Item::Qr {
            x: (PAGE_W - QR_SIZE) / 2.0,
            y: MARGIN + 14.0,
            size: QR_SIZE,
        },
    ));

    page.part = Part::Product;
    page.y = MARGIN + 6.0;
    page.line(FOOTER, 9.0, 9.0, GREY);
    page.items
}

/// A5 portrait, as the page is drawn.
pub(super) fn blank_page(ops: Vec<Op>) -> PdfPage {
    PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops)
}

/// The voucher's one page, every item drawn, its text set in the fonts
/// embedded as `ids` (indexed by face, as [`Fonts::runs`] splits text).
pub(super) fn page(
    content: &Content<'_>,
    fonts: &Fonts,
    ids: &[FontId; 2],
) -> Result<PdfPage, RenderError> {
    let items = place(content, fonts);
    Ok(blank_page(ops(
        items.iter().map(|(_, item)| item),
        content.code,
        fonts,
        ids,
    )?))
}

/// The drawing operations of `items`; `code` is what a QR item encodes.
pub(super) fn ops<'i>(
    items: impl IntoIterator<Item = &'i Item>,
    code: &str,
    fonts: &Fonts,
    ids: &[FontId; 2],
) -> Result<Vec<Op>, RenderError> {
    let mut ops = Vec::new();
    for item in items {
        match item {
            Item::Text(line) => text_ops(&mut ops, line, fonts, ids),
            Item::Qr { x, y, size } => {
                let qr = qr::encode(code)?;
                ops.push(Op::SetFillColor { col: BLACK });
                ops.push(qr::polygon(&qr, *x, *y, *size));
            }
        }
    }
    Ok(ops)
}

/// One line as printpdf draws it: each run of one face in that face's font.
fn text_ops(ops: &mut Vec<Op>, line: &Line, fonts: &Fonts, ids: &[FontId; 2]) {
    ops.push(Op::SetFillColor {
        col: line.col.clone(),
    });
    ops.push(Op::StartTextSection);
    ops.push(Op::SetTextCursor {
        pos: Point::new(Mm(MARGIN), Mm(line.y)),
    });
    for (face, run) in fonts.runs(&line.text) {
        ops.push(Op::SetFont {
            font: PdfFontHandle::External(ids[face as usize].clone()),
            size: Pt(line.size),
        });
        ops.push(Op::ShowText {
            items: vec![TextItem::Text(run)],
        });
    }
    ops.push(Op::EndTextSection);
}

/// Where a line's text starts, in points from the bottom left corner.
pub(super) fn origin_pt(line: &Line) -> (f32, f32) {
    mm_to_pt(MARGIN, line.y)
}

/// A position in mm as PDF has it, in points.
pub(super) fn mm_to_pt(x: f32, y: f32) -> (f32, f32) {
    let p = Point::new(Mm(x), Mm(y));
    (p.x.0, p.y.0)
}

/// Sets text top to bottom.
struct PageWriter<'a> {
    fonts: &'a Fonts,
    items: Vec<(Part, Item)>,
    /// Top of the next line, in mm from the bottom of the page.
    y: f32,
    /// What the lines set next belong to.
    part: Part,
}

impl PageWriter<'_> {
    fn gap(&mut self, mm: f32) {
        self.y -= mm;
    }

    /// One line at `size`, shrunk down to `min_size` if it is too wide.
    fn line(&mut self, text: &str, size: f32, min_size: f32, col: Color) {
        let size = self.fit_size(text, size, min_size);
        self.emit(text.to_owned(), size, col);
    }

    /// Like `line`, but text still too wide at `min_size` wraps onto up to
    /// three lines, and anything beyond is cut with an ellipsis.
    fn fitted(&mut self, text: &str, size: f32, min_size: f32, col: Color) {
        let size = self.fit_size(text, size, min_size);
        let lines = wrap(self.fonts, text, size, 3);
        for l in lines {
            self.emit(l, size, col.clone());
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

    fn emit(&mut self, text: String, size: f32, col: Color) {
        // Baseline sits one font size below the top of the line (size is in pt).
        let line_height_mm = Mm::from(Pt(size * 1.3)).0;
        self.y -= line_height_mm;
        let line = Line {
            text,
            size,
            col,
            y: self.y,
        };
        self.items.push((self.part, Item::Text(line)));
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
