//! Configuration: read once at startup from environment variables, with
//! loopback defaults so a developer needs to set nothing. A bad value stops the
//! process with a message that names the variable.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use anyhow::bail;
use secrecy::SecretString;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub database_url: SecretString,
    pub database_pool_size: usize,
    pub redis_url: SecretString,
    pub amqp_url: SecretString,
    /// Exchange the outbox relay publishes accepted orders to.
    pub orders_exchange: String,
    pub admin_token: SecretString,
    pub dev_profile: bool,
    pub s3: S3Config,
    pub stomp: StompConfig,
    pub stock_reconcile_interval: Duration,
    pub shutdown_timeout: Duration,
    pub json_logs: bool,
    /// Most reservations one PostgreSQL transaction takes for one SKU.
    pub max_batch: usize,
    /// How long the outbox relay waits after a partial pass before the next.
    pub outbox_linger: Duration,
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub public_endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub force_path_style: bool,
    pub url_ttl: Duration,
}

/// What the browser page needs to reach Web-STOMP as the least-privilege user.
#[derive(Debug, Clone)]
pub struct StompConfig {
    pub url: String,
    pub login: String,
    pub passcode: String,
    pub vhost: String,
}

/// Where the process reads its variables from; a function so tests can feed a map.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

fn string(env: &dyn Env, key: &str, default: &str) -> String {
    env.get(key).unwrap_or_else(|| default.to_owned())
}

fn parsed<T>(env: &dyn Env, key: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match env.get(key) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|e| anyhow::anyhow!("{key}={raw:?} is not valid: {e}")),
    }
}

impl Config {
    pub fn from_env(env: &dyn Env) -> anyhow::Result<Self> {
        let dev_profile = match string(env, "APP_PROFILE", "prod").as_str() {
            "dev" => true,
            "prod" => false,
            other => bail!("APP_PROFILE={other:?} is not valid: use \"prod\" or \"dev\""),
        };
        let admin_token = match env.get("ADMIN_TOKEN") {
            Some(token) if token.len() < 16 && !dev_profile => {
                bail!("ADMIN_TOKEN is too short: use at least 16 characters")
            }
            Some(token) => token,
            None if dev_profile => {
                let token = format!("dev-{:032x}", rand::random::<u128>());
                tracing::warn!(%token, "ADMIN_TOKEN is unset; APP_PROFILE=dev generated this one");
                token
            }
            None => bail!(
                "ADMIN_TOKEN is not set. Set it to a long random secret \
                 (e.g. `openssl rand -hex 32`), or set APP_PROFILE=dev for local development"
            ),
        };
        let s3_endpoint = string(env, "S3_ENDPOINT", "http://127.0.0.1:7480");
        let reconcile_secs: u64 = parsed(env, "STOCK_RECONCILE_SECS", 5)?;
        let pool_size: usize = parsed(env, "DATABASE_POOL_SIZE", 16)?;
        if pool_size == 0 {
            bail!("DATABASE_POOL_SIZE must be at least 1");
        }
        let log_format = string(env, "LOG_FORMAT", "text");
        if log_format != "text" && log_format != "json" {
            bail!("LOG_FORMAT={log_format:?} is not valid: use \"text\" or \"json\"");
        }
        let config = Self {
            listen_addr: parsed(env, "LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            database_url: string(
                env,
                "DATABASE_URL",
                "postgres://drop:drop@127.0.0.1:5432/drop",
            )
            .into(),
            database_pool_size: pool_size,
            redis_url: string(env, "REDIS_URL", "redis://127.0.0.1:6379").into(),
            amqp_url: string(env, "AMQP_URL", "amqp://drop:drop@127.0.0.1:5672/%2f").into(),
            orders_exchange: string(env, "ORDERS_EXCHANGE", "orders"),
            admin_token: admin_token.into(),
            dev_profile,
            s3: S3Config {
                public_endpoint: string(env, "S3_PUBLIC_ENDPOINT", &s3_endpoint),
                endpoint: s3_endpoint,
                region: string(env, "S3_REGION", "us-east-1"),
                bucket: string(env, "S3_BUCKET", "vouchers"),
                access_key_id: string(env, "S3_ACCESS_KEY_ID", "dropdev"),
                secret_access_key: string(env, "S3_SECRET_ACCESS_KEY", "dropdevsecret").into(),
                force_path_style: parsed(env, "S3_FORCE_PATH_STYLE", true)?,
                url_ttl: Duration::from_secs(parsed(env, "VOUCHER_URL_TTL_SECS", 900)?),
            },
            stomp: StompConfig {
                url: string(env, "STOMP_URL", "ws://127.0.0.1:15674/ws"),
                login: string(env, "STOMP_LOGIN", "browser"),
                passcode: string(env, "STOMP_PASSCODE", "browser"),
                vhost: string(env, "STOMP_VHOST", "/"),
            },
            stock_reconcile_interval: Duration::from_secs(reconcile_secs.max(1)),
            shutdown_timeout: Duration::from_secs(parsed(env, "SHUTDOWN_TIMEOUT_SECS", 20)?),
            json_logs: log_format == "json",
            max_batch: parsed::<usize>(env, "RESERVE_MAX_BATCH", 256)?.clamp(1, 4096),
            outbox_linger: Duration::from_millis(
                parsed::<u64>(env, "OUTBOX_LINGER_MS", 50)?.min(1000),
            ),
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn get(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|v| (*v).to_owned())
        }
    }

    #[test]
    fn refuses_to_start_without_admin_token_in_prod() {
        let err = Config::from_env(&MapEnv(HashMap::new())).unwrap_err();
        assert!(
            format!("{err:#}").contains("ADMIN_TOKEN is not set"),
            "{err:#}"
        );
    }

    #[test]
    fn dev_profile_generates_a_token_and_loopback_defaults() {
        let cfg = Config::from_env(&MapEnv(HashMap::from([("APP_PROFILE", "dev")]))).unwrap();
        assert!(cfg.admin_token.expose_secret().starts_with("dev-"));
        assert_eq!(cfg.listen_addr.to_string(), "127.0.0.1:8080");
        assert!(cfg.listen_addr.ip().is_loopback());
        assert_eq!(cfg.outbox_linger, Duration::from_millis(50));
    }

    #[test]
    fn outbox_linger_can_be_turned_off_and_is_capped() {
        let with = |v: &'static str| {
            Config::from_env(&MapEnv(HashMap::from([
                ("APP_PROFILE", "dev"),
                ("OUTBOX_LINGER_MS", v),
            ])))
        };
        assert_eq!(with("0").unwrap().outbox_linger, Duration::ZERO);
        assert_eq!(with("60000").unwrap().outbox_linger, Duration::from_secs(1));
        let err = with("soon").unwrap_err();
        assert!(format!("{err:#}").contains("OUTBOX_LINGER_MS"), "{err:#}");
    }

    #[test]
    fn names_the_bad_variable() {
        let env = MapEnv(HashMap::from([
            ("ADMIN_TOKEN", "0123456789abcdef0123"),
            ("LISTEN_ADDR", "not-an-address"),
        ]));
        let err = Config::from_env(&env).unwrap_err();
        assert!(format!("{err:#}").contains("LISTEN_ADDR"), "{err:#}");
    }
}
