-- The outbox relay now deletes a row once RabbitMQ has confirmed it, instead
-- of marking it published: a delete writes no new row version and touches no
-- index, where the mark cost a new version plus index entries for every
-- order. The orders table remains the record of what was accepted.
-- Rows already marked were confirmed: drop them, so they are not published again.
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX outbox_unpublished;
DROP INDEX outbox_published_at;
ALTER TABLE outbox DROP COLUMN published_at;
