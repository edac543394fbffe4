//! Configuration: read once at startup from environment variables, with
//! loopback defaults so a developer needs to set nothing. The rule for unset,
//! set and empty variables is drop-contract's, shared with pdf-generator: a
//! bad value stops the process with a message that names the variable.

use std::{net::SocketAddr, time::Duration};

use anyhow::bail;
use drop_contract::{env::Env, s3::S3Settings, topology, voucher_code::VerifyingKeys};
use secrecy::SecretString;

use crate::http::serve::Timeouts;

/// A whole number of seconds, at least 1.
fn secs(env: &Env, name: &str, default: u64) -> anyhow::Result<Duration> {
    let value: u64 = env.parsed(name, default)?;
    if value == 0 {
        bail!("{name} must be at least 1 (seconds)");
    }
    Ok(Duration::from_secs(value))
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// Where /metrics is served: a listener of its own, never the public one.
    pub metrics_addr: SocketAddr,
    /// Slow-client limits of the public listener (`http::serve`).
    pub http_timeouts: Timeouts,
    pub database_url: SecretString,
    pub database_pool_size: usize,
    pub redis_url: SecretString,
    pub amqp_url: SecretString,
    /// Exchange the outbox relay publishes accepted orders to.
    pub orders_exchange: String,
    pub admin_token: SecretString,
    pub dev_profile: bool,
    pub s3: S3Settings,
    /// Presigned voucher links expire after this long.
    pub voucher_url_ttl: Duration,
    /// order-api's queue of voucher statuses from the renderer.
    pub voucher_status_queue: String,
    pub stomp: StompConfig,
    pub stock_reconcile_interval: Duration,
    /// How long one `GET /v1/products/{sku}/events` stream lasts before the
    /// browser reconnects (`STOCK_EVENTS_MAX_SECS`).
    pub stock_events_lifetime: Duration,
    pub shutdown_timeout: Duration,
    /// `LOG_FORMAT=json`: one JSON object per log line.
    pub json_logs: bool,
    /// Set when `APP_PROFILE=dev` generated the admin token: it is logged
    /// that this happened, never the token.
    pub admin_token_generated: bool,
    /// Most reservations one PostgreSQL transaction takes for one SKU.
    pub max_batch: usize,
    /// How long the outbox relay waits after a partial pass before the next.
    pub outbox_linger: Duration,
    /// The public keys that verify voucher codes (`VOUCHER_PUBLIC_KEYS`):
    /// the current signing key's and the retired ones still out.
    pub voucher_keys: VerifyingKeys,
}

/// Where the browser page reaches Web-STOMP. No credentials: the page
/// connects without a login header and is the broker's Web-STOMP default
/// user, whose password only the broker knows (issue #20, item 3).
#[derive(Debug, Clone)]
pub struct StompConfig {
    pub url: String,
    pub vhost: String,
}

