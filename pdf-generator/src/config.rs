//! Typed configuration, read once from environment variables at startup.
//!
//! Every variable has a loopback default from docs/design.md, so `cargo run`
//! works against the local stack with no environment at all. The rule for
//! unset, set and empty variables is drop-contract's, shared with order-api:
//! a variable that is set but does not parse, or is empty, stops the process
//! with an error naming it, rather than falling back to a default the
//! operator did not ask for.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use drop_contract::{
    env::{Env, EnvError},
    s3::S3Settings,
    topology,
    voucher_code::SigningKey,
};
use secrecy::SecretString;

/// Which halves of the service this process runs.
///
/// One process runs both by default; production can split them so the CPU-bound
/// renderer scales independently of the (cheap) notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Render,
    Notify,
}

impl Role {
    pub fn renders(self) -> bool {
        matches!(self, Role::All | Role::Render)
    }

    pub fn notifies(self) -> bool {
        matches!(self, Role::All | Role::Notify)
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Role::All),
            "render" => Ok(Role::Render),
            "notify" => Ok(Role::Notify),
            other => Err(format!("expected all, render or notify, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected text or json, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub role: Role,
    pub metrics_addr: SocketAddr,
    /// Carries the broker password, so it never prints.
    pub amqp_url: SecretString,
    /// The browsers' broker, where the notifier publishes `voucher.<id>`
    /// (`FANOUT_AMQP_URL`; locally the `browser` vhost of the same node).
    pub fanout_amqp_url: SecretString,
    pub s3: S3Settings,
    pub voucher_url_ttl: Duration,
    /// Unacked messages per consumer, and orders rendered or uploaded at once.
    pub prefetch: u16,
    pub max_attempts: u32,
    /// The exchange order-api publishes accepted orders to (`orders`); tests
    /// and side-by-side environments on one broker use their own.
    pub orders_exchange: String,
    pub orders_queue: String,
    pub events_queue: String,
    /// The notifier's queue of the renderer's `vouchers_stored.v1`
    /// (`STORED_QUEUE`), on `orders_exchange`.
    pub stored_queue: String,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    /// Signs the code in each voucher's QR (`VOUCHER_SIGNING_KEY`); `None`:
    /// the QR holds the bare order id, as before codes were signed.
    pub signing_key: Option<std::sync::Arc<SigningKey>>,
}

impl Config {
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from(&Env::process())
    }

    /// Reads through `env` so tests can supply variables without touching the
    /// process environment (which is shared between test threads).
    pub fn from(env: &Env) -> Result<Self, EnvError> {
        let prefetch: u16 = env.parsed("PREFETCH", 32)?;
        if prefetch == 0 {
            return Err(EnvError::new(
                "PREFETCH",
                "must be at least 1 (0 means unbounded to RabbitMQ)",
            ));
        }
        let max_attempts: u32 = env.parsed("MAX_ATTEMPTS", 8)?;
        if max_attempts == 0 {
            return Err(EnvError::new("MAX_ATTEMPTS", "must be at least 1"));
        }
        Ok(Config {
            role: env.parsed("ROLE", Role::All)?,
            metrics_addr: env.parsed("METRICS_ADDR", SocketAddr::from(([127, 0, 0, 1], 9090)))?,
            amqp_url: env.secret("AMQP_URL", "amqp://drop:drop@127.0.0.1:5672/%2f")?,
            fanout_amqp_url: env
                .secret("FANOUT_AMQP_URL", "amqp://drop:drop@127.0.0.1:5672/browser")?,
            s3: S3Settings::from_env(env)?,
            voucher_url_ttl: Duration::from_secs(env.parsed("VOUCHER_URL_TTL_SECS", 900)?),
            prefetch,
            max_attempts,
            orders_exchange: env.string("ORDERS_EXCHANGE", topology::ORDERS_EXCHANGE)?,
            orders_queue: env.string("ORDERS_QUEUE", topology::ORDERS_QUEUE)?,
            events_queue: env.string("EVENTS_QUEUE", topology::EVENTS_QUEUE)?,
            stored_queue: env.string("STORED_QUEUE", topology::STORED_QUEUE)?,
            shutdown_timeout: Duration::from_secs(env.parsed("SHUTDOWN_TIMEOUT_SECS", 20)?),
            log_format: env.parsed("LOG_FORMAT", LogFormat::Text)?,
            signing_key: env
                .optional("VOUCHER_SIGNING_KEY")?
                .map(|raw| {
                    // The error never quotes the key.
                    SigningKey::parse(&raw)
                        .map(std::sync::Arc::new)
                        .map_err(|e| EnvError::new("VOUCHER_SIGNING_KEY", e.to_string()))
                })
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn from(vars: &[(&str, &str)]) -> Result<Config, EnvError> {
        Config::from(&Env::from_pairs(vars))
    }

    #[test]
    fn defaults_match_the_design_contract() {
        let c = from(&[]).expect("defaults parse");
        assert_eq!(c.role, Role::All);
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9090");
        assert_eq!(
            c.amqp_url.expose_secret(),
            "amqp://drop:drop@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            c.fanout_amqp_url.expose_secret(),
            "amqp://drop:drop@127.0.0.1:5672/browser"
        );
        assert_eq!(c.s3.endpoint, "http://127.0.0.1:7480");
        assert_eq!(c.s3.public_endpoint, c.s3.endpoint);
        assert_eq!(c.s3.bucket, "vouchers");
        assert!(c.s3.force_path_style);
        assert_eq!(c.voucher_url_ttl, Duration::from_secs(900));
        assert_eq!(c.prefetch, 32);
        assert_eq!(c.max_attempts, 8);
        assert_eq!(c.orders_exchange, "orders");
        assert_eq!(c.orders_queue, "pdf-generator.orders");
        assert_eq!(c.events_queue, "pdf-generator.s3-events");
        assert_eq!(c.stored_queue, "pdf-generator.voucher-stored");
    }

    #[test]
    fn public_endpoint_defaults_to_the_endpoint() {
        let c = from(&[("S3_ENDPOINT", "http://s3.internal:9000")]).expect("parses");
        assert_eq!(c.s3.public_endpoint, "http://s3.internal:9000");
        let c = from(&[
            ("S3_ENDPOINT", "http://s3.internal:9000"),
            ("S3_PUBLIC_ENDPOINT", "https://vouchers.example"),
        ])
        .expect("parses");
        assert_eq!(c.s3.public_endpoint, "https://vouchers.example");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = from(&[("PREFETCH", "lots")]).expect_err("must fail");
        assert_eq!(err.name, "PREFETCH");
        let err = from(&[("ROLE", "both")]).expect_err("must fail");
        assert_eq!(err.name, "ROLE");
        let err = from(&[("MAX_ATTEMPTS", "0")]).expect_err("must fail");
        assert_eq!(err.name, "MAX_ATTEMPTS");
        let err = from(&[("S3_BUCKET", "")]).expect_err("must fail");
        assert_eq!(err.name, "S3_BUCKET");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = from(&[("S3_SECRET_ACCESS_KEY", "hunter2-secret")]).expect("parses");
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2-secret"));
        assert!(!printed.contains("drop:drop@"));
    }

    #[test]
    fn the_signing_key_is_optional_checked_and_never_printed() {
        assert!(from(&[]).expect("parses").signing_key.is_none());
        let key = SigningKey::generate("k1").expect("kid");
        let config = key.to_config();
        let secret = config.split_once(':').expect("kid:key").1.to_owned();
        let c = from(&[("VOUCHER_SIGNING_KEY", &config)]).expect("parses");
        assert_eq!(c.signing_key.as_ref().map(|k| k.kid()), Some("k1"));
        assert!(!format!("{c:?}").contains(&secret));
        let err = from(&[("VOUCHER_SIGNING_KEY", "k1:short")]).expect_err("must fail");
        assert_eq!(err.name, "VOUCHER_SIGNING_KEY");
        assert!(!err.to_string().contains("short"), "{err}");
    }
}
