-- Outbound postbacks and webhooks (docs/postbacks.md): a publisher's endpoints, the
-- transactional outbox of events, one delivery per (event, endpoint) and its attempts.

CREATE TABLE postback_endpoints (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    publisher_id  bigint NOT NULL REFERENCES publishers (id),
    -- postback: GET to the URL template with its macros filled; webhook: a signed JSON POST.
    kind          text NOT NULL CHECK (kind IN ('postback', 'webhook')),
    url           text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    events        text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 16),
    -- A webhook's signing key (HMAC-SHA256), shown once; a postback has none.
    secret        text CHECK (length(secret) >= 32),
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'webhook') = (secret IS NOT NULL))
);
CREATE INDEX postback_endpoints_publisher ON postback_endpoints (publisher_id)
    WHERE disabled_at IS NULL;

-- Written in the transaction of the change that causes it, and only when the publisher has
-- an active endpoint wanting it: a change rolled back leaves none.
CREATE TABLE outbox_events (
    id            uuid PRIMARY KEY,
    publisher_id  bigint NOT NULL REFERENCES publishers (id),
    event         text NOT NULL CHECK (length(event) BETWEEN 1 AND 40),
    payload       jsonb NOT NULL,  -- the macros' values, as text
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE postback_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid NOT NULL REFERENCES outbox_events (id),
    endpoint_id      bigint NOT NULL REFERENCES postback_endpoints (id),
    publisher_id     bigint NOT NULL,
    event            text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,  -- since it was queued (or replayed)
    -- Due at; while a sender holds it, the end of its lease.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- When it was queued, or replayed: retries stop CLICKTRACK_POSTBACK_GIVE_UP_S after.
    queued_at        timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    last_status_code integer,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX postback_deliveries_due ON postback_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX postback_deliveries_publisher ON postback_deliveries (publisher_id, id);

CREATE TABLE postback_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES postback_deliveries (id),
    at           timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    status_code  integer,
    latency_ms   integer NOT NULL,
    response     text,  -- the response's first 1 KiB, as text
    error        text
);
CREATE INDEX postback_attempts_delivery ON postback_attempts (delivery_id, id);
