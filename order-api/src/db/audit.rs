//! The `audit_log` table: who did what, when. Rows are written in the
//! transaction of the change they record, so the log never claims a change
//! that rolled back, nor misses one that committed.

use deadpool_postgres::Transaction;
use tokio_postgres::Error;

/// Who acted: the operator (admin token), a scanner, or an order's holder.
pub enum Actor<'a> {
    Admin,
    Scanner(&'a str),
    Customer,
}

impl Actor<'_> {
    fn label(&self) -> String {
        match self {
            Actor::Admin => "admin".to_owned(),
            Actor::Scanner(id) => format!("scanner:{id}"),
            Actor::Customer => "customer".to_owned(),
        }
    }
}

pub async fn record(
    tx: &Transaction<'_>,
    actor: Actor<'_>,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO audit_log (actor, action, subject, detail) VALUES ($1, $2, $3, $4)",
        &[&actor.label(), &action, &subject, &detail],
    )
    .await
    .map(|_| ())
}
