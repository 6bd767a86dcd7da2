-- Caps on clicks, orders and commission, and the screening of orders at attribution: fraud
-- rules that hold an order for review, caps that decline it (docs/commissions.md, "Caps" and
-- "Order fraud rules").

-- A cap: per publisher, or one of its links, or one of its campaigns (cn); per day, calendar
-- month or calculation period in the period time zone (CLICKTRACK_PERIOD_TZ).
CREATE TABLE caps (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    publisher_id  bigint NOT NULL REFERENCES publishers (id),
    link_id       bigint REFERENCES links (id),
    campaign      text CHECK (length(campaign) BETWEEN 1 AND 200),
    metric        text NOT NULL CHECK (metric IN ('clicks', 'orders', 'commission')),
    period        text NOT NULL CHECK (period IN ('day', 'month', 'calculation_period')),
    -- Clicks, orders, or commission in cents.
    cap           bigint NOT NULL CHECK (cap >= 0),
    -- Where a click over a click cap goes (NULL: the link's own destination).
    fallback_url  text CHECK (length(fallback_url) BETWEEN 8 AND 2048),
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (link_id IS NULL OR campaign IS NULL),
    CHECK (metric = 'clicks' OR fallback_url IS NULL)
);
CREATE INDEX caps_publisher ON caps (publisher_id) WHERE disabled_at IS NULL;

-- What attributed orders used of each order or commission cap in one window: the row racing
-- orders lock, so N of them around the limit never let more than the cap through.
CREATE TABLE cap_usage (
    cap_id        bigint NOT NULL REFERENCES caps (id),
    -- The window's first day in the period time zone: the day, the month's 1st, or the
    -- calculation period's 10th.
    window_start  date NOT NULL,
    used          bigint NOT NULL DEFAULT 0 CHECK (used >= 0),  -- orders, or cents
    PRIMARY KEY (cap_id, window_start)
);

ALTER TABLE orders DROP CONSTRAINT orders_attribution_check;
ALTER TABLE orders
    ADD CONSTRAINT orders_attribution_check CHECK (
        attribution IN ('unattributed', 'attributed', 'disqualified', 'held', 'declined')),
    -- Copied from the click at attribution, as the click stored them (the address masked
    -- as the privacy mode says): what the per-session and per-address rules count.
    ADD COLUMN session_id       text,
    ADD COLUMN click_ip         text,
    -- The fraud rule that held the order for review; kept after the review, for reports.
    ADD COLUMN held_rule        text CHECK (length(held_rule) BETWEEN 1 AND 64),
    ADD COLUMN held_at          timestamptz,
    ADD COLUMN review           text CHECK (review IN ('approved', 'rejected')),
    ADD COLUMN reviewed_at      timestamptz,
    -- The cap an order was declined by.
    ADD COLUMN declined_cap_id  bigint REFERENCES caps (id),
    ADD COLUMN declined_at      timestamptz,
    ADD CONSTRAINT orders_held_has_rule CHECK (attribution <> 'held' OR held_rule IS NOT NULL),
    -- Kept when a declined order is disqualified later: which cap declined it stays known.
    ADD CONSTRAINT orders_declined_has_cap
        CHECK (attribution <> 'declined' OR declined_cap_id IS NOT NULL),
    ADD CONSTRAINT orders_review_after_hold CHECK (review IS NULL OR held_rule IS NOT NULL);
CREATE INDEX orders_session ON orders (session_id, ordered_at) WHERE session_id IS NOT NULL;
CREATE INDEX orders_click_ip ON orders (click_ip, ordered_at) WHERE click_ip IS NOT NULL;
CREATE INDEX orders_held ON orders (id) WHERE attribution = 'held';
