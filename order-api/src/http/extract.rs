//! Request extractors that turn bad input into [`ApiError`]s rather than
//! axum's plain-text rejections.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, error::ApiError};
use crate::{domain::InvalidField, idempotency};

/// Largest request body accepted anywhere.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A JSON body: a Content-Type other than `application/json` is 415
/// `unsupported_media_type`, before the body is read; malformed JSON is 400
/// `invalid_json`; well-formed JSON of the wrong shape is 422 `invalid_field`
/// naming the field; over 16 KiB is 413; a body still incomplete when the
/// request-body deadline passes is 408 `request_timeout`.
///
/// The Content-Type is required so that no JSON route answers a CORS
/// "simple" request (`text/plain`, a form): a browser sends those from any
/// site without asking first, while `application/json` needs a preflight,
/// which this API never grants (it sets no `Access-Control-*` header).
pub struct JsonBody<T>(pub T);

/// Whether a Content-Type names JSON: `application/json`, any case, with or
/// without parameters such as `charset=utf-8`.
pub fn is_json_content_type(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Whether a body rejection was the request-body deadline passing.
fn is_body_deadline(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| is_json_content_type(v.as_bytes()))
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else if is_body_deadline(&rejection) {
                ApiError::RequestTimeout
            } else {
                ApiError::InvalidJson(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses `bytes` into `T`, classifying the failure as described on [`JsonBody`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, so that a body that is not JSON at all (say, a valid
    // object followed by garbage) is `invalid_json` even when its shape is
    // also wrong. Skipping through the bytes allocates nothing.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map_err(|e| ApiError::InvalidJson(strip_position(&e.to_string())))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                let field = if path == "." {
                    // "missing field `phone`" has no path: take the name from the message.
                    message
                        .split('`')
                        .nth(1)
                        .map(str::to_owned)
                        .unwrap_or_else(|| "body".to_owned())
                } else {
                    path
                };
                ApiError::InvalidField(InvalidField::new(
                    known_field(&field),
                    strip_position(&message),
                ))
            }
            _ => ApiError::InvalidJson(strip_position(&inner.to_string())),
        }
    })?;
    // Trailing bytes after the JSON value make the body malformed too.
    de.end()
        .map_err(|e| ApiError::InvalidJson(strip_position(&e.to_string())))?;
    Ok(value)
}

/// Field names are `&'static str` in errors; map the ones the API knows.
fn known_field(name: &str) -> &'static str {
    const FIELDS: [&str; 10] = [
        "sku",
        "first_name",
        "last_name",
        "phone",
        "name",
        "stock",
        "redeem_from",
        "redeem_until",
        "code",
        "nonce",
    ];
    FIELDS.into_iter().find(|f| *f == name).unwrap_or("body")
}

/// serde_json appends " at line 1 column 12"; keep the message short.
fn strip_position(message: &str) -> String {
    message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned()
}

/// One path parameter as text, or `None` when it is not valid UTF-8 once
/// percent-decoded (`/v1/orders/%FF`). axum's own `Path` would answer that
/// with a plain-text 400; each handler maps `None` to the error its route
/// gives any other impossible value, so every answer stays JSON.
pub struct PathParam(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(Some(value))),
            Err(axum::extract::rejection::PathRejection::FailedToDeserializePathParams(_)) => {
                Ok(Self(None))
            }
            Err(rejection) => {
                tracing::error!(error = %rejection, "path parameter missing from its route");
                Err(ApiError::Internal)
            }
        }
    }
}

/// The token of the request's `Authorization: Bearer …` header, if any.
fn presented_bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
}

/// The admin bearer token, compared in constant time.
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = presented_bearer(parts).ok_or(ApiError::Unauthorized)?;
        // Compare digests, so neither the length nor the content of the
        // token leaks through timing.
        let presented = Sha256::digest(presented.trim().as_bytes());
        if bool::from(presented.ct_eq(&state.admin_token_digest)) {
            Ok(AdminAuth)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// A scanner's bearer token: the scanner it belongs to, unless revoked.
/// Looked up by the token's SHA-256 in PostgreSQL on every request, so a
/// revocation holds on every replica from the moment it commits.
pub struct ScannerAuth(pub crate::db::scanners::Scanner);

impl FromRequestParts<AppState> for ScannerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = presented_bearer(parts).ok_or(ApiError::ScannerUnauthorized)?;
        let digest = Sha256::digest(presented.trim().as_bytes());
        let client = state.pool.get().await?;
        crate::db::scanners::by_token(&client, &digest)
            .await?
            .map(ScannerAuth)
            .ok_or(ApiError::ScannerUnauthorized)
    }
}

/// The credentials of `Authorization: Bearer <token>`. The scheme is
/// case-insensitive (RFC 9110, section 11.1), so `bearer` and `BEARER` are
/// the same scheme; one or more spaces separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
        .filter(|t| !t.is_empty())
}

/// The optional `Idempotency-Key` header; its rule is [`idempotency::IdempotencyKey`].
pub struct IdempotencyKey(pub Option<idempotency::IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        // Not UTF-8 is refused by the same rule as any other bad key.
        let key = idempotency::IdempotencyKey::parse(value.to_str().unwrap_or("\u{0}"))?;
        Ok(Self(Some(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Probe {
        sku: String,
        phone: String,
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert!(is_json_content_type(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json_content_type(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k"] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        for value in ["Basic t0k", "Bearert0k", "Bearer ", "Bearer", "t0k"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        let err = parse_json::<Probe>(b"{\"sku\": ").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        let err = parse_json::<Probe>(b"{} trailing").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        let err = parse_json::<Probe>(br#"{"sku": "a"} trailing"#).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let err = parse_json::<Probe>(br#"{"sku": "a", "phone": 5}"#).unwrap_err();
        assert!(
            matches!(&err, ApiError::InvalidField(f) if f.field == "phone"),
            "{err:?}"
        );
        let err = parse_json::<Probe>(br#"{"sku": "a"}"#).unwrap_err();
        assert!(
            matches!(&err, ApiError::InvalidField(f) if f.field == "phone"),
            "{err:?}"
        );
        let err = parse_json::<Probe>(b"[1, 2]").unwrap_err();
        assert!(
            matches!(&err, ApiError::InvalidField(f) if f.field == "body"),
            "{err:?}"
        );
    }
}
