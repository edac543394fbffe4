//! Voucher PDFs in the object store: does one exist, and a short-lived link to it.
//!
//! The bucket notification is the fast path to the browser, but it is not the
//! only way to learn that a voucher exists: a HEAD on `<order_id>.pdf` answers
//! it without the event (events can be lost by the store), so
//! `GET /v1/orders/{id}` stays correct.

use std::time::Duration;

use aws_sdk_s3::{
    Client,
    config::{Credentials, Region},
    presigning::PresigningConfig,
};
use secrecy::ExposeSecret;

use crate::{config::S3Config, domain::OrderId};

pub struct Vouchers {
    /// Talks to the store from inside the system.
    internal: Client,
    /// Only signs URLs for the host that browsers can reach.
    public: Client,
    bucket: String,
    ttl: Duration,
}

fn client(cfg: &S3Config, endpoint: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new(cfg.region.clone()))
        .endpoint_url(endpoint)
        .force_path_style(cfg.force_path_style)
        .credentials_provider(Credentials::new(
            cfg.access_key_id.clone(),
            cfg.secret_access_key.expose_secret().to_owned(),
            None,
            None,
            "order-api-config",
        ))
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(2))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

pub fn object_key(order_id: &OrderId) -> String {
    format!("{order_id}.pdf")
}

impl Vouchers {
    pub fn new(cfg: &S3Config) -> Self {
        Self {
            internal: client(cfg, &cfg.endpoint),
            public: client(cfg, &cfg.public_endpoint),
            bucket: cfg.bucket.clone(),
            ttl: cfg.url_ttl,
        }
    }

    /// Whether the voucher object exists. Errors other than "not found"
    /// (the store is down) are returned so the caller can decide.
    pub async fn exists(&self, order_id: &OrderId) -> anyhow::Result<bool> {
        match self
            .internal
            .head_object()
            .bucket(&self.bucket)
            .key(object_key(order_id))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("HEAD voucher")),
        }
    }

    /// A presigned GET URL, valid for `VOUCHER_URL_TTL_SECS`. Never log it.
    pub async fn presigned_url(&self, order_id: &OrderId) -> anyhow::Result<String> {
        let request = self
            .public
            .get_object()
            .bucket(&self.bucket)
            .key(object_key(order_id))
            .response_content_type("application/pdf")
            .presigned(PresigningConfig::expires_in(self.ttl)?)
            .await?;
        Ok(request.uri().to_owned())
    }
}
