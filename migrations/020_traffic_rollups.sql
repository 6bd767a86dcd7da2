-- Traffic rollups: the counts reports read instead of raw clicks. The flusher adds to them in
-- the transaction that inserts the clicks, from the rows actually inserted (a click delivered
-- twice is inserted, and so counted, once); `python -m app.cli backfill-rollups` rebuilds
-- them from raw clicks (run it once after upgrading a database that has clicks already).
-- Days are UTC days. See docs/reports.md.
--
-- A unique click is the first billable (unflagged) click of a session for one
-- (day, link, af, cn, cv); absent tracking strings are NULL, kept apart from empty ones
-- (NULLS NOT DISTINCT makes NULL a value of the key like any other). Text keys compare
-- bytes (COLLATE "C"): several times cheaper than a locale's rules, and exact equality is
-- all a key needs.

-- The first billable click of each session per (day, link, af, cn, cv): inserted ON CONFLICT
-- DO NOTHING, so the rows it returns are exactly the new unique clicks. Old days are deleted
-- with the click retention (drop_click_partitions_before, below).
CREATE TABLE traffic_sessions (
    day           date NOT NULL,
    link_id       bigint NOT NULL,
    session_id    text COLLATE "C" NOT NULL,
    af            text COLLATE "C",
    cn            text COLLATE "C",
    cv            text COLLATE "C",
    publisher_id  bigint NOT NULL,
    CONSTRAINT traffic_sessions_key
        UNIQUE NULLS NOT DISTINCT (day, link_id, session_id, af, cn, cv)
);

-- Counts per (publisher, day, link, af, cn, cv): reports by af, cn or cv read these.
CREATE TABLE traffic_tracking_days (
    publisher_id   bigint NOT NULL,
    day            date NOT NULL,
    link_id        bigint NOT NULL,
    af             text COLLATE "C",
    cn             text COLLATE "C",
    cv             text COLLATE "C",
    clicks         bigint NOT NULL CHECK (clicks >= 0),
    unique_clicks  bigint NOT NULL CHECK (unique_clicks >= 0),
    flagged        bigint NOT NULL CHECK (flagged >= 0),
    CONSTRAINT traffic_tracking_days_key
        UNIQUE NULLS NOT DISTINCT (publisher_id, day, link_id, af, cn, cv)
);

-- The same counts summed per (publisher, day, link): reports by day or link read these, a
-- few rows per link and day however many tracking strings a publisher uses.
CREATE TABLE traffic_link_days (
    publisher_id   bigint NOT NULL,
    day            date NOT NULL,
    link_id        bigint NOT NULL,
    clicks         bigint NOT NULL CHECK (clicks >= 0),
    unique_clicks  bigint NOT NULL CHECK (unique_clicks >= 0),
    flagged        bigint NOT NULL CHECK (flagged >= 0),
    PRIMARY KEY (publisher_id, day, link_id)
);

-- Retention, as in 003, and also the session rows of the days dropped (a click older than
-- the cutoff is no longer stored, so none can need them). Rollups are kept: reports still
-- show the days whose raw clicks are gone.
CREATE OR REPLACE FUNCTION drop_click_partitions_before(cutoff date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('clicktrack.partition'));
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'clicks'::regclass
          AND c.relname ~ '^clicks_[0-9]{8}$'
          AND to_date(substr(c.relname, 8), 'YYYYMMDD') < cutoff
    LOOP
        EXECUTE format('ALTER TABLE clicks DETACH PARTITION %I', part.relname);
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM clicks_default WHERE ts < (cutoff::timestamp AT TIME ZONE 'UTC');
    DELETE FROM traffic_sessions WHERE day < cutoff;
    RETURN dropped;
END;
$$;
