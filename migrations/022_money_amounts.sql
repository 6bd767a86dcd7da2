-- Money sized for the sums of bounded amounts; partial refunds; incentives re-decided when
-- the sales they rest on change (docs/commissions.md §1, §4, §5).

-- 1. Sizes. An order's amount is bounded at the door (CLICKTRACK_MAX_ORDER_AMOUNT, at most
-- 1,000,000,000.00), so one order, and one ledger row about an order (a rate is at most
-- 100 %), stay below 10^9, and numeric(14, 2) (below 10^12) still holds any order stored
-- before the bound. Sums are another matter: a balance, a period's sales or credits, a
-- withdrawal of a whole balance add up a publisher's orders over its lifetime. They get
-- numeric(20, 2): below 10^18, that is a million orders of 10^12 (the largest amount ever
-- stored), or 10^9 orders at the largest bound, or 10^12 orders at the default bound.
-- Widening a numeric's precision at the same scale does not rewrite the table.
ALTER TABLE ledger ALTER COLUMN amount TYPE numeric(20, 2);
ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(20, 2);
ALTER TABLE withdrawals
    ALTER COLUMN amount TYPE numeric(20, 2),
    ALTER COLUMN fee TYPE numeric(20, 2),
    ALTER COLUMN payout TYPE numeric(20, 2);
ALTER TABLE period_closes
    ALTER COLUMN sales TYPE numeric(20, 2),
    ALTER COLUMN credited TYPE numeric(20, 2),
    ALTER COLUMN charged_back TYPE numeric(20, 2),
    -- What the close posted as incentive adjustments (signed), and for how many orders.
    ADD COLUMN adjusted numeric(20, 2) NOT NULL DEFAULT 0,
    ADD COLUMN orders_adjusted integer NOT NULL DEFAULT 0;

-- 2. Partial refunds: a completed order part of which was refunded keeps earning, on its
-- lowered amount. amount is the current amount; reported_amount the amount before any
-- refund (NULL while only partial refunds have been reported: they do not say it).
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders
    ADD CONSTRAINT orders_status_check CHECK (status IN ('incomplete', 'completed_payment',
        'completed', 'partially_refunded', 'refunded', 'invalid')),
    ADD COLUMN reported_amount numeric(14, 2),
    ADD CONSTRAINT orders_amount_lowered_only
        CHECK (reported_amount IS NULL OR reported_amount >= amount),
    ADD CONSTRAINT orders_partial_refund_leaves_something
        CHECK (status <> 'partially_refunded' OR amount > 0);
UPDATE orders SET reported_amount = amount;
-- Completed orders are those two statuses (app/orders/status.py, completed_in_time).
DROP INDEX orders_publisher_completed;
CREATE INDEX orders_publisher_completed ON orders (publisher_id, completed_at)
    WHERE status IN ('completed', 'partially_refunded');

-- 3. Two ledger kinds about an order, both posted by a period close: partial_refund (<= 0,
-- what a lowered amount takes off the order's commission) and incentive_adjustment (signed:
-- the order's commission re-decided because the sales its incentive rests on changed).
-- Other migrations may add kinds of their own: the allowed list keeps them, and the sign
-- rule (a CASE on kind) gets a branch for each new kind ahead of its others.
DO $$
DECLARE
    found   record;
    kinds   text[];
    patched text;
    done    integer := 0;
BEGIN
    FOR found IN
        SELECT conname, pg_get_constraintdef(oid) AS def
        FROM pg_constraint WHERE conrelid = 'ledger'::regclass AND contype = 'c'
    LOOP
        IF found.def ~ '^CHECK \(\(kind = ANY \(ARRAY\[' THEN
            SELECT array_agg(m[1]) INTO kinds
            FROM regexp_matches(found.def, '''([a-z_]+)''::text', 'g') AS m;
            kinds := kinds || ARRAY['partial_refund', 'incentive_adjustment'];
            EXECUTE format('ALTER TABLE ledger DROP CONSTRAINT %I', found.conname);
            EXECUTE format('ALTER TABLE ledger ADD CONSTRAINT %I CHECK (kind IN (%s))',
                found.conname,
                (SELECT string_agg(quote_literal(k), ', ') FROM unnest(kinds) AS k));
            done := done + 1;
        ELSIF found.def ~ 'CASE kind' THEN
            patched := regexp_replace(found.def, 'CASE kind',
                'CASE kind WHEN ''partial_refund'' THEN amount <= 0 AND order_id IS NOT NULL '
                'AND period_start IS NOT NULL WHEN ''incentive_adjustment'' THEN order_id '
                'IS NOT NULL AND period_start IS NOT NULL AND plan_from IS NOT NULL');
            EXECUTE format('ALTER TABLE ledger DROP CONSTRAINT %I', found.conname);
            EXECUTE format('ALTER TABLE ledger ADD CONSTRAINT %I %s', found.conname, patched);
            done := done + 1;
        END IF;
    END LOOP;
    IF done <> 2 THEN
        RAISE EXCEPTION 'expected the ledger''s kind list and sign rule, found % of them', done;
    END IF;
END;
$$;
-- An order's entries, oldest first: what it has been credited so far.
CREATE INDEX ledger_order ON ledger (order_id, id) WHERE order_id IS NOT NULL;

-- 4. The incentive (Table 2 bonus) decided for the orders a publisher placed in a period,
-- and the sales of the period before it that decided it. A close re-decides it whenever
-- those sales have changed since (a refund, a partial refund, a late completion) and posts
-- incentive_adjustment entries for the orders already credited. Updated in place: the
-- ledger keeps the history.
CREATE TABLE period_incentives (
    publisher_id    bigint NOT NULL REFERENCES publishers (id),
    period_start    date NOT NULL CHECK (extract(day FROM period_start) = 10),
    previous_sales  numeric(20, 2) NOT NULL,
    bonus           numeric NOT NULL CHECK (bonus BETWEEN 0 AND 100),  -- percentage points
    decided_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (publisher_id, period_start)
);
-- The decisions behind the credits made before this migration, as the credits state them.
INSERT INTO period_incentives (publisher_id, period_start, previous_sales, bonus)
SELECT DISTINCT ON (publisher_id, placed) publisher_id, placed,
       (detail ->> 'previous_sales')::numeric, (detail ->> 'bonus')::numeric
FROM (SELECT publisher_id, id, detail,
             to_date((detail ->> 'placed_in') || '-10', 'YYYY-MM-DD') AS placed
      FROM ledger
      WHERE kind = 'credit' AND detail ? 'placed_in' AND detail ? 'bonus'
        AND detail ? 'previous_sales') AS credits
ORDER BY publisher_id, placed, id DESC;
