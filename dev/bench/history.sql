-- dev/bench/history.sql: the orders of earlier drops, bulk-loaded into a
-- database order-api has migrated, for dev/bench.sh's row 4c (reservations
-- after a season of drops). psql variables: drops, per_drop (orders each).
--
-- Each earlier drop is a sold-out product with per_drop orders, all with
-- their vouchers out, a day apart. One INSERT ... SELECT generate_series
-- writes them; the orders' keys, indexes and foreign keys are dropped for the
-- load and built again after it (a sorted index build instead of one random B-tree
-- insert and one foreign-key check per row), as the PostgreSQL manual
-- advises for populating a database ("Populating a Database", 14.4).
\set ON_ERROR_STOP on
SET maintenance_work_mem = '256MB';
SET synchronous_commit = off;

BEGIN;
-- What is dropped for the load and built again after it, read from the
-- catalog (so a migration that changes the keys cannot break the load): the
-- orders' primary key and unique constraints, their other indexes, their
-- foreign keys, and the foreign keys that point at them; CHECKs stay.
CREATE TEMP TABLE rebuild (step int, ddl text) ON COMMIT DROP;
INSERT INTO rebuild
SELECT 1, format('ALTER TABLE orders ADD CONSTRAINT %I %s', conname, pg_get_constraintdef(oid))
FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('p', 'u')
UNION ALL
SELECT 2, pg_get_indexdef(indexrelid)
FROM pg_index
WHERE indrelid = 'orders'::regclass
  AND indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE conrelid = 'orders'::regclass)
UNION ALL
SELECT 3, format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
FROM pg_constraint
WHERE contype = 'f' AND (conrelid = 'orders'::regclass OR confrelid = 'orders'::regclass);
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
             WHERE contype = 'f' AND (conrelid = 'orders'::regclass OR confrelid = 'orders'::regclass) LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.conname);
    END LOOP;
    FOR r IN SELECT indexrelid::regclass AS idx FROM pg_index
             WHERE indrelid = 'orders'::regclass
               AND indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE conrelid = 'orders'::regclass) LOOP
        EXECUTE format('DROP INDEX %s', r.idx);
    END LOOP;
    FOR r IN SELECT conname FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('p', 'u') LOOP
        EXECUTE format('ALTER TABLE orders DROP CONSTRAINT %I', r.conname);
    END LOOP;
END $$;

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

DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT ddl FROM rebuild ORDER BY step LOOP
        EXECUTE r.ddl;
    END LOOP;
END $$;
COMMIT;

VACUUM (ANALYZE) orders;
VACUUM (ANALYZE) products;
