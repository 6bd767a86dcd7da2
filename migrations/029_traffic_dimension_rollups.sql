-- Traffic rollups by traffic dimension (issue 19): the counts reports by country, device,
-- browser, OS, referrer host or language read, kept by the flusher in the statement that
-- counts traffic_tracking_days (app/traffic/rollups.py). See docs/reports.md#rollups.
--
-- One long-format table rather than one table per dimension: a click adds one row per
-- dimension (six) to its (publisher, day, link), with the dimension's name and value, so the
-- flusher writes one more INSERT ... ON CONFLICT DO UPDATE per batch, not six. For every
-- dimension the rows of a (publisher, day, link) add up to its row of traffic_link_days:
-- clicks and flagged clicks count under the click's own value, a unique click under the
-- value of the click that made it unique (the one whose traffic_sessions row was inserted:
-- the earliest, by time then click id, of its session's billable clicks in that batch).
--
-- Not by af, cn, cv: those keys are nearly one per click for publishers who use many
-- sub-affiliate ids, and six rows per click made the flusher's drain ~0.55x of what it was.
-- A report combining a dimension with a tracking string reads raw clicks (at most 31 days),
-- as one by dp does.
--
-- value NULL is "unknown" (a click stored before migration 028, with
-- CLICKTRACK_DIMENSIONS=off, or from which nothing could be told); NULLS NOT DISTINCT makes
-- it a value of the key like any other. The key leads with (publisher, dimension, day): a
-- report reads one dimension of one publisher's days, a contiguous range of the index.

CREATE TABLE traffic_dimension_days (
    publisher_id   bigint NOT NULL,
    dimension      text COLLATE "C" NOT NULL
        CHECK (dimension IN ('country', 'device', 'browser', 'os', 'referrer', 'language')),
    day            date NOT NULL,
    link_id        bigint NOT NULL,
    value          text COLLATE "C",
    clicks         bigint NOT NULL CHECK (clicks >= 0),
    unique_clicks  bigint NOT NULL CHECK (unique_clicks >= 0),
    flagged        bigint NOT NULL CHECK (flagged >= 0),
    CONSTRAINT traffic_dimension_days_key
        UNIQUE NULLS NOT DISTINCT (publisher_id, dimension, day, link_id, value)
);

-- What was counted before this migration counts as "unknown" in every dimension, so that
-- every report by a dimension adds up to the plain report at once. `python -m app.cli
-- backfill-rollups` recounts the days whose raw clicks are still stored, with their values
-- (those stored since migration 028, and those `backfill-dimensions` filled).
INSERT INTO traffic_dimension_days
    (publisher_id, dimension, day, link_id, value, clicks, unique_clicks, flagged)
SELECT t.publisher_id, d.dimension, t.day, t.link_id, NULL,
       t.clicks, t.unique_clicks, t.flagged
FROM traffic_link_days t
CROSS JOIN (VALUES ('country'), ('device'), ('browser'), ('os'), ('referrer'), ('language'))
    AS d(dimension);
