//! Orders: reserve a unit, read an order, fetch its voucher, cancel it.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    error::ApiError,
    extract::{IdempotencyKey, JsonBody, PathParam},
    products::product_from_db,
};
use crate::{
    db,
    domain::{OrderId, PersonName, Phone, Sku},
    idempotency,
    lifecycle::cancel::{self, CancelError, Cancelled},
    reserve::{NewOrder, Outcome},
    stock::ProductFlag,
};

/// Body of `POST /v1/orders`.
#[derive(Deserialize, ToSchema)]
pub struct CreateOrder {
    #[schema(example = "SNEAKER-42", pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub sku: String,
    /// 1-100 characters, any script, stored in NFC; it must start with a
    /// visible character and hold no control, format or separator
    /// character (422 otherwise: the rule is wider than a pattern can say).
    #[schema(example = "Zoë", min_length = 1, max_length = 100)]
    pub first_name: String,
    /// As `first_name`.
    #[schema(example = "Ñúñez", min_length = 1, max_length = 100)]
    pub last_name: String,
    /// International form: `+`, then digits, spaces, dots, hyphens and
    /// parentheses; it must be a valid number for its country code (422
    /// otherwise). Stored and compared in E.164.
    #[schema(example = "+358 40 123 4567", pattern = "^\\+[0-9 .()-]{1,31}$")]
    pub phone: String,
}

/// A reservation.
#[derive(Serialize, ToSchema)]
pub struct OrderCreated {
    /// 32 lowercase hex digits, the order's millisecond then 80 random
    /// bits: the customer's secret.
    #[schema(example = "019ad9c8b27b718293a4b5c6d7e8f9a0")]
    pub order_id: String,
    #[schema(example = "reserved")]
    pub status: &'static str,
    /// The `amq.topic` routing key on which the voucher will be announced.
    #[schema(example = "voucher.3f2b9c0d4e5f60718293a4b5c6d7e8f9")]
    pub voucher_topic: String,
}

/// An order, as its holder sees it.
#[derive(Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub sku: String,
    pub first_name: String,
    pub last_name: String,
    /// `reserved`, then `voucher_ready` once the PDF exists; then
    /// `redeemed` at a counter, or `cancelled` by its holder.
    #[schema(example = "voucher_ready")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// When it was redeemed, once it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redeemed_at: Option<DateTime<Utc>>,
    /// When it was cancelled, once it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The product's pickup window, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redeem_from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redeem_until: Option<DateTime<Utc>>,
}

/// A cancelled order.
#[derive(Serialize, ToSchema)]
pub struct OrderCancelled {
    pub order_id: String,
    #[schema(example = "cancelled")]
    pub status: &'static str,
    pub cancelled_at: DateTime<Utc>,
}

/// Reserve one unit for one customer.
///
/// With an `Idempotency-Key`, a retry of the same body returns the original
/// answer (and reserves nothing more); the same key with another body is 422.
///
/// Once the product is sold out, a request without a key is answered
/// `sold_out` before its phone number is checked: nothing can be reserved,
/// and the phone check is the costliest step of a request.
#[utoipa::path(post, path = "/v1/orders", tag = "orders",
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters",
        min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    responses(
        (status = 201, description = "Reserved", body = OrderCreated),
        (status = 400, description = "`invalid_json`", body = super::error::ErrorBody),
        (status = 404, description = "`unknown_sku`", body = super::error::ErrorBody),
        (status = 409, description = "`sold_out` or `already_reserved`", body = super::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = super::error::ErrorBody),
        (status = 422, description = "`invalid_field` or `idempotency_mismatch`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`, with Retry-After", body = super::error::ErrorBody)))]
pub async fn create_order(
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<CreateOrder>,
) -> Result<Response, ApiError> {
    let sku = Sku::parse(&body.sku)?;
    let first_name = PersonName::parse("first_name", &body.first_name)?;
    let last_name = PersonName::parse("last_name", &body.last_name)?;
    // The hot path of a sold-out drop: no database, no Redis round trip, and
    // not even the phone check (libphonenumber, the costliest step of a
    // request), since nothing can be reserved. A keyed request goes on: its
    // retry may have to replay the reservation it got before the sell-out.
    if key.is_none() && state.stock.flag.known_sold_out(&sku) {
        metrics::counter!("sold_out_from_flag_total").increment(1);
        return respond(Outcome::SoldOut);
    }
    let order = NewOrder {
        sku,
        first_name,
        last_name,
        phone: Phone::parse(&body.phone)?,
    };

    // A keyed retry must get its original answer even after the product sold
    // out, so the replay store is consulted before the flag.
    if let Some(key) = &key {
        let client = state.pool.get().await?;
        if let Some(stored) = idempotency::lookup(&client, key).await? {
            return respond(idempotency::replay(
                &stored,
                &idempotency::fingerprint(&order),
            ));
        }
    }

    match state.stock.flag.local(&order.sku) {
        Some(flag) if !flag.available => {
            // A keyed request with nothing to replay.
            metrics::counter!("sold_out_from_flag_total").increment(1);
            return respond(Outcome::SoldOut);
        }
        Some(_) => {}
        None => {
            // First time this replica sees the SKU: learn it from the truth,
            // so unknown SKUs never reach (or create) a reservation actor.
            let flag = product_from_db(&state, &order.sku)
                .await?
                .ok_or(ApiError::UnknownSku)?;
            state.stock.flag.set_local(order.sku.as_str(), flag);
        }
    }

    respond(state.reserver.reserve(order, key).await)
}

