-- The log of postbacks received from merchants (docs/postbacks.md, "Received postbacks"):
-- what arrived, what it changed, or why it was refused. A row is written for every postback
-- that names a merchant that exists; the body is kept only when its signature verified (a
-- stranger's bytes are never stored), and only such a row can be replayed.
CREATE TABLE received_postbacks (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id    bigint NOT NULL REFERENCES merchants (id),
    received_at    timestamptz NOT NULL DEFAULT now(),
    -- Set on a replay: the row it replayed (whose body it ran again).
    replay_of      bigint REFERENCES received_postbacks (id) ON DELETE SET NULL,
    http_status    integer NOT NULL CHECK (http_status BETWEEN 100 AND 599),
    outcome        text NOT NULL
                       CHECK (outcome IN ('created', 'updated', 'unchanged', 'refused')),
    error          text,   -- why refused, as answered
    body           bytea CHECK (octet_length(body) <= 16384),
    order_ref      text,
    order_id       bigint REFERENCES orders (id),
    status_before  text,   -- the order's status before (NULL for a new order or a refusal)
    status_after   text,
    attribution    text,
    CHECK ((outcome = 'refused') = (error IS NOT NULL))
);
CREATE INDEX received_postbacks_merchant ON received_postbacks (merchant_id, id);
CREATE INDEX received_postbacks_order ON received_postbacks (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX received_postbacks_received_at ON received_postbacks (received_at);
