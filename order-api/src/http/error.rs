//! The one error type of the HTTP API. Every error leaves as
//! `{"error": "<stable code>", "message": "<human text>"}` with the right
//! status; 5xx bodies stay generic and the details go to the log, inside the
//! request's span.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::InvalidField;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidField(#[from] InvalidField),
    #[error("the request body is larger than 16 KiB")]
    PayloadTooLarge,
    #[error("this route takes a JSON body: send Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    #[error("a valid scanner bearer token is required")]
    ScannerUnauthorized,
    #[error("not a valid voucher code")]
    InvalidCode,
    #[error("this nonce was already used by this scanner with another code")]
    NonceReused,
    #[error("no scanner has this id")]
    ScannerNotFound,
    #[error("this order was already redeemed and cannot be cancelled")]
    AlreadyRedeemed,
    #[error("no product has this SKU")]
    UnknownSku,
    #[error("no order has this id")]
    OrderNotFound,
    #[error("the voucher for this order is not ready yet")]
    VoucherNotReady,
    #[error("this product is sold out")]
    SoldOut,
    #[error("this phone number already holds a reservation for this product")]
    AlreadyReserved,
    #[error("total stock cannot go below the {reserved} units already reserved")]
    StockBelowReserved { reserved: i32 },
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `sold_out`.
    #[schema(example = "sold_out")]
    pub error: &'static str,
    /// Text for people; may change between versions.
    pub message: String,
    /// For `invalid_field`: the offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidField(_)
            | ApiError::IdempotencyMismatch
            | ApiError::InvalidCode
            | ApiError::NonceReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized | ApiError::ScannerUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnknownSku
            | ApiError::ScannerNotFound
            | ApiError::OrderNotFound
            | ApiError::VoucherNotReady
            | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::SoldOut
            | ApiError::AlreadyReserved
            | ApiError::AlreadyRedeemed
            | ApiError::StockBelowReserved { .. } => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Unauthorized | ApiError::ScannerUnauthorized => "unauthorized",
            ApiError::InvalidCode => "invalid_code",
            ApiError::NonceReused => "nonce_reused",
            ApiError::ScannerNotFound => "scanner_not_found",
            ApiError::AlreadyRedeemed => "already_redeemed",
            ApiError::UnknownSku => "unknown_sku",
            ApiError::OrderNotFound => "order_not_found",
            ApiError::VoucherNotReady => "voucher_not_ready",
            ApiError::SoldOut => "sold_out",
            ApiError::AlreadyReserved => "already_reserved",
            ApiError::StockBelowReserved { .. } => "stock_below_reserved",
            ApiError::IdempotencyMismatch => "idempotency_mismatch",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            field: match &self {
                ApiError::InvalidField(f) => Some(f.field),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::Unavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized | ApiError::ScannerUnauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RequestTimeout => {
                // The rest of the body may still be on its way: do not
                // keep reading this connection.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        if crate::db::pool_unavailable(&e) {
            tracing::warn!(error = %e, "PostgreSQL unavailable");
            ApiError::Unavailable
        } else {
            tracing::error!(error = %e, "PostgreSQL pool error");
            ApiError::Internal
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "PostgreSQL unavailable");
            ApiError::Unavailable
        } else {
            tracing::error!(error = %e, "PostgreSQL error");
            ApiError::Internal
        }
    }
}
