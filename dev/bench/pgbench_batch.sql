-- order-api's reservation transaction (order-api/src/reserve.rs,
-- reserve_batch + insert_orders), for a batch of :batch requests without
-- Idempotency-Keys, statement by statement as the reserver issues them.
-- Differences, none of which change the work PostgreSQL does: the arrays
-- order-api binds as parameters ($2..$7 of insert_orders) are built here from
-- a per-client counter with generate_series, and the order ids with md5().
-- Both run the statements prepared (order-api once per connection, pgbench
-- with -M prepared).
-- Variables: sku, batch, n (-D n=0, a per-client counter),
-- fmt (-D, the created_at format order-api writes; passed as a variable
-- because pgbench would read its colons as variable names).
\set n :n + 1
\set base :client_id * 1000000000 + :n * :batch
BEGIN;
SELECT name, stock - reserved FROM products WHERE sku = :sku FOR UPDATE;
WITH new_orders AS (
    INSERT INTO orders (order_id, sku, first_name, last_name, phone, created_at)
    SELECT o.id, :sku, o.first, o.last, o.phone, now()
    FROM (SELECT md5(:sku || '-' || :client_id || '-' || (:base::bigint + g)) AS id, 'Bench' AS first, 'Mark' AS last,
                 '+1' || (:base::bigint + g) AS phone
          FROM generate_series(1, :batch) g) AS o
    ON CONFLICT (sku, phone) WHERE status <> 'cancelled' DO NOTHING
    RETURNING order_id, first_name, last_name
), new_outbox AS (
    INSERT INTO outbox (order_id, payload)
    SELECT min(order_id), jsonb_build_object(
        'sku', :sku::text, 'product_name', 'Bench product'::text,
        'created_at', to_char(now() AT TIME ZONE 'UTC', :fmt::text),
        'orders', jsonb_agg(jsonb_build_object(
            'order_id', order_id, 'first_name', first_name, 'last_name', last_name)))
    FROM new_orders HAVING count(*) > 0
), units AS (
    UPDATE products SET reserved = reserved + (SELECT count(*) FROM new_orders), updated_at = now()
    WHERE sku = :sku
)
SELECT order_id FROM new_orders;
COMMIT;
