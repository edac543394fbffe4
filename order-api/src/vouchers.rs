//! Voucher PDFs in the object store: a short-lived link to one.
//!
//! order-api never reads or writes a voucher itself: the renderer stores it,
//! and tells order-api so (see [`crate::voucher_status`]). Signing a URL is
//! local, so this client never sends a request.

use std::time::Duration;

use aws_sdk_s3::{Client, presigning::PresigningConfig};
use drop_contract::{
    OrderId,
    s3::{self, Endpoint, Limits, S3Settings},
};

pub struct Vouchers {
    /// Signs for the host that browsers can reach.
    public: Client,
    bucket: String,
    ttl: Duration,
}

impl Vouchers {
    pub fn new(settings: &S3Settings, ttl: Duration) -> Self {
        let limits = Limits {
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(2),
            sdk_retries: false,
        };
        Self {
            public: s3::client(settings, Endpoint::Public, limits, "order-api-config"),
            bucket: settings.bucket.clone(),
            ttl,
        }
    }

    /// A presigned GET URL, valid for `VOUCHER_URL_TTL_SECS`. Never log it.
    pub async fn presigned_url(&self, order_id: &OrderId) -> anyhow::Result<String> {
        let request = self
            .public
            .get_object()
            .bucket(&self.bucket)
            .key(order_id.voucher_key())
            .response_content_type("application/pdf")
            .presigned(PresigningConfig::expires_in(self.ttl)?)
            .await?;
        Ok(request.uri().to_owned())
    }
}
