//! What the operator takes away after a drop: every order of a product as
//! CSV, and its counts.

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    AppState,
    error::ApiError,
    extract::{AdminAuth, PathParam},
};
use crate::domain::Sku;

/// The CSV's header row, in column order (docs/design.md).
pub const CSV_COLUMNS: &str =
    "order_id,created_at,first_name,last_name,phone,status,redeemed_at,scanner,cancelled_at";

fn parse_sku(raw: Option<String>) -> Result<Sku, ApiError> {
    raw.and_then(|sku| Sku::parse(&sku).ok())
        .ok_or(ApiError::UnknownSku)
}

/// The `COPY` of one product's orders. `COPY` takes no bind parameters, so
/// the SKU is written into the statement: [`Sku`] holds only `A-Z a-z 0-9 _
/// . -`, which cannot end a string literal.
fn copy_statement(sku: &Sku) -> String {
    const TS: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";
    format!(
        "COPY (SELECT o.order_id,
                      to_char(o.created_at AT TIME ZONE 'UTC', {TS}),
                      o.first_name, o.last_name, o.phone, o.status,
                      to_char(r.redeemed_at AT TIME ZONE 'UTC', {TS}),
                      s.name,
                      to_char(o.cancelled_at AT TIME ZONE 'UTC', {TS})
               FROM orders o
               LEFT JOIN redemptions r ON r.order_id = o.order_id
               LEFT JOIN scanners s ON s.scanner_id = r.scanner_id
               WHERE o.sku = '{}'
               ORDER BY o.created_at, o.order_id)
         TO STDOUT WITH (FORMAT csv)",
        sku.as_str()
    )
}

/// Every order of a product, as CSV, streamed.
///
/// Rows are streamed from PostgreSQL's `COPY … TO STDOUT` straight into
/// the response body: tokio-postgres hands the `CopyData` messages over a
/// bounded channel, so a slow client slows the copy down instead of
/// filling memory, and the export stays flat in memory at a million rows.
#[utoipa::path(get, path = "/v1/products/{sku}/orders.csv", tag = "products",
    params(("sku" = String, Path, description = "The product's SKU")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "`order_id,created_at,first_name,last_name,phone,status,redeemed_at,scanner,cancelled_at`, one row per order",
            content_type = "text/csv", body = String),
        (status = 401, description = "Missing or wrong admin token", body = super::error::ErrorBody),
        (status = 404, description = "`unknown_sku`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn orders_csv(
    _admin: AdminAuth,
    State(state): State<AppState>,
    PathParam(sku): PathParam,
) -> Result<Response, ApiError> {
    let sku = parse_sku(sku)?;
    let client = state.pool.get().await?;
    if client
        .query_opt("SELECT 1 FROM products WHERE sku = $1", &[&sku.as_str()])
        .await?
        .is_none()
    {
        return Err(ApiError::UnknownSku);
    }
    let rows = client.copy_out(copy_statement(&sku).as_str()).await?;
    tracing::info!(sku = %sku, "orders export started");
    let header = futures::stream::once(async {
        Ok::<_, tokio_postgres::Error>(bytes_of(format!("{CSV_COLUMNS}\n")))
    });
    // The stream owns the pooled connection until the last row is sent, so
    // no other request can use it mid-copy.
    let body = header.chain(rows.map(move |chunk| {
        let _connection = &client;
        chunk
    }));
    let disposition = format!("attachment; filename=\"{}-orders.csv\"", sku.as_str());
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::try_from(disposition).map_err(|_| ApiError::Internal)?,
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

fn bytes_of(text: String) -> axum::body::Bytes {
    axum::body::Bytes::from(text)
}

/// A product's counts.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    pub sku: String,
    /// Total units for sale.
    pub stock: i32,
    /// Units held now (a cancelled order gave its unit back).
    pub reserved: i32,
    /// Orders redeemed at a counter.
    pub redeemed: i64,
    /// Orders cancelled.
    pub cancelled: i64,
}

/// A product's stock, reserved, redeemed and cancelled counts.
#[utoipa::path(get, path = "/v1/products/{sku}/stats", tag = "products",
    params(("sku" = String, Path, description = "The product's SKU")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The counts", body = Stats),
        (status = 401, description = "Missing or wrong admin token", body = super::error::ErrorBody),
        (status = 404, description = "`unknown_sku`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn stats(
    _admin: AdminAuth,
    State(state): State<AppState>,
    PathParam(sku): PathParam,
) -> Result<Json<Stats>, ApiError> {
    let sku = parse_sku(sku)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT p.stock, p.reserved,
                    (SELECT count(*) FROM orders WHERE sku = p.sku AND status = 'redeemed'),
                    (SELECT count(*) FROM orders WHERE sku = p.sku AND status = 'cancelled')
             FROM products p WHERE p.sku = $1",
            &[&sku.as_str()],
        )
        .await?
        .ok_or(ApiError::UnknownSku)?;
    Ok(Json(Stats {
        sku: sku.to_string(),
        stock: row.get(0),
        reserved: row.get(1),
        redeemed: row.get(2),
        cancelled: row.get(3),
    }))
}
