//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        Ref, RefOr, ResponseBuilder,
        path::Operation,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

use super::{error, exports, ops, orders, products, redemptions, scanners, stock_events};

#[derive(OpenApi)]
#[openapi(
    info(title = "order-api", description = "Reservations for limited-stock drops.\n\n\
        Every error is `{\"error\", \"message\"}` with a stable code. A method a path \
        does not document is 405 `method_not_allowed`; a path that is not here is 404 \
        `not_found`. No `Access-Control-*` header is ever sent: the page is served from \
        this origin, and no other origin may call the API."),
    paths(
        products::put_product,
        products::get_product,
        stock_events::stock_events,
        orders::create_order,
        orders::get_order,
        orders::get_voucher,
        orders::cancel_order,
        exports::orders_csv,
        exports::stats,
        redemptions::voucher_keys,
        redemptions::redeem,
        scanners::create_scanner,
        scanners::revoke_scanner,
        scanners::revocations,
        ops::client_config,
        ops::healthz,
        ops::readyz,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&AdminToken, &CommonResponses),
    tags(
        (name = "products", description = "Stock, set by the operator"),
        (name = "orders", description = "Reservations and vouchers"),
        (name = "redemption", description = "The pickup counter: signed codes, scanners, redemptions"),
        (name = "browser", description = "What the drop page needs"),
        (name = "operations", description = "Health and readiness (metrics are on METRICS_ADDR, not here)"),
    )
)]
pub struct ApiDoc;

struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // A scanner's own token (`POST /v1/scanners`), not the admin's.
        components.add_security_scheme(
            "scanner_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The answers every route with a JSON body can give, whatever the handler:
/// they come from the body extractor ([`super::extract::JsonBody`]), so they
/// are added here once rather than repeated on each handler.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content_ref("application/json", Ref::from_schema_name("ErrorBody"))
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 3] =
                [&mut item.get, &mut item.put, &mut item.post];
            for operation in operations.into_iter().flatten() {
                if operation.request_body.is_none() {
                    continue;
                }
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("400", "`invalid_json`: the body is not JSON"),
                    ("408", "`request_timeout`: the body did not arrive in time"),
                    ("413", "`payload_too_large`: the body is over 16 KiB"),
                    (
                        "415",
                        "`unsupported_media_type`: the Content-Type is not application/json",
                    ),
                ] {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description));
                }
            }
        }
    }
}

/// `GET /openapi.json`
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_route() {
        let doc = ApiDoc::openapi();
        for path in [
            "/v1/products/{sku}",
            "/v1/products/{sku}/events",
            "/v1/orders",
            "/v1/orders/{order_id}",
            "/v1/orders/{order_id}/voucher",
            "/v1/products/{sku}/orders.csv",
            "/v1/products/{sku}/stats",
            "/v1/voucher-keys",
            "/v1/redemptions",
            "/v1/scanners",
            "/v1/scanners/{scanner_id}",
            "/v1/scanners/revocations",
            "/v1/client-config",
            "/healthz",
            "/readyz",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path} missing");
        }
        assert!(!doc.paths.paths.contains_key("/metrics"));
    }

    #[test]
    fn json_routes_document_the_body_errors() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, method) in [
            ("/v1/orders", "post"),
            ("/v1/products/{sku}", "put"),
            ("/v1/redemptions", "post"),
            ("/v1/scanners", "post"),
        ] {
            let responses = &doc["paths"][path][method]["responses"];
            for status in ["400", "408", "413", "415", "422"] {
                assert!(
                    responses[status].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
        }
        let key = doc["paths"]["/v1/orders"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap();
        assert_eq!(key["schema"]["minLength"], 1, "{key}");
        assert_eq!(key["schema"]["maxLength"], 255, "{key}");
    }
}
