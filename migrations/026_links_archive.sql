-- Links can be archived: they stop redirecting (410, like an expired link) and leave the
-- publisher's default link list, but keep their clicks, rollups, orders and reports (nothing
-- is deleted); setting the status back to 'active' restores them.
--
-- Locks: the constraint's check reads every link under an exclusive lock, and the index is
-- built without CONCURRENTLY (a migration is one transaction): link writes wait for both.
-- The redirect keeps answering from its caches and the Redis mirror meanwhile.
ALTER TABLE links DROP CONSTRAINT links_status_check;
ALTER TABLE links ADD CONSTRAINT links_status_check
    CHECK (status IN ('active', 'disabled', 'archived'));

-- GET /api/v1/links?host=...: a publisher's links on one destination host, in id order (the
-- cursor), without walking all its links. The expression is the destination's host as
-- app/links/store.py's _HOST_SQL writes it (the query must spell it the same for the planner
-- to use this index): the authority of the stored, normalised URL (scheme://authority/...),
-- without brackets and port.
CREATE INDEX links_publisher_host ON links (
    publisher_id,
    (regexp_replace(split_part(split_part(destination, '://', 2), '/', 1),
                    '^\[([^]]*)\](:[0-9]+)?$|^([^:]*)(:[0-9]+)?$', '\1\3')),
    id
);
