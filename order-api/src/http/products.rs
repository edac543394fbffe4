//! Products: the operator sets stock; everyone reads availability.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{
    AppState,
    error::ApiError,
    extract::{AdminAuth, JsonBody, PathParam},
};
use crate::{
    db::{
        audit::{self, Actor},
        products,
    },
    domain::{InvalidField, MAX_STOCK, ProductName, Sku},
    stock::ProductFlag,
};

/// Body of `PUT /v1/products/{sku}`.
#[derive(Deserialize, ToSchema)]
pub struct PutProduct {
    /// Display name, 1-200 characters, any script, by the rule of a
    /// customer's name.
    #[schema(example = "Limited sneaker", min_length = 1, max_length = 200)]
    pub name: String,
    /// Total units for sale, including those already reserved.
    #[schema(example = 500, minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
    /// Start of the pickup window (RFC 3339, whole seconds count): the
    /// `nbf` of the codes of orders accepted from now on. Left out: none.
    #[schema(example = "2026-12-01T10:00:00Z")]
    pub redeem_from: Option<DateTime<Utc>>,
    /// End of the pickup window, after `redeem_from`: the codes' `exp`.
    #[schema(example = "2026-12-24T18:00:00Z")]
    pub redeem_until: Option<DateTime<Utc>>,
}

/// What the operator sees after a change.
#[derive(Serialize, ToSchema)]
pub struct ProductAdmin {
    pub sku: String,
    pub name: String,
    pub stock: i32,
    pub reserved: i32,
    pub available: bool,
    pub redeem_from: Option<DateTime<Utc>>,
    pub redeem_until: Option<DateTime<Utc>>,
}

/// What customers see.
#[derive(Serialize, ToSchema)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub available: bool,
}

/// Create a product, or change its name and total stock.
#[utoipa::path(put, path = "/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path, description = "1-64 characters of A-Z a-z 0-9 _ . -",
        pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body = PutProduct,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Created", body = ProductAdmin),
        (status = 200, description = "Updated", body = ProductAdmin),
        (status = 401, description = "Missing or wrong admin token", body = super::error::ErrorBody),
        (status = 409, description = "`stock_below_reserved`", body = super::error::ErrorBody),
        (status = 422, description = "`invalid_field`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn put_product(
    _admin: AdminAuth,
    State(state): State<AppState>,
    PathParam(sku): PathParam,
    JsonBody(body): JsonBody<PutProduct>,
) -> Result<(StatusCode, Json<ProductAdmin>), ApiError> {
    // Not UTF-8 is refused by the same rule as any other bad SKU.
    let sku = Sku::parse(sku.as_deref().unwrap_or("\u{0}"))?;
    let name = ProductName::parse(&body.name)?;
    if !(0..=MAX_STOCK).contains(&body.stock) {
        return Err(InvalidField::new(
            "stock",
            format!("must be an integer from 0 to {MAX_STOCK}"),
        )
        .into());
    }
    let stock =
        i32::try_from(body.stock).map_err(|_| InvalidField::new("stock", "is too large"))?;
    // Codes carry whole seconds (JWT NumericDate): store what they will say.
    let whole =
        |t: Option<DateTime<Utc>>| t.and_then(|t| DateTime::from_timestamp(t.timestamp(), 0));
    let window = products::Window {
        from: whole(body.redeem_from),
        until: whole(body.redeem_until),
    };
    if let (Some(from), Some(until)) = (window.from, window.until)
        && until <= from
    {
        return Err(InvalidField::new("redeem_until", "must be after redeem_from").into());
    }

    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    // The same row lock the reserver takes: a restock and a reservation never
    // interleave, so `reserved` cannot move between the check and the write.
    let existing = products::lock_reserved(&tx, sku.as_str()).await?;
    let created = existing.is_none();
    let reserved = existing.unwrap_or(0);
    if stock < reserved {
        return Err(ApiError::StockBelowReserved { reserved });
    }
    products::upsert(&tx, sku.as_str(), name.as_str(), stock, &window).await?;
    audit::record(
        &tx,
        Actor::Admin,
        "product.put",
        sku.as_str(),
        json!({"name": name.as_str(), "stock": stock,
               "redeem_from": window.from, "redeem_until": window.until}),
    )
    .await?;
    tx.commit().await?;

    let available = stock > reserved;
    metrics::gauge!("stock_remaining", "sku" => sku.to_string()).set(f64::from(stock - reserved));
    state
        .stock
        .record(
            &sku,
            ProductFlag {
                name: name.as_str().to_owned(),
                available,
            },
        )
        .await;
    tracing::info!(sku = %sku, stock, reserved, created, "product stock set");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ProductAdmin {
            sku: sku.to_string(),
            name: name.as_str().to_owned(),
            stock,
            reserved,
            available,
            redeem_from: window.from,
            redeem_until: window.until,
        }),
    ))
}

/// Whether a product is available, answered from the Dragonfly/Redis flag;
/// from PostgreSQL when Redis is unreachable or has no entry.
#[utoipa::path(get, path = "/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path, description = "The product's SKU")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "`unknown_sku`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn get_product(
    State(state): State<AppState>,
    PathParam(sku): PathParam,
) -> Result<Json<Product>, ApiError> {
    let sku = sku
        .and_then(|sku| Sku::parse(&sku).ok())
        .ok_or(ApiError::UnknownSku)?;
    let flag = current(&state, &sku).await?;
    Ok(Json(Product {
        sku: sku.to_string(),
        name: flag.name,
        available: flag.available,
    }))
}

/// The shared flag from Redis; from PostgreSQL when Redis is unreachable or
/// has no entry. `UnknownSku` when neither knows the product.
pub async fn current(state: &AppState, sku: &Sku) -> Result<ProductFlag, ApiError> {
    match state.stock.flag.read_redis(sku).await {
        Ok(Some(flag)) => Ok(flag),
        Ok(None) | Err(_) => product_from_db(state, sku)
            .await?
            .ok_or(ApiError::UnknownSku),
    }
}

/// The product's flag from PostgreSQL, the truth. `None` for an unknown SKU.
pub async fn product_from_db(state: &AppState, sku: &Sku) -> Result<Option<ProductFlag>, ApiError> {
    let client = state.pool.get().await?;
    Ok(products::remaining(&client, sku.as_str())
        .await?
        .map(|product| ProductFlag {
            name: product.name,
            available: product.units > 0,
        }))
}
