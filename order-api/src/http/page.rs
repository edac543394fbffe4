//! The browser pages: `res/web/dist` (built by `make assets`), embedded in the
//! binary at compile time, debug builds included. `/` is `index.html` (the
//! customer's page), `/scan` is `scan.html` (the pickup counter's scanner);
//! the bundled scripts and styles live under `/assets/`.
//!
//! Where the assets were never built, `build.rs` leaves an empty directory so
//! the crate still compiles, and the page answers 503 `assets_missing`.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use rust_embed::RustEmbed;

use super::{AppState, error::ApiError, extract::PathParam};

#[derive(RustEmbed)]
#[folder = "../res/web/dist"]
struct Dist;

const INDEX: &str = "index.html";
const SCAN: &str = "scan.html";

/// The customer's page.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page(INDEX, &state, &headers)
}

/// The scanner page for the pickup counter.
pub async fn scan(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page(SCAN, &state, &headers)
}

fn page(name: &str, state: &AppState, headers: &HeaderMap) -> Response {
    match Dist::get(name) {
        Some(file) => serve(name, file, headers, Some(&state.stomp.url)),
        None => assets_missing(),
    }
}

/// A bundled asset under `/assets/`.
pub async fn asset(PathParam(path): PathParam, headers: HeaderMap) -> Response {
    let Some(path) = path else {
        // Not UTF-8: no asset has such a name.
        return ApiError::NotFound.into_response();
    };
    let name = format!("assets/{path}");
    match Dist::get(&name) {
        Some(file) => serve(&name, file, &headers, None),
        None if Dist::get(INDEX).is_none() => assets_missing(),
        None => ApiError::NotFound.into_response(),
    }
}

fn serve(
    name: &str,
    file: rust_embed::EmbeddedFile,
    headers: &HeaderMap,
    stomp_url: Option<&str>,
) -> Response {
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    // The file names carry no hash, so browsers revalidate every time; the
    // ETag keeps that to a 304.
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            )],
            file.data.into_owned(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::try_from(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(stomp_url) = stomp_url {
        // Only our own origin, plus the Web-STOMP endpoint the page is told
        // to use; nothing is loaded from anywhere else.
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' {}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            csp_source(stomp_url)
        );
        if let Ok(v) = HeaderValue::try_from(csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// The configured Web-STOMP URL as a CSP source: scheme, host and port only,
/// with anything that could end the directive dropped.
fn csp_source(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("ws", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let clean = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
            .collect::<String>()
    };
    format!("{}://{}", clean(scheme), clean(authority))
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn assets_missing() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": "assets_missing",
            "message": "the browser page's assets were not built into this binary: \
                        run `make assets`, then rebuild order-api",
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_source_keeps_scheme_host_and_port_only() {
        assert_eq!(
            csp_source("ws://127.0.0.1:15674/ws"),
            "ws://127.0.0.1:15674"
        );
        assert_eq!(
            csp_source("wss://drop.example/ws?x=1; script-src *"),
            "wss://drop.example"
        );
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("assets/blob"), "application/octet-stream");
    }
}
