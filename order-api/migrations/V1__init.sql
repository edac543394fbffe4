-- The reservation core. PostgreSQL is the source of truth: the CHECK on
-- products makes overselling impossible even if application logic were wrong,
-- and the UNIQUE on orders makes a second reservation per phone impossible.

CREATE TABLE products (
    sku        text        PRIMARY KEY,
    name       text        NOT NULL,
    stock      integer     NOT NULL CHECK (stock >= 0),
    reserved   integer     NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reserved_within_stock CHECK (reserved <= stock)
);

CREATE TABLE orders (
    order_id   text        PRIMARY KEY CHECK (order_id ~ '^[0-9a-f]{32}$'),
    sku        text        NOT NULL REFERENCES products (sku),
    first_name text        NOT NULL,
    last_name  text        NOT NULL,
    -- E.164, normalised by the API before it gets here.
    phone      text        NOT NULL,
    status     text        NOT NULL DEFAULT 'reserved'
                           CHECK (status IN ('reserved', 'voucher_ready')),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT one_reservation_per_phone UNIQUE (sku, phone)
);

-- Transactional outbox: written in the same transaction as the order, relayed
-- to RabbitMQ with publisher confirms, marked published only after the confirm.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    order_id     text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Idempotency-Key replay store: the outcome of a keyed request, written in the
-- transaction that decided it, so a retry gets the same answer.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    request_hash bytea       NOT NULL,
    outcome      text        NOT NULL
                             CHECK (outcome IN ('reserved', 'sold_out', 'already_reserved')),
    order_id     text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
