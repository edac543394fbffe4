-- After the drop: redemption at the counter, cancellation, the pickup
-- window, scanners and the audit trail (docs/design.md, "Voucher lifecycle").

-- The pickup window: the nbf/exp of the codes of orders accepted afterwards.
ALTER TABLE products
    ADD COLUMN redeem_from  timestamptz,
    ADD COLUMN redeem_until timestamptz,
    ADD CONSTRAINT redeem_window_ordered
        CHECK (redeem_from IS NULL OR redeem_until IS NULL OR redeem_until > redeem_from);

ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders
    ADD CONSTRAINT orders_status_check
        CHECK (status IN ('reserved', 'voucher_ready', 'redeemed', 'cancelled')),
    ADD COLUMN cancelled_at timestamptz,
    ADD CONSTRAINT cancelled_when_cancelled
        CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL));

-- One reservation per phone and SKU among the orders that still hold a unit:
-- a customer who cancelled may reserve again. The reservation statement's
-- ON CONFLICT names this predicate, so PostgreSQL infers this index.
ALTER TABLE orders DROP CONSTRAINT one_reservation_per_phone;
CREATE UNIQUE INDEX one_reservation_per_phone ON orders (sku, phone)
    WHERE status <> 'cancelled';
-- The revocations feed reads cancellations in time order.
CREATE INDEX orders_cancelled_at ON orders (cancelled_at) WHERE cancelled_at IS NOT NULL;

-- Scanners at the pickup counters. The token is shown once and stored only
-- as its SHA-256: it is 256 random bits, so a fast hash is enough.
CREATE TABLE scanners (
    scanner_id   text        PRIMARY KEY CHECK (scanner_id ~ '^[0-9a-f]{32}$'),
    name         text        NOT NULL,
    token_sha256 bytea       NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- At most one redemption per order, whatever the code does: the primary key.
CREATE TABLE redemptions (
    order_id    text        PRIMARY KEY REFERENCES orders (order_id),
    scanner_id  text        NOT NULL REFERENCES scanners (scanner_id),
    redeemed_at timestamptz NOT NULL DEFAULT now()
);

-- A scanner's nonce and the answer it got, so a retry gets that answer.
-- Claimed first in the redemption's transaction: a concurrent request with
-- the same nonce waits on this key and then reads the stored answer.
CREATE TABLE redemption_nonces (
    scanner_id  text        NOT NULL REFERENCES scanners (scanner_id),
    nonce       text        NOT NULL,
    code_sha256 bytea       NOT NULL,
    status      smallint    NOT NULL,
    body        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scanner_id, nonce)
);

-- An outbox for the object store: the vouchers of cancelled orders to
-- delete, written in the cancellation's transaction, removed once the object
-- is gone.
CREATE TABLE voucher_deletions (
    order_id        text        PRIMARY KEY,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);

-- Who did what, when: every admin action, scanner registration and
-- revocation, decided redemption and cancellation.
CREATE TABLE audit_log (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    subject text        NOT NULL,
    detail  jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
