-- The relays' replication fence (order-api/src/db/fence.rs). Before the outbox
-- relay publishes what it claimed, or the voucher-deletion worker deletes a
-- cancelled order's voucher, each commits one small write here. With
-- synchronous replication that commit returns only once a synchronous standby
-- holds it, and with it every commit the claim could see; so nothing that a
-- failover can still take back (a commit whose wait for the standby was cut,
-- which PostgreSQL keeps committed locally) is ever acted on. One row per
-- relay process, so replicas never queue behind each other's fences.
CREATE TABLE replication_fence (
    holder     text PRIMARY KEY,
    passes     bigint NOT NULL DEFAULT 0,
    fenced_at  timestamptz NOT NULL DEFAULT now()
);
