//! Scanners: registered and revoked by the operator; the revocations feed
//! their offline mode reads.

use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    error::ApiError,
    extract::{AdminAuth, JsonBody, PathParam, ScannerAuth},
};
use crate::{
    db::{
        audit::{self, Actor},
        scanners,
    },
    domain::{InvalidField, PersonName},
};

/// How far before the read the feed's `next` lies: a cancellation that
/// commits later than this after its `now()` could be missed by a scanner.
const FEED_OVERLAP_SECS: i64 = 60;
/// Most entries in one answer; the scanner asks again from `next`.
const FEED_LIMIT: i64 = 10_000;

/// Body of `POST /v1/scanners`.
#[derive(Deserialize, ToSchema)]
pub struct NewScanner {
    /// 1-100 characters, by the rule of a person's name.
    #[schema(example = "Counter 1", min_length = 1, max_length = 100)]
    pub name: String,
}

/// A registered scanner. The token is shown here once, and never again.
#[derive(Serialize, ToSchema)]
pub struct ScannerCreated {
    /// 32 lowercase hex digits.
    pub scanner_id: String,
    pub name: String,
    /// `scn_` and 64 lowercase hex digits: the scanner's bearer token.
    pub token: String,
}

/// Register a scanner.
#[utoipa::path(post, path = "/v1/scanners", tag = "redemption",
    request_body = NewScanner,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Registered; the token is shown once", body = ScannerCreated),
        (status = 401, description = "Missing or wrong admin token", body = super::error::ErrorBody),
        (status = 422, description = "`invalid_field`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn create_scanner(
    _admin: AdminAuth,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewScanner>,
) -> Result<Response, ApiError> {
    let name = PersonName::parse("name", &body.name)?;
    let scanner_id = format!("{:032x}", rand::random::<u128>());
    let token = format!("scn_{}", hex::encode(rand::random::<[u8; 32]>()));
    let digest = Sha256::digest(token.as_bytes());
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    scanners::insert(&tx, &scanner_id, name.as_str(), &digest).await?;
    audit::record(
        &tx,
        Actor::Admin,
        "scanner.create",
        &scanner_id,
        json!({"name": name.as_str()}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(scanner = %scanner_id, "scanner registered");
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(ScannerCreated {
            scanner_id,
            name: name.as_str().to_owned(),
            token,
        }),
    )
        .into_response())
}

/// Revoke a scanner: its token is 401 from now on, on every replica.
#[utoipa::path(delete, path = "/v1/scanners/{scanner_id}", tag = "redemption",
    params(("scanner_id" = String, Path, description = "32 lowercase hex digits")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Revoked (or already was)"),
        (status = 401, description = "Missing or wrong admin token", body = super::error::ErrorBody),
        (status = 404, description = "`scanner_not_found`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn revoke_scanner(
    _admin: AdminAuth,
    State(state): State<AppState>,
    PathParam(scanner_id): PathParam,
) -> Result<StatusCode, ApiError> {
    let scanner_id = scanner_id
        .filter(|id| id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or(ApiError::ScannerNotFound)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let revoked = scanners::revoke(&tx, &scanner_id)
        .await?
        .ok_or(ApiError::ScannerNotFound)?;
    if revoked {
        audit::record(&tx, Actor::Admin, "scanner.revoke", &scanner_id, json!({})).await?;
        tracing::info!(scanner = %scanner_id, "scanner revoked");
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the revocations feed.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevocationsQuery {
    /// RFC 3339: the `next` of the previous answer. Without it, every
    /// cancellation.
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
}

/// One cancelled order, named by the SHA-256 of its id.
#[derive(Serialize, ToSchema)]
pub struct Revoked {
    /// Hex SHA-256 of the order id's 32 ASCII characters.
    pub oid_sha256: String,
    pub cancelled_at: DateTime<Utc>,
}

/// The revocations feed.
#[derive(Serialize, ToSchema)]
pub struct Revocations {
    pub revoked: Vec<Revoked>,
    /// Pass as `since` next time. It overlaps the previous read by a
    /// minute, so entries may repeat: keep them as a set.
    pub next: DateTime<Utc>,
}

/// The codes that became `cancelled`, for a scanner's offline mode.
#[utoipa::path(get, path = "/v1/scanners/revocations", tag = "redemption",
    params(RevocationsQuery),
    security(("scanner_token" = [])),
    responses(
        (status = 200, description = "Cancellations at or after `since`, oldest first", body = Revocations),
        (status = 401, description = "`unauthorized`: no scanner token, or a revoked one", body = super::error::ErrorBody),
        (status = 422, description = "`invalid_field`: `since` is not RFC 3339", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn revocations(
    _scanner: ScannerAuth,
    State(state): State<AppState>,
    query: Result<Query<RevocationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|_| InvalidField::new("since", "must be an RFC 3339 timestamp"))?;
    let since = match query.since.as_deref() {
        None => DateTime::<Utc>::UNIX_EPOCH,
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map_err(|_| InvalidField::new("since", "must be an RFC 3339 timestamp"))?
            .with_timezone(&Utc),
    };
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT encode(sha256(convert_to(order_id, 'UTF8')), 'hex'), cancelled_at, now()
             FROM orders WHERE cancelled_at >= $1 ORDER BY cancelled_at LIMIT $2",
            &[&since, &FEED_LIMIT],
        )
        .await?;
    let read_at: DateTime<Utc> = match rows.first() {
        Some(row) => row.get(2),
        None => client.query_one("SELECT now()", &[]).await?.get(0),
    };
    let revoked: Vec<Revoked> = rows
        .iter()
        .map(|row| Revoked {
            oid_sha256: row.get(0),
            cancelled_at: row.get(1),
        })
        .collect();
    let next = if rows.len() as i64 == FEED_LIMIT {
        // A full page: go on from its last entry (which repeats).
        revoked.last().map_or(since, |r| r.cancelled_at)
    } else {
        (read_at - chrono::Duration::seconds(FEED_OVERLAP_SECS)).max(since)
    };
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(Revocations { revoked, next }),
    )
        .into_response())
}
