//! PostgreSQL: the connection pool, schema migrations, how to tell an outage
//! (503, retry later) from a bug (500), and one adapter per table.
//!
//! The `idempotency_keys` table belongs to [`crate::idempotency`], which owns
//! the whole Idempotency-Key rule.

pub mod audit;
pub mod fence;
pub mod orders;
pub mod outbox;
pub mod products;
pub mod scanners;

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

use crate::config::Config;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Any advisory-lock key works as long as every replica uses the same one.
const MIGRATION_LOCK_KEY: i64 = 0x6f72_6465_722d_6170; // "order-ap"

pub fn pg_config(cfg: &Config) -> anyhow::Result<tokio_postgres::Config> {
    let mut pg: tokio_postgres::Config = cfg
        .database_url
        .expose_secret()
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    // Fail fast when the server is gone, so requests get a 503 quickly rather
    // than hanging on a dead TCP connection.
    pg.connect_timeout(Duration::from_secs(2));
    pg.keepalives_idle(Duration::from_secs(10));
    pg.application_name("order-api");
    Ok(pg)
}

/// The request-path pool. Waiting for a connection is bounded: when PostgreSQL
/// is down the pool cannot create one and callers get a 503 within seconds.
pub fn pool(cfg: &Config) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        pg_config(cfg)?,
        NoTls,
        ManagerConfig {
            // `Fast` only checks `is_closed()`; a connection broken by a
            // restart is closed once its background task notices, and errors
            // on use otherwise (mapped to 503), so `Verified`'s extra round
            // trip per checkout is not worth it on the hot path.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(cfg.database_pool_size)
        .wait_timeout(Some(Duration::from_secs(3)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(1)))
        .runtime(Runtime::Tokio1)
        .build()
        .context("building the PostgreSQL pool")
}

/// Applies pending migrations. Several replicas may start at once, so the run
/// is serialised with a session-level advisory lock: the first applies, the
/// others wait, then find nothing left to do.
pub async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    let (mut client, connection) = pg_config(cfg)?
        .connect(NoTls)
        .await
        .context("connecting to PostgreSQL for migrations")?;
    let conn_task = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .context("applying migrations");
    // Unlock explicitly; closing the session would release it too.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    drop(client);
    conn_task.abort();
    let report = report?;
    unlock.context("releasing the migration lock")?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "applied migration");
    }
    Ok(())
}

/// True when the error means "PostgreSQL is unreachable or going away", as
/// opposed to a query the server rejected.
pub fn is_unavailable(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(code) = err.code() {
        let c = code.code();
        // 08: connection exception; 57P01-57P03: shutdown, crash, starting up;
        // 53300: too many connections; 25006: read-only transaction, i.e. the
        // server reached is a standby (an old primary, demoted by a failover).
        return c.starts_with("08") || c.starts_with("57P") || c == "53300" || c == "25006";
    }
    // No SQLSTATE: an I/O or protocol error on the socket.
    true
}

/// A failure reaching the database through the pool.
pub fn pool_unavailable(err: &PoolError) -> bool {
    match err {
        PoolError::Backend(e) => is_unavailable(e),
        PoolError::Timeout(_) | PoolError::Closed | PoolError::NoRuntimeSpecified => true,
        PoolError::PostCreateHook(_) => true,
    }
}
