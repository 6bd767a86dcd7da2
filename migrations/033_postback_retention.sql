-- The postback retention (app/postbacks/retention.py; docs/postbacks.md, "Retention"): the
-- indexes its hourly deletes walk, so a pass reads what it deletes, not whole tables.

-- Finished deliveries (delivered or failed) by their last change, oldest first: what the
-- pass picks. Pending ones are left out: they are never deleted.
CREATE INDEX postback_deliveries_finished ON postback_deliveries (updated_at)
    WHERE status <> 'pending';

-- Events by age: the pass walks those older than the cutoff, in (created_at, id) order from
-- where its last batch stopped, and deletes those left without any delivery.
CREATE INDEX outbox_events_created ON outbox_events (created_at, id);

-- Deleting a received postback sets replay_of to NULL in the rows that replayed it (the
-- foreign key's ON DELETE SET NULL): one lookup by replay_of per row deleted, a scan of
-- the whole table without this index.
CREATE INDEX received_postbacks_replay_of ON received_postbacks (replay_of)
    WHERE replay_of IS NOT NULL;
