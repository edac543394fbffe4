//! The order id as a QR code, drawn as vector shapes.
//!
//! The code is one filled polygon, not an image: it stays sharp at any zoom
//! and costs a few hundred bytes. This file knows nothing of the page; the
//! layout says where the code goes and how big it is.

use fast_qr::{ECL, QRCode, qr::QRBuilder};
use printpdf::{LinePoint, Mm, Op, PaintMode, Point, Polygon, PolygonRing, WindingOrder};

/// The order id as a QR code, error correction level M (15%), with the mask
/// chosen by the standard's penalty rules. fast_qr does that in about 0.06 ms;
/// the qrcode crate took 0.22 ms, a quarter of a render, mostly scoring masks.
pub(super) fn encode(text: &str) -> Result<QRCode, fast_qr::qr::QRCodeError> {
    QRBuilder::new(text).ecl(ECL::M).build()
}

/// Whether the module at (`col`, `row`) is dark; row 0 is the top.
fn dark(qr: &QRCode, col: usize, row: usize) -> bool {
    qr.data[row * qr.size + col].value()
}

/// The QR matrix as rectangles, one per horizontal run of dark modules, each
/// as `(x0, y0, x1, y1)` in mm, with the code's lower left corner at (`x`,
/// `y`) and `size` mm wide. The page is white, so the quiet zone needs no
/// drawing, only the space the layout leaves around the code.
pub(super) fn rectangles(qr: &QRCode, x: f32, y: f32, size: f32) -> Vec<[f32; 4]> {
    let n = qr.size;
    let module = size / n as f32;
    let mut rects = Vec::new();
    for row in 0..n {
        let mut col = 0;
        while col < n {
            if !dark(qr, col, row) {
                col += 1;
                continue;
            }
            let start = col;
            while col < n && dark(qr, col, row) {
                col += 1;
            }
            // Row 0 is the top of the code; PDF y grows upwards.
            let x0 = x + start as f32 * module;
            let x1 = x + col as f32 * module;
            let y1 = y + size - row as f32 * module;
            let y0 = y1 - module;
            rects.push([x0, y0, x1, y1]);
        }
    }
    rects
}

/// The QR matrix as one filled polygon of [`rectangles`].
pub(super) fn polygon(qr: &QRCode, x: f32, y: f32, size: f32) -> Op {
    let rings = rectangles(qr, x, y, size)
        .into_iter()
        .map(|[x0, y0, x1, y1]| PolygonRing {
            points: [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
                .into_iter()
                .map(|(px, py)| LinePoint {
                    p: Point::new(Mm(px), Mm(py)),
                    bezier: false,
                })
                .collect(),
        })
        .collect();
    Op::DrawPolygon {
        polygon: Polygon {
            rings,
            mode: PaintMode::Fill,
            winding_order: WindingOrder::NonZero,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a scanner reads from `text`'s QR code.
    fn read_back(text: &str) -> String {
        let qr = encode(text).expect("encodes");
        // 4 px per module and a 4-module quiet zone, as a scanner would see it.
        let (px, quiet) = (4, 4);
        let w = (qr.size + 2 * quiet) * px;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, w, |x, y| {
            let (col, row) = ((x / px).wrapping_sub(quiet), (y / px).wrapping_sub(quiet));
            if col < qr.size && row < qr.size && dark(&qr, col, row) {
                0
            } else {
                255
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().expect("decodes").1
    }

    #[test]
    fn the_qr_code_reads_back_as_the_order_id() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(read_back(id), id);
    }

    #[test]
    fn a_signed_code_reads_back_whole() {
        let key = drop_contract::voucher_code::SigningKey::generate("2026-12").expect("kid");
        let code = key.sign(&drop_contract::voucher_code::VoucherClaims {
            oid: drop_contract::OrderId::parse("0123456789abcdef0123456789abcdef").expect("id"),
            sku: "A-SKU-OF-SIXTY-FOUR-CHARACTERS-AT-MOST-0123456789-0123456789-01".into(),
            iat: 1_764_590_000,
            nbf: Some(1_764_600_000),
            exp: Some(1_764_700_000),
        });
        assert_eq!(read_back(&code), code);
    }

    #[test]
    fn qr_polygon_covers_exactly_the_dark_modules() {
        let qr = encode("0123456789abcdef0123456789abcdef").expect("encodes");
        let n = qr.size;
        let size = n as f32; // one unit per module
        let Op::DrawPolygon { polygon } = polygon(&qr, 0.0, 0.0, size) else {
            panic!("not a polygon");
        };
        // Paint every ring back into a module grid (rows from the top).
        let mut painted = vec![vec![0u32; n]; n];
        for ring in &polygon.rings {
            let xs: Vec<f32> = ring.points.iter().map(|p| Mm::from(p.p.x).0).collect();
            let ys: Vec<f32> = ring.points.iter().map(|p| Mm::from(p.p.y).0).collect();
            let (x0, x1) = (
                xs.iter().cloned().fold(f32::MAX, f32::min),
                xs.iter().cloned().fold(f32::MIN, f32::max),
            );
            let (y0, y1) = (
                ys.iter().cloned().fold(f32::MAX, f32::min),
                ys.iter().cloned().fold(f32::MIN, f32::max),
            );
            assert!((y1 - y0 - 1.0).abs() < 1e-3, "a ring spans one row");
            let row = (size - y1).round() as usize;
            for times in &mut painted[row][x0.round() as usize..x1.round() as usize] {
                *times += 1;
            }
        }
        let mut dark_modules = 0;
        for (row, cols) in painted.iter().enumerate() {
            for (col, times) in cols.iter().enumerate() {
                let want = u32::from(dark(&qr, col, row));
                assert_eq!(*times, want, "module ({col}, {row})");
                dark_modules += want;
            }
        }
        // Runs merge neighbours: fewer rectangles than dark modules.
        assert!(!polygon.rings.is_empty() && (polygon.rings.len() as u32) < dark_modules);
    }
}