fn respond(outcome: Outcome) -> Result<Response, ApiError> {
    metrics::counter!("reservations_total", "outcome" => outcome.label()).increment(1);
    match outcome {
        Outcome::Reserved { order_id, replayed } => {
            let body = OrderCreated {
                voucher_topic: order_id.voucher_routing_key(),
                order_id: order_id.as_str().to_owned(),
                status: "reserved",
            };
            // The order id is the customer's capability: never cached.
            let mut response = (
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
                Json(body),
            )
                .into_response();
            if replayed {
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            Ok(response)
        }
        Outcome::SoldOut => Err(ApiError::SoldOut),
        Outcome::AlreadyReserved => Err(ApiError::AlreadyReserved),
        Outcome::UnknownSku => Err(ApiError::UnknownSku),
        Outcome::IdempotencyMismatch => Err(ApiError::IdempotencyMismatch),
        Outcome::Unavailable => Err(ApiError::Unavailable),
        Outcome::Failed => Err(ApiError::Internal),
    }
}

/// Loads an order. Its status is what the database holds: order-api records
/// `voucher_ready` when the renderer reports the voucher stored
/// (`crate::voucher_status`), so reading never writes.
async fn load_order(state: &AppState, order_id: &OrderId) -> Result<OrderView, ApiError> {
    let client = state.pool.get().await?;
    let row = db::orders::get(&client, order_id)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    Ok(OrderView {
        order_id: order_id.as_str().to_owned(),
        sku: row.sku,
        first_name: row.first_name,
        last_name: row.last_name,
        status: row.status,
        created_at: row.created_at,
        redeemed_at: row.redeemed_at,
        cancelled_at: row.cancelled_at,
        redeem_from: row.redeem_from,
        redeem_until: row.redeem_until,
    })
}

/// Read one order. Knowing its id is the capability: orders are never listed.
#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, description = "32 lowercase hex digits")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "`order_not_found`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    PathParam(order_id): PathParam,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(order_id)?;
    // The customer's names: no cache, shared or private, may keep them.
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(load_order(&state, &order_id).await?),
    )
        .into_response())
}

/// Cancel a reservation: its unit goes back on sale at once, its voucher is
/// deleted, and its code becomes `cancelled` at every counter. Cancelling
/// again answers the same.
#[utoipa::path(delete, path = "/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, description = "32 lowercase hex digits")),
    responses(
        (status = 200, description = "Cancelled (now or before)", body = OrderCancelled),
        (status = 404, description = "`order_not_found`", body = super::error::ErrorBody),
        (status = 409, description = "`already_redeemed`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    PathParam(order_id): PathParam,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(order_id)?;
    let cancelled_at = match cancel::cancel(&state.pool, &order_id).await {
        Ok(Cancelled::Now {
            sku,
            product_name,
            units,
            cancelled_at,
        }) => {
            metrics::counter!("cancellations_total").increment(1);
            tracing::info!(order = %order_id, sku = %sku, units, "order cancelled");
            state.deletions_wakeup.notify_one();
            if let Ok(sku) = Sku::parse(&sku) {
                metrics::gauge!("stock_remaining", "sku" => sku.to_string()).set(f64::from(units));
                if units > 0 {
                    // The unit is on sale again: every replica's flag, and
                    // browsers on `stock.<sku>`, hear it now.
                    state
                        .stock
                        .record(
                            &sku,
                            ProductFlag {
                                name: product_name,
                                available: true,
                            },
                        )
                        .await;
                }
            }
            cancelled_at
        }
        Ok(Cancelled::Before { cancelled_at }) => cancelled_at,
        Err(CancelError::NotFound) => return Err(ApiError::OrderNotFound),
        Err(CancelError::AlreadyRedeemed) => return Err(ApiError::AlreadyRedeemed),
        Err(CancelError::Db(e)) => return Err(e.into()),
        Err(CancelError::Pool(e)) => return Err(e.into()),
    };
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(OrderCancelled {
            order_id: order_id.as_str().to_owned(),
            status: "cancelled",
            cancelled_at,
        }),
    )
        .into_response())
}

/// An id that is not 32 lowercase hex digits (or not even UTF-8) names no order.
fn parse_order_id(raw: Option<String>) -> Result<OrderId, ApiError> {
    raw.and_then(|raw| OrderId::parse(&raw).ok())
        .ok_or(ApiError::OrderNotFound)
}

/// Redirect to a fresh, short-lived link to the voucher PDF.
#[utoipa::path(get, path = "/v1/orders/{order_id}/voucher", tag = "orders",
    params(("order_id" = String, Path, description = "32 lowercase hex digits")),
    responses(
        (status = 302, description = "Location: a presigned GET URL"),
        (status = 404, description = "`order_not_found` or `voucher_not_ready`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn get_voucher(
    State(state): State<AppState>,
    PathParam(order_id): PathParam,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(order_id)?;
    if load_order(&state, &order_id).await?.status != "voucher_ready" {
        return Err(ApiError::VoucherNotReady);
    }
    let url = state.vouchers.presigned_url(&order_id).await.map_err(|e| {
        tracing::error!(error = %e, order = %order_id, "presigning failed");
        ApiError::Internal
    })?;
    let location = HeaderValue::try_from(url).map_err(|_| ApiError::Internal)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response())
}
