//! The PDF document around the page: which fonts it embeds, and how it is
//! serialised and compressed.
//!
//! Both are here for cost, not looks: embedding and compressing are most of a
//! render's CPU time, so each step says what it saves.

use printpdf::{FontId, PdfDocument, PdfSaveOptions};
use std::collections::BTreeSet;

use super::RenderError;
use super::fonts::{Face, Fonts};

/// Adds the fonts the page draws with to `doc`, each cut down to the
/// characters in `used` (per face, as [`Fonts::chars_by_face`] sorts them),
/// and returns their ids, indexed by [`Face`].
pub(super) fn embed_fonts(
    doc: &mut PdfDocument,
    fonts: &Fonts,
    used: &[BTreeSet<char>; 2],
) -> Result<[FontId; 2], RenderError> {
    let latin = doc.add_font(&fonts.subset(Face::Latin, &used[0])?);
    // A face that draws nothing is not embedded: most vouchers have no CJK
    // text, and subsetting the 4 MB CJK face is most of a render's cost.
    // Only CJK runs (from `runs`, as drawing splits them) reference its id.
    let cjk = if used[1].iter().all(|c| c.is_whitespace()) {
        latin.clone()
    } else {
        doc.add_font(&fonts.subset(Face::Cjk, &used[1])?)
    };
    Ok([latin, cjk])
}

/// Serialises `doc` with every stream Flate-compressed at a fast level.
///
/// `PdfDocument::save` compresses at `Compression::best()`, which took a fifth
/// of the worker's CPU under load. The fast level renders in 1.17 ms instead
/// of 1.80 ms, and a Latin voucher grows from 18.5 to 22.7 KB (mostly the font
/// subset); level 3 gave 1.39 ms and 18.8 KB.
pub(super) fn save(doc: &PdfDocument) -> Result<Vec<u8>, RenderError> {
    let mut pdf = to_lopdf(doc);
    for object in pdf.objects.values_mut() {
        if let lopdf::Object::Stream(stream) = object {
            compress(stream)?;
        }
    }
    write(&mut pdf)
}

/// `doc` as lopdf objects, streams not compressed yet.
pub(super) fn to_lopdf(doc: &PdfDocument) -> lopdf::Document {
    let options = PdfSaveOptions {
        optimize: false,
        ..PdfSaveOptions::default()
    };
    printpdf::serialize::to_lopdf_doc(doc, &options, &mut Vec::new())
}

/// The file's bytes.
pub(super) fn write(pdf: &mut lopdf::Document) -> Result<Vec<u8>, RenderError> {
    let mut bytes = Vec::new();
    pdf.save_to(&mut bytes)?;
    Ok(bytes)
}

/// Flate-compresses one stream, unless printpdf already filtered it, and
/// keeps the result only if it is smaller: a tiny stream can grow, and then
/// compressing it would cost both bytes and a reader's time.
pub(super) fn compress(stream: &mut lopdf::Stream) -> Result<(), RenderError> {
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

#[cfg(test)]
mod tests {
    use super::super::render_voucher;
    use super::super::test_support::{ID, fonts, order, text_of};

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
        let bytes = render_voucher(&order("张", "伟", "Sneaker 42"), ID, fonts()).expect("renders");
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
        let latin =
            render_voucher(&order("Zoë", "Ñúñez", "Sneaker 42"), ID, fonts()).expect("renders");
        assert_eq!(embedded_fonts(&latin), 1);
        let text = text_of(&latin);
        assert!(text.contains("Zoë Ñúñez"), "{text}");
        let cjk = render_voucher(&order("张", "伟", "Sneaker 42"), ID, fonts()).expect("renders");
        assert_eq!(embedded_fonts(&cjk), 2);
    }
}
