-- One outbox row per reservation batch instead of per order: a row now carries
-- every order one insert round committed for one SKU, and the relay publishes
-- it as one message (docs/design.md, "Orders accepted"). The relay's per-row
-- work (its claim, the publish and confirm, the delete) is then paid once per
-- batch of up to RESERVE_MAX_BATCH orders. `order_id` holds the batch's lowest
-- order id, which becomes the message id. Rows written by earlier versions
-- (one order each) are relayed as they are; pdf-generator reads both shapes.
--
-- A batch's payload is a few kilobytes. Keep it in the row, uncompressed, up
-- to a page: compressing and moving it out of line costs more CPU than it
-- saves, for a row that lives only until the broker confirms it.
ALTER TABLE outbox SET (toast_tuple_target = 8160);
ALTER TABLE outbox ALTER COLUMN payload SET STORAGE MAIN;
