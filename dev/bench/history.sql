-- dev/bench/history.sql: the orders of earlier drops, bulk-loaded into a
-- database order-api has migrated, for dev/bench.sh's row 4c (reservations
-- after a season of drops). psql variables: drops, per_drop (orders each).
--
-- Each earlier drop is a sold-out product with per_drop orders, all with
-- their vouchers out, a day apart. One INSERT ... SELECT generate_series
-- writes them; the orders' keys and foreign key are dropped for the load and
-- built again after it (a sorted index build instead of one random B-tree
-- insert and one foreign-key check per row), as the PostgreSQL manual
-- advises for populating a database ("Populating a Database", 14.4).
\set ON_ERROR_STOP on
SET maintenance_work_mem = '256MB';
SET synchronous_commit = off;

BEGIN;
ALTER TABLE orders
    DROP CONSTRAINT orders_sku_fkey,
    DROP CONSTRAINT one_reservation_per_phone,
    DROP CONSTRAINT orders_pkey;

INSERT INTO products (sku, name, stock, reserved, created_at, updated_at)
SELECT format('HIST-%s', d), format('Earlier drop %s', d), :per_drop, :per_drop,
       now() - (:drops - d + 1) * interval '1 day', now() - (:drops - d + 1) * interval '1 day'
FROM generate_series(1, :drops) AS d;

INSERT INTO orders (order_id, sku, first_name, last_name, phone, status, created_at)
SELECT md5('history-' || g),
       format('HIST-%s', (g - 1) / :per_drop + 1),
       'Earlier',
       'Customer',
       format('+35840%s', lpad(((g - 1) % :per_drop)::text, 7, '0')),
       'voucher_ready',
       now() - (:drops - (g - 1) / :per_drop) * interval '1 day'
FROM generate_series(1, :drops * :per_drop) AS g;

ALTER TABLE orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (order_id),
    ADD CONSTRAINT one_reservation_per_phone UNIQUE (sku, phone),
    ADD CONSTRAINT orders_sku_fkey FOREIGN KEY (sku) REFERENCES products (sku);
COMMIT;

VACUUM (ANALYZE) orders;
VACUUM (ANALYZE) products;
