//! The pickup counter: the keys that verify voucher codes, and redemption.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use drop_contract::voucher_code::{MAX_CODE_LEN, ScannedCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    error::ApiError,
    extract::{JsonBody, ScannerAuth},
};
use crate::{
    domain::InvalidField,
    lifecycle::redeem::{self, RedeemError},
};

/// A JSON Web Key Set (RFC 7517) of Ed25519 keys (RFC 8037).
#[derive(Serialize, ToSchema)]
pub struct JwksDoc {
    pub keys: Vec<JwkDoc>,
}

/// One public key.
#[derive(Serialize, ToSchema)]
pub struct JwkDoc {
    #[schema(example = "OKP")]
    pub kty: String,
    #[schema(example = "Ed25519")]
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    #[schema(example = "2026-12")]
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub alg: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub key_use: String,
}

/// The public keys that verify voucher codes, as a JWKS: the current
/// signing key and the retired ones whose vouchers are still out.
#[utoipa::path(get, path = "/v1/voucher-keys", tag = "redemption",
    responses((status = 200, description = "The JWKS", body = JwksDoc)))]
pub async fn voucher_keys(State(state): State<AppState>) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        )],
        Json(state.voucher_keys.jwks()),
    )
        .into_response()
}

/// Body of `POST /v1/redemptions`.
#[derive(Deserialize, ToSchema)]
pub struct RedeemRequest {
    /// The text of the voucher's QR: a signed code, or a bare order id.
    #[schema(min_length = 1, max_length = 2048)]
    pub code: String,
    /// Chosen by the scanner, unique per scan: the same nonce again gets
    /// the first answer.
    #[schema(
        example = "3b1f0c4e-9d7a-4c1e-8f0a-2b6c5d4e3f21",
        min_length = 1,
        max_length = 128,
        pattern = "^[!-~]+$"
    )]
    pub nonce: String,
}

/// A first, valid scan: hand it over.
#[derive(Serialize, ToSchema)]
pub struct Redeemed {
    pub order_id: String,
    pub sku: String,
    pub product_name: String,
    pub first_name: String,
    pub last_name: String,
    pub redeemed_at: chrono::DateTime<chrono::Utc>,
    /// The scanner's name.
    pub scanner: String,
}

/// Why not: the error, and whose voucher it is.
#[derive(Serialize, ToSchema)]
pub struct RedemptionRefused {
    /// `already_redeemed`, `cancelled`, `not_yet_valid` or `expired`.
    #[schema(example = "already_redeemed")]
    pub error: String,
    pub message: String,
    pub order_id: String,
    pub sku: String,
    pub product_name: String,
    pub first_name: String,
    pub last_name: String,
    /// `already_redeemed`: the first redemption.
    pub redeemed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `already_redeemed`: the scanner of the first redemption.
    pub scanner: Option<String>,
    /// `cancelled`.
    pub cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `not_yet_valid`: when the window opens.
    pub redeem_from: Option<chrono::DateTime<chrono::Utc>>,
    /// `expired`: when the window closed.
    pub redeem_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Redeem a voucher at a counter, once.
///
/// The same scanner sending the same nonce again gets the first answer,
/// and nothing more is recorded.
#[utoipa::path(post, path = "/v1/redemptions", tag = "redemption",
    request_body = RedeemRequest,
    security(("scanner_token" = [])),
    responses(
        (status = 200, description = "Redeemed now: hand it over", body = Redeemed),
        (status = 401, description = "`unauthorized`: no scanner token, or a revoked one", body = super::error::ErrorBody),
        (status = 409, description = "`already_redeemed` or `not_yet_valid`", body = RedemptionRefused),
        (status = 410, description = "`cancelled` or `expired`", body = RedemptionRefused),
        (status = 422, description = "`invalid_code`, `invalid_field` or `nonce_reused`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn redeem(
    ScannerAuth(scanner): ScannerAuth,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RedeemRequest>,
) -> Result<Response, ApiError> {
    let nonce = body.nonce.as_str();
    if nonce.is_empty() || nonce.len() > 128 || !nonce.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidField::new("nonce", "must be 1-128 visible ASCII characters").into());
    }
    // Every way a code can fail is the same `invalid_code`, so the answer
    // never tells a forger which part was wrong.
    if body.code.is_empty() || body.code.len() > MAX_CODE_LEN {
        return Err(ApiError::InvalidCode);
    }
    let code = ScannedCode::parse(&body.code, &state.voucher_keys).map_err(|_| {
        metrics::counter!("redemptions_total", "outcome" => "invalid_code").increment(1);
        ApiError::InvalidCode
    })?;
    let answer = redeem::redeem(&state.pool, &scanner, &code, &body.code, nonce)
        .await
        .map_err(|e| match e {
            RedeemError::InvalidCode => {
                metrics::counter!("redemptions_total", "outcome" => "invalid_code").increment(1);
                ApiError::InvalidCode
            }
            RedeemError::NonceReused => ApiError::NonceReused,
            RedeemError::Db(e) => e.into(),
            RedeemError::Pool(e) => e.into(),
        })?;
    let status = StatusCode::from_u16(answer.status).map_err(|_| ApiError::Internal)?;
    let mut response = (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(answer.body),
    )
        .into_response();
    if answer.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
