//! The object store side of a test: voucher objects, and checking that a
//! voucher is a PDF with the right text and a QR code of the order id.

use super::*;

impl Harness {
    /// HEAD on the voucher object: `Some(metadata)` if it exists.
    pub async fn head_voucher(&self, order_id: &str) -> Option<HashMap<String, String>> {
        let out = self
            .s3
            .head_object()
            .bucket(bucket())
            .key(format!("{order_id}.pdf"))
            .send()
            .await;
        match out {
            Ok(o) => Some(o.metadata().cloned().unwrap_or_default()),
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(aws_sdk_s3::operation::head_object::HeadObjectError::is_not_found);
                assert!(not_found, "HEAD {order_id}.pdf: {e:?}");
                None
            }
        }
    }

    pub async fn put_object(&self, key: &str, body: &[u8], content_type: &str) {
        self.s3
            .put_object()
            .bucket(bucket())
            .key(key)
            .content_type(content_type)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"));
    }

    pub async fn delete_object(&self, key: &str) {
        let _ = self
            .s3
            .delete_object()
            .bucket(bucket())
            .key(key)
            .send()
            .await;
    }

    /// Downloads and checks a voucher the way a customer and a clerk would:
    /// the PDF parses, its text holds `texts`, its QR code is a code signed
    /// for this order, which the keys order-api uses verify. Returns the
    /// QR's text, for a scanner.
    pub async fn verify_voucher(&self, message: &Value, order_id: &str, texts: &[&str]) -> String {
        assert_eq!(message["order_id"], order_id, "{message}");
        assert_eq!(message["status"], "voucher_ready", "{message}");
        let url = message["voucher_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no voucher_url in {message}"));
        let response = self.http.get(url).send().await.expect("GET voucher_url");
        assert_eq!(response.status(), 200, "GET voucher_url");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some("application/pdf"));
        let pdf = response.bytes().await.expect("voucher body").to_vec();

        // A PDF library parses it: one page.
        let doc = lopdf::Document::load_mem(&pdf).expect("lopdf parses the voucher");
        assert_eq!(doc.get_pages().len(), 1, "one page");

        let path = self.logs.join(format!("{order_id}.pdf"));
        std::fs::write(&path, &pdf).expect("saving the voucher");
        let text = run_tool("pdftotext", &["-enc", "UTF-8", path_str(&path), "-"]).await;
        let text = String::from_utf8(text).expect("pdftotext prints UTF-8");
        // Text extraction decides spacing from glyph positions (and joins CJK
        // words), so compare with whitespace removed.
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        let flat = squash(&text);
        for t in texts.iter().chain(std::iter::once(&order_id)) {
            assert!(
                flat.contains(&squash(t)),
                "voucher text lacks {t:?}:\n{text}"
            );
        }

        let stem = self.logs.join(order_id);
        run_tool(
            "pdftoppm",
            &[
                "-r",
                "150",
                "-gray",
                "-singlefile",
                path_str(&path),
                path_str(&stem),
            ],
        )
        .await;
        let pgm = std::fs::read(stem.with_extension("pgm")).expect("pdftoppm wrote a PGM");
        let decoded = decode_qr(&pgm);
        assert_eq!(decoded.len(), 1, "one QR code");
        let keys = drop_contract::voucher_code::VerifyingKeys::parse(
            &super::voucher_key().public_config(),
        )
        .expect("keys");
        let claims = keys
            .verify(&decoded[0])
            .expect("the QR holds a signed code");
        assert_eq!(claims.oid.as_str(), order_id, "the code's order");
        assert_eq!(claims.sku, self.sku, "the code's SKU");
        decoded[0].clone()
    }
}

pub(super) fn s3_client() -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(
            var("S3_ACCESS_KEY_ID", "dropdev"),
            var("S3_SECRET_ACCESS_KEY", "dropdevsecret"),
            None,
            None,
            "e2e",
        ))
        .region(Region::new(var("S3_REGION", "us-east-1")))
        .endpoint_url(var("S3_ENDPOINT", "http://127.0.0.1:7480"))
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .http_client(drop_contract::s3::http_client())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

async fn run_tool(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {tool} (apt-get install -y poppler-utils): {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Decodes every QR code in a binary PGM (P5) image.
fn decode_qr(pgm: &[u8]) -> Vec<String> {
    // Header: "P5" width height maxval, whitespace separated, then one byte a pixel.
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while pgm[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pgm[pos] == b'#' {
            while pgm[pos] != b'\n' {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        while !pgm[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&pgm[start..pos]).into_owned());
    }
    pos += 1;
    assert_eq!(fields[0], "P5", "not a binary PGM");
    let w: usize = fields[1].parse().expect("width");
    let h: usize = fields[2].parse().expect("height");
    assert_eq!(fields[3], "255", "8-bit PGM");
    let pixels = &pgm[pos..pos + w * h];
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    img.detect_grids()
        .into_iter()
        .map(|g| g.decode().expect("QR code decodes").1)
        .collect()
}
