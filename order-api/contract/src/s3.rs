//! The voucher bucket: the settings both services read, and the one way an
//! S3 client is built.

use std::time::Duration;

use aws_sdk_s3::{
    Client,
    config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation, retry::RetryConfig, timeout::TimeoutConfig,
    },
};
use aws_smithy_http_client::{
    Builder as HttpClientBuilder,
    tls::{self, rustls_provider::CryptoMode},
};
use secrecy::{ExposeSecret, SecretString};

use crate::env::{Env, EnvError};

/// Where the vouchers are and how to reach them (docs/design.md).
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The S3 API as the services reach it.
    pub endpoint: String,
    /// The host browsers see in presigned URLs; `endpoint` unless set.
    pub public_endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub force_path_style: bool,
}

impl S3Settings {
    /// `S3_ENDPOINT`, `S3_PUBLIC_ENDPOINT`, `S3_REGION`, `S3_BUCKET`,
    /// `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`, `S3_FORCE_PATH_STYLE`,
    /// with the local stack's values as defaults.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let endpoint = env.string("S3_ENDPOINT", "http://127.0.0.1:7480")?;
        Ok(Self {
            public_endpoint: env.string("S3_PUBLIC_ENDPOINT", &endpoint)?,
            endpoint,
            region: env.string("S3_REGION", "us-east-1")?,
            bucket: env.string("S3_BUCKET", "vouchers")?,
            access_key_id: env.string("S3_ACCESS_KEY_ID", "dropdev")?,
            secret_access_key: env.secret("S3_SECRET_ACCESS_KEY", "dropdevsecret")?,
            force_path_style: env.parsed("S3_FORCE_PATH_STYLE", true)?,
        })
    }
}

/// Which endpoint a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Requests from inside the system.
    Internal,
    /// Only for signing URLs that browsers will use; never sends a request.
    Public,
}

/// How a caller wants its requests bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// One attempt, from the first byte sent to the last byte received.
    pub attempt_timeout: Duration,
    /// The SDK's own retries (its standard mode: 3 attempts with backoff).
    /// Off where the caller retries one level up, within its own budget.
    pub sdk_retries: bool,
}

/// The S3 client both services use.
///
/// Recent SDKs add CRC checksums (and aws-chunked trailers) to every PUT by
/// default; S3-compatible servers such as Ceph RGW 16 and older MinIO
/// releases reject or mishandle them, so checksums are sent and checked only
/// when an operation requires them.
pub fn client(
    settings: &S3Settings,
    endpoint: Endpoint,
    limits: Limits,
    who: &'static str,
) -> Client {
    let url = match endpoint {
        Endpoint::Internal => &settings.endpoint,
        Endpoint::Public => &settings.public_endpoint,
    };
    let credentials = Credentials::new(
        settings.access_key_id.clone(),
        settings.secret_access_key.expose_secret().to_owned(),
        None,
        None,
        who,
    );
    let retries = if limits.sdk_retries {
        RetryConfig::standard()
    } else {
        RetryConfig::disabled()
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(credentials)
        .region(Region::new(settings.region.clone()))
        .endpoint_url(url)
        .force_path_style(settings.force_path_style)
        .retry_config(retries)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect_timeout)
                .operation_attempt_timeout(limits.attempt_timeout)
                .build(),
        )
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .http_client(http_client())
        .build();
    Client::from_conf(config)
}

/// The HTTP(S) client every S3 client here uses: hyper with rustls on ring
/// (the workspace's one TLS stack; see the workspace Cargo.toml).
pub fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    HttpClientBuilder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_local_stack_and_public_follows_internal() {
        let s = S3Settings::from_env(&Env::from_pairs(&[])).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:7480");
        assert_eq!(s.public_endpoint, s.endpoint);
        assert_eq!(s.bucket, "vouchers");
        assert!(s.force_path_style);
        let s = S3Settings::from_env(&Env::from_pairs(&[
            ("S3_ENDPOINT", "http://s3.internal:9000"),
            ("S3_PUBLIC_ENDPOINT", "https://vouchers.example"),
            ("S3_SECRET_ACCESS_KEY", "hunter2"),
        ]))
        .unwrap();
        assert_eq!(s.endpoint, "http://s3.internal:9000");
        assert_eq!(s.public_endpoint, "https://vouchers.example");
        assert!(!format!("{s:?}").contains("hunter2"));
        let err = S3Settings::from_env(&Env::from_pairs(&[("S3_BUCKET", "")])).unwrap_err();
        assert_eq!(err.name, "S3_BUCKET");
    }
}
