-- Traffic rollup deltas (app/traffic/rollups.py): the flusher's batch statement appends its
-- counts per (publisher, dimension, day, link, value) here, in the transaction that inserts
-- its clicks, instead of upserting traffic_dimension_days and traffic_link_days itself; a
-- fold deletes the pending rows and adds their sums to both about once a second, one folder
-- at a time. A batch of 2,000 clicks has some 4,000 such keys, a second of clicks not many
-- more: upserting them once a second instead of once a batch is most of what Postgres's
-- work per click lost (docs/performance.md). The traffic_link_days row of a (publisher, day,
-- link) is the sum of any one dimension's rows: the fold takes the country's.
--
-- No index and no constraint: rows are only appended, then all deleted by the fold.
CREATE TABLE traffic_dimension_deltas (
    publisher_id   bigint NOT NULL,
    dimension      text COLLATE "C" NOT NULL,
    day            date NOT NULL,
    link_id        bigint NOT NULL,
    value          text COLLATE "C",
    clicks         bigint NOT NULL,
    unique_clicks  bigint NOT NULL,
    flagged        bigint NOT NULL
);
