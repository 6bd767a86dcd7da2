-- Payout overrides: a publisher's (or a network's, for its members) own rates for some
-- categories, versioned like commission plans by the calculation period they take effect
-- from (docs/commissions.md, "Payout overrides"; app/money/overrides_store.py).

-- A version: in force for its publisher from the period starting on effective_from (a 10th)
-- until the publisher's next version. A network's versions apply to its members too.
CREATE TABLE payout_overrides (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    publisher_id    bigint NOT NULL REFERENCES publishers (id),
    effective_from  date NOT NULL CHECK (extract(day FROM effective_from) = 10),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (publisher_id, effective_from)
);

-- A version's entries: per category ('*' or lowercase slugs with '/' between levels), a
-- standard rate, a new buyer's rate, or both, in percent with at most four decimals (the
-- code holds them to the program's floor and the plans' bounds; these checks are the
-- backstop). numeric without a scale keeps "8.5" as written, as plan bodies do.
CREATE TABLE payout_override_rates (
    override_id     bigint NOT NULL REFERENCES payout_overrides (id) ON DELETE CASCADE,
    category        text NOT NULL CHECK (length(category) BETWEEN 1 AND 200),
    rate            numeric CHECK (rate >= 0 AND rate <= 100 AND scale(rate) <= 4),
    new_buyer_rate  numeric CHECK (new_buyer_rate >= 0 AND new_buyer_rate <= 100
                                   AND scale(new_buyer_rate) <= 4),
    PRIMARY KEY (override_id, category),
    CHECK (rate IS NOT NULL OR new_buyer_rate IS NOT NULL)
);