impl Config {
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        let dev_profile = match env.string("APP_PROFILE", "prod")?.as_str() {
            "dev" => true,
            "prod" => false,
            other => bail!("APP_PROFILE={other:?} is not valid: use \"prod\" or \"dev\""),
        };
        let (admin_token, admin_token_generated) = match env.optional("ADMIN_TOKEN")? {
            Some(token) if token.len() < 16 && !dev_profile => {
                bail!("ADMIN_TOKEN is too short: use at least 16 characters")
            }
            Some(token) => (token, false),
            None if dev_profile => (format!("dev-{:032x}", rand::random::<u128>()), true),
            None => bail!(
                "ADMIN_TOKEN is not set. Set it to a long random secret \
                 (e.g. `openssl rand -hex 32`), or set APP_PROFILE=dev for local development"
            ),
        };
        let reconcile_secs: u64 = env.parsed("STOCK_RECONCILE_SECS", 5)?;
        let pool_size: usize = env.parsed("DATABASE_POOL_SIZE", 16)?;
        if pool_size == 0 {
            bail!("DATABASE_POOL_SIZE must be at least 1");
        }
        let log_format = env.string("LOG_FORMAT", "text")?;
        if log_format != "text" && log_format != "json" {
            bail!("LOG_FORMAT={log_format:?} is not valid: use \"text\" or \"json\"");
        }
        let config = Self {
            listen_addr: env.parsed("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            metrics_addr: env.parsed("METRICS_ADDR", SocketAddr::from(([127, 0, 0, 1], 9091)))?,
            http_timeouts: Timeouts {
                header_read: secs(env, "HTTP_HEADER_READ_TIMEOUT_SECS", 10)?,
                idle: secs(env, "HTTP_IDLE_TIMEOUT_SECS", 75)?,
                request_body: secs(env, "HTTP_REQUEST_BODY_TIMEOUT_SECS", 10)?,
            },
            database_url: env.secret("DATABASE_URL", "postgres://drop:drop@127.0.0.1:5432/drop")?,
            database_pool_size: pool_size,
            redis_url: env.secret("REDIS_URL", "redis://127.0.0.1:6379")?,
            amqp_url: env.secret("AMQP_URL", "amqp://drop:drop@127.0.0.1:5672/%2f")?,
            orders_exchange: env.string("ORDERS_EXCHANGE", topology::ORDERS_EXCHANGE)?,
            voucher_status_queue: env
                .string("VOUCHER_STATUS_QUEUE", topology::VOUCHER_STATUS_QUEUE)?,
            admin_token: admin_token.into(),
            admin_token_generated,
            dev_profile,
            s3: S3Settings::from_env(env)?,
            voucher_url_ttl: Duration::from_secs(env.parsed("VOUCHER_URL_TTL_SECS", 900)?),
            stomp: StompConfig {
                url: env.string("STOMP_URL", "ws://127.0.0.1:15674/ws")?,
                vhost: env.string("STOMP_VHOST", "browser")?,
            },
            stock_reconcile_interval: Duration::from_secs(reconcile_secs.max(1)),
            stock_events_lifetime: secs(env, "STOCK_EVENTS_MAX_SECS", 300)?,
            shutdown_timeout: Duration::from_secs(env.parsed("SHUTDOWN_TIMEOUT_SECS", 20)?),
            json_logs: log_format == "json",
            max_batch: env
                .parsed::<usize>("RESERVE_MAX_BATCH", 256)?
                .clamp(1, 4096),
            outbox_linger: Duration::from_millis(
                env.parsed::<u64>("OUTBOX_LINGER_MS", 50)?.min(1000),
            ),
            voucher_keys: match env.optional("VOUCHER_PUBLIC_KEYS")? {
                None => VerifyingKeys::default(),
                Some(raw) => VerifyingKeys::parse(&raw)
                    .map_err(|e| anyhow::anyhow!("VOUCHER_PUBLIC_KEYS is not valid: {e}"))?,
            },
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn refuses_to_start_without_admin_token_in_prod() {
        let err = Config::from_env(&Env::from_pairs(&[])).unwrap_err();
        assert!(
            format!("{err:#}").contains("ADMIN_TOKEN is not set"),
            "{err:#}"
        );
    }

    #[test]
    fn dev_profile_generates_a_token_and_loopback_defaults() {
        let cfg = Config::from_env(&Env::from_pairs(&[("APP_PROFILE", "dev")])).unwrap();
        assert!(cfg.admin_token.expose_secret().starts_with("dev-"));
        assert!(cfg.admin_token_generated);
        assert_eq!(cfg.listen_addr.to_string(), "127.0.0.1:8080");
        assert!(cfg.listen_addr.ip().is_loopback());
        assert_eq!(cfg.outbox_linger, Duration::from_millis(50));
        assert_eq!(cfg.metrics_addr.to_string(), "127.0.0.1:9091");
        assert_eq!(
            cfg.http_timeouts,
            Timeouts {
                header_read: Duration::from_secs(10),
                idle: Duration::from_secs(75),
                request_body: Duration::from_secs(10),
            }
        );
    }

    #[test]
    fn http_timeouts_must_be_positive_whole_seconds() {
        for name in [
            "HTTP_HEADER_READ_TIMEOUT_SECS",
            "HTTP_IDLE_TIMEOUT_SECS",
            "HTTP_REQUEST_BODY_TIMEOUT_SECS",
        ] {
            for bad in ["0", "1.5", "", "soon"] {
                let env = Env::from_pairs(&[("APP_PROFILE", "dev"), (name, bad)]);
                let err = Config::from_env(&env).unwrap_err();
                assert!(format!("{err:#}").contains(name), "{name}={bad:?}: {err:#}");
            }
        }
        let env = Env::from_pairs(&[("APP_PROFILE", "dev"), ("HTTP_IDLE_TIMEOUT_SECS", "3")]);
        let cfg = Config::from_env(&env).unwrap();
        assert_eq!(cfg.http_timeouts.idle, Duration::from_secs(3));
    }

    #[test]
    fn outbox_linger_can_be_turned_off_and_is_capped() {
        let with = |v: &'static str| {
            Config::from_env(&Env::from_pairs(&[
                ("APP_PROFILE", "dev"),
                ("OUTBOX_LINGER_MS", v),
            ]))
        };
        assert_eq!(with("0").unwrap().outbox_linger, Duration::ZERO);
        assert_eq!(with("60000").unwrap().outbox_linger, Duration::from_secs(1));
        let err = with("soon").unwrap_err();
        assert!(format!("{err:#}").contains("OUTBOX_LINGER_MS"), "{err:#}");
    }

    #[test]
    fn names_the_bad_variable() {
        let env = Env::from_pairs(&[
            ("ADMIN_TOKEN", "0123456789abcdef0123"),
            ("LISTEN_ADDR", "not-an-address"),
        ]);
        let err = Config::from_env(&env).unwrap_err();
        assert!(format!("{err:#}").contains("LISTEN_ADDR"), "{err:#}");
    }

    #[test]
    fn a_set_but_empty_variable_is_refused_not_defaulted() {
        let env = Env::from_pairs(&[("APP_PROFILE", "dev"), ("DATABASE_URL", "")]);
        let err = Config::from_env(&env).unwrap_err();
        assert!(format!("{err:#}").contains("DATABASE_URL"), "{err:#}");
        let env = Env::from_pairs(&[("APP_PROFILE", "dev"), ("ADMIN_TOKEN", " ")]);
        assert!(format!("{:#}", Config::from_env(&env).unwrap_err()).contains("ADMIN_TOKEN"));
    }

    #[test]
    fn voucher_keys_are_optional_and_checked() {
        let cfg = Config::from_env(&Env::from_pairs(&[("APP_PROFILE", "dev")])).unwrap();
        assert!(cfg.voucher_keys.is_empty());
        let key = drop_contract::voucher_code::SigningKey::generate("k1").unwrap();
        let public = key.public_config();
        let env = Env::from_pairs(&[("APP_PROFILE", "dev"), ("VOUCHER_PUBLIC_KEYS", &public)]);
        assert_eq!(Config::from_env(&env).unwrap().voucher_keys.len(), 1);
        let env = Env::from_pairs(&[("APP_PROFILE", "dev"), ("VOUCHER_PUBLIC_KEYS", "k1:nope")]);
        let err = Config::from_env(&env).unwrap_err();
        assert!(
            format!("{err:#}").contains("VOUCHER_PUBLIC_KEYS"),
            "{err:#}"
        );
    }

    #[test]
    fn json_logs_follow_log_format() {
        let with = |v| {
            Config::from_env(&Env::from_pairs(&[
                ("APP_PROFILE", "dev"),
                ("LOG_FORMAT", v),
            ]))
        };
        assert!(with("json").unwrap().json_logs);
        assert!(!with("text").unwrap().json_logs);
        assert!(with("yaml").is_err());
    }
}
