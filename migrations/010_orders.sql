-- Merchants (who report orders by signed postback) and the orders they report.

-- The postback secret is kept as is: checking an HMAC needs the key itself, not a hash of
-- it. It is shown once (CLI), never returned by the API; see docs/commissions.md.
CREATE TABLE merchants (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    secret       text NOT NULL CHECK (length(secret) >= 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);

-- One row per order, whatever became of it: orders with an unknown click id are kept
-- (attribution 'unattributed') and attributed when the click appears; orders on a flagged
-- click, or disqualified by an admin, are kept as 'disqualified'.
CREATE TABLE orders (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id          bigint NOT NULL REFERENCES merchants (id),
    order_ref            text NOT NULL CHECK (length(order_ref) BETWEEN 1 AND 128),
    -- The click id as the merchant sent it; click_id/click_time when it is a UUIDv7 (only
    -- those can match a click: the time narrows the search to one partition of clicks).
    click_ref            text NOT NULL CHECK (length(click_ref) <= 128),
    click_id             uuid,
    click_time           timestamptz,
    ordered_at           timestamptz NOT NULL,
    amount               numeric(14, 2) NOT NULL CHECK (amount >= 0),
    currency             text NOT NULL DEFAULT 'USD' CHECK (currency = 'USD'),
    category             text NOT NULL CHECK (length(category) BETWEEN 1 AND 200),
    new_buyer            boolean NOT NULL,
    status               text NOT NULL CHECK (status IN
                             ('incomplete', 'completed_payment', 'completed', 'refunded', 'invalid')),
    status_at            timestamptz NOT NULL,
    completed_at         timestamptz,
    attribution          text NOT NULL DEFAULT 'unattributed'
                             CHECK (attribution IN ('unattributed', 'attributed', 'disqualified')),
    disqualified_reason  text,
    disqualified_at      timestamptz,
    -- Copied from the click at attribution, so order reports never read the clicks table.
    publisher_id         bigint REFERENCES publishers (id),
    link_id              bigint,
    code                 text,
    af                   text,
    cn                   text,
    cv                   text,
    dp                   text,
    click_flags          smallint,
    attributed_at        timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, order_ref),
    CHECK ((click_id IS NULL) = (click_time IS NULL)),
    CHECK (completed_at IS NULL OR completed_at >= ordered_at),
    CHECK (attribution = 'unattributed' OR publisher_id IS NOT NULL
           OR disqualified_reason IS NOT NULL),
    CHECK ((attribution = 'disqualified') = (disqualified_at IS NOT NULL))
);
CREATE INDEX orders_publisher_ordered ON orders (publisher_id, ordered_at);
CREATE INDEX orders_publisher_completed ON orders (publisher_id, completed_at)
    WHERE status = 'completed';
CREATE INDEX orders_waiting_for_click ON orders (id)
    WHERE attribution = 'unattributed' AND click_id IS NOT NULL;
