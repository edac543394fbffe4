//! The voucher bucket: upload, existence check, presigned download links.
//!
//! The SDK's own retries are switched off: retries happen one level up
//! (`retry.rs`), where they are bounded by the message's retry budget, counted
//! in metrics and stopped by shutdown. Doing both would multiply attempts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, SecondsFormat, Utc};
use drop_contract::s3::{self, Endpoint, Limits, S3Settings};

use crate::metrics;
use crate::order::OrderId;

/// User metadata (`x-amz-meta-order-created-at`) carrying the order's commit
/// time, so the notifier can measure end-to-end latency (design.md).
pub const CREATED_AT_META: &str = "order-created-at";

/// An S3 failure, classified once so callers only decide "retry or not".
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct StoreError {
    operation: &'static str,
    message: String,
    transient: bool,
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// What a HEAD tells the notifier about a voucher.
#[derive(Debug)]
pub struct VoucherHead {
    pub order_created_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    /// Same credentials, but the endpoint browsers reach; used only to sign.
    presigner: Client,
    bucket: String,
}

impl Store {
    pub fn new(settings: &S3Settings) -> Self {
        // A stopped server refuses connections at once; a hung one must not
        // hold a prefetch slot for longer than one backoff step.
        let limits = Limits {
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(15),
            sdk_retries: false,
        };
        Store {
            client: s3::client(settings, Endpoint::Internal, limits, "pdf-generator-env"),
            presigner: s3::client(settings, Endpoint::Public, limits, "pdf-generator-env"),
            bucket: settings.bucket.clone(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Uploads (or overwrites: redeliveries render the same voucher again) the
    /// voucher for `id`.
    pub async fn put_voucher(
        &self,
        id: &OrderId,
        pdf: Vec<u8>,
        created_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(id.voucher_key())
            .content_type("application/pdf")
            .metadata(
                CREATED_AT_META,
                created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            )
            .body(ByteStream::from(pdf))
            .send()
            .await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        ::metrics::histogram!(metrics::UPLOAD_SECONDS, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result.map(|_| ()).map_err(|e| classify("put_object", &e))
    }

    /// `Ok(None)` when the object does not exist.
    pub async fn head_voucher(&self, id: &OrderId) -> Result<Option<VoucherHead>, StoreError> {
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(id.voucher_key())
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(VoucherHead {
                order_created_at: created_at_from(out.metadata()),
            })),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(e) => Err(classify("head_object", &e)),
        }
    }

    /// A GET URL valid for `ttl`. Signing is local: no request is sent.
    pub async fn presign_voucher(&self, id: &OrderId, ttl: Duration) -> Result<String, StoreError> {
        let presigning = PresigningConfig::expires_in(ttl).map_err(|e| StoreError {
            operation: "presign",
            message: e.to_string(),
            transient: false,
        })?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(id.voucher_key())
            .presigned(presigning)
            .await
            .map_err(|e| classify("presign", &e))?;
        Ok(request.uri().to_owned())
    }
}

fn created_at_from(metadata: Option<&HashMap<String, String>>) -> Option<DateTime<Utc>> {
    let raw = metadata?.get(CREATED_AT_META)?;
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.to_utc())
}

/// Transient: the request may succeed if repeated unchanged (connection
/// refused, timeouts, 5xx, throttling). Everything else (403, 404 on the
/// bucket, a request we built wrong) will fail the same way every time.
fn classify<E>(operation: &'static str, err: &SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let transient = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            status >= 500
                || status == 408
                || status == 429
                || matches!(
                    e.err().code(),
                    Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout")
                )
        }
        // ConstructionFailure and anything added to this non-exhaustive enum.
        _ => false,
    };
    StoreError {
        operation,
        message: DisplayErrorContext(err).to_string(),
        transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_created_at_metadata() {
        let mut m = HashMap::new();
        m.insert(
            CREATED_AT_META.to_owned(),
            "2026-11-24T12:00:00.123456Z".to_owned(),
        );
        let t = created_at_from(Some(&m)).expect("parses");
        assert_eq!(t.timestamp_subsec_micros(), 123_456);
        m.insert(CREATED_AT_META.to_owned(), "garbage".to_owned());
        assert!(created_at_from(Some(&m)).is_none());
        assert!(created_at_from(None).is_none());
    }
}
