//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use super::{error, ops, orders, products};

#[derive(OpenApi)]
#[openapi(
    info(title = "order-api", description = "Reservations for limited-stock drops."),
    paths(
        products::put_product,
        products::get_product,
        orders::create_order,
        orders::get_order,
        orders::get_voucher,
        ops::client_config,
        ops::healthz,
        ops::readyz,
        ops::metrics,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&AdminToken),
    tags(
        (name = "products", description = "Stock, set by the operator"),
        (name = "orders", description = "Reservations and vouchers"),
        (name = "browser", description = "What the drop page needs"),
        (name = "operations", description = "Health, readiness, metrics"),
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
            "/v1/orders",
            "/v1/orders/{order_id}",
            "/v1/orders/{order_id}/voucher",
            "/v1/client-config",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path} missing");
        }
    }
}
