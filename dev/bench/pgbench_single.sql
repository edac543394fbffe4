-- The reference: a single-statement hot-row reservation, one unit per
-- transaction (autocommit). The row lock on the product is taken by the
-- guarded UPDATE; the order and its outbox row (a batch of one, in the shape
-- order-api writes) are written in the same statement. Variables: sku (-D),
-- n (-D n=0, a per-client counter), fmt (-D, the created_at format order-api
-- writes; passed as a variable because pgbench would read its colons as
-- variable names).
\set n :n + 1
\set ph :client_id * 1000000000 + :n
WITH p AS (
    UPDATE products SET reserved = reserved + 1, updated_at = now()
    WHERE sku = :sku AND reserved < stock
    RETURNING sku, name
), new_orders AS (
    INSERT INTO orders (order_id, sku, first_name, last_name, phone, created_at)
    SELECT md5(:sku || '-' || :ph::bigint), p.sku, 'Bench', 'Mark', '+1' || :ph::bigint, now()
    FROM p
    RETURNING order_id, sku, first_name, last_name, created_at
)
INSERT INTO outbox (order_id, payload)
SELECT o.order_id, jsonb_build_object(
    'sku', o.sku, 'product_name', p.name,
    'created_at', to_char(o.created_at AT TIME ZONE 'UTC', :fmt::text),
    'orders', jsonb_build_array(jsonb_build_object(
        'order_id', o.order_id, 'first_name', o.first_name, 'last_name', o.last_name)))
FROM new_orders o, p;
