//! The replication fence: what the outbox relay and the voucher-deletion
//! worker commit before they act on rows they claimed.
//!
//! With synchronous replication a commit becomes visible to other sessions
//! on the primary only after a synchronous standby flushed it, unless its
//! wait is cut short: a wait that is cancelled, or whose session is
//! terminated, leaves the transaction committed locally and visible, but not
//! replicated (PostgreSQL's documentation of `synchronous_commit` and
//! synchronous replication; `RecordTransactionCommit` in xact.c). A primary
//! that resumes after a pause (the fault harness's `pg-primary-paused`) and
//! is then demoted can hold such commits until it is rewound, and a relay
//! reading from it would publish orders, or delete vouchers, that the
//! promoted standby never had.
//!
//! So a relay, after its claim, commits one write of its own on another
//! connection. The write's commit record follows in the WAL every commit the
//! claim's snapshot saw, and a successful COMMIT means the standby flushed up
//! to it: everything claimed is then replicated. If the fence fails (the
//! connection was cut, the server is shutting down), the relay does nothing
//! with its claim and tries again later. Without a standby (the single-node
//! stack) the fence is one local commit.

use deadpool_postgres::Pool;
use tokio_postgres::types::Type;

/// The fence of one relay, keyed by `holder` (one row per relay process).
pub async fn pass(pool: &Pool, holder: &str) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client
        .execute_typed(
            "INSERT INTO replication_fence AS f (holder, passes) VALUES ($1, 1)
             ON CONFLICT (holder) DO UPDATE SET passes = f.passes + 1, fenced_at = now()",
            &[(&holder, Type::TEXT)],
        )
        .await?;
    Ok(())
}

/// A holder name for one relay in this process: its role and a random suffix.
pub fn holder(role: &str) -> String {
    format!("{role}-{:016x}", rand::random::<u64>())
}
