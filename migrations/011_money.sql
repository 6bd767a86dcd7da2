-- Commission plans, the ledger, balances, withdrawals and closed calculation periods.

-- A plan is data (app/money/plan.py validates it), in force from the start of a calculation
-- period (the 10th) until the next plan's.
CREATE TABLE commission_plans (
    effective_from  date PRIMARY KEY CHECK (extract(day FROM effective_from) = 10),
    name            text NOT NULL,
    body            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE withdrawals (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    publisher_id  bigint NOT NULL REFERENCES publishers (id),
    amount        numeric(14, 2) NOT NULL CHECK (amount > 0),
    fee           numeric(14, 2) NOT NULL CHECK (fee >= 0),
    payout        numeric(14, 2) NOT NULL CHECK (payout > 0 AND payout = amount - fee),
    status        text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested')),
    requested_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX withdrawals_publisher ON withdrawals (publisher_id, id);

-- Append-only: every change of a balance is a row here. Signs: credits >= 0; chargebacks,
-- withdrawals and fees <= 0. effective_at is the end of the closed period for credits and
-- chargebacks (the month the income belongs to) and the request time for withdrawals.
CREATE TABLE ledger (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    publisher_id   bigint NOT NULL REFERENCES publishers (id),
    kind           text NOT NULL CHECK (kind IN ('credit', 'chargeback', 'withdrawal', 'fee')),
    amount         numeric(14, 2) NOT NULL,
    order_id       bigint REFERENCES orders (id),
    withdrawal_id  bigint REFERENCES withdrawals (id),
    period_start   date,
    plan_from      date REFERENCES commission_plans (effective_from),
    effective_at   timestamptz NOT NULL,
    detail         jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (CASE kind
        WHEN 'credit' THEN amount >= 0 AND order_id IS NOT NULL AND period_start IS NOT NULL
                           AND plan_from IS NOT NULL
        WHEN 'chargeback' THEN amount <= 0 AND order_id IS NOT NULL AND period_start IS NOT NULL
        ELSE amount <= 0 AND withdrawal_id IS NOT NULL
    END)
);
-- An order is credited at most once and charged back at most once.
CREATE UNIQUE INDEX ledger_one_credit ON ledger (order_id) WHERE kind = 'credit';
CREATE UNIQUE INDEX ledger_one_chargeback ON ledger (order_id) WHERE kind = 'chargeback';
CREATE UNIQUE INDEX ledger_one_per_withdrawal ON ledger (withdrawal_id, kind)
    WHERE withdrawal_id IS NOT NULL;
CREATE INDEX ledger_publisher ON ledger (publisher_id, id);
CREATE INDEX ledger_publisher_effective ON ledger (publisher_id, effective_at);
CREATE INDEX ledger_plan_from ON ledger (plan_from) WHERE plan_from IS NOT NULL;

-- One row per publisher: its balance, kept equal to the sum of its ledger by the trigger
-- below, and the row a withdrawal or a period close locks (SELECT ... FOR UPDATE) so that
-- two of them for one publisher never interleave.
CREATE TABLE accounts (
    publisher_id  bigint PRIMARY KEY REFERENCES publishers (id),
    balance       numeric(14, 2) NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ledger_to_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO accounts (publisher_id, balance) VALUES (NEW.publisher_id, NEW.amount)
    ON CONFLICT (publisher_id)
    DO UPDATE SET balance = accounts.balance + EXCLUDED.balance, updated_at = now();
    RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_balance AFTER INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_to_balance();

CREATE FUNCTION ledger_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: post a correcting entry instead';
END;
$$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();

-- A calculation period closed for one publisher. sales = the amounts of the orders credited
-- by this close: the "completed sales" on which the next period's incentive (Table 2) rests.
CREATE TABLE period_closes (
    publisher_id         bigint NOT NULL REFERENCES publishers (id),
    period_start         date NOT NULL CHECK (extract(day FROM period_start) = 10),
    sales                numeric(16, 2) NOT NULL,
    credited             numeric(14, 2) NOT NULL,
    charged_back         numeric(14, 2) NOT NULL,
    orders_credited      integer NOT NULL,
    orders_charged_back  integer NOT NULL,
    orders_without_plan  integer NOT NULL,
    closed_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (publisher_id, period_start)
);
