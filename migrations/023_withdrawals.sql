-- Withdrawals get a lifecycle: requested -> approved -> paid, or requested | approved ->
-- rejected (app/money/withdrawal_rules.py). Each step keeps when it happened and who made it:
-- an API key ('key:<id>') or the operator CLI ('cli').

ALTER TABLE withdrawals DROP CONSTRAINT withdrawals_status_check;
ALTER TABLE withdrawals
    ADD CONSTRAINT withdrawals_status_check
        CHECK (status IN ('requested', 'approved', 'paid', 'rejected')),
    ADD COLUMN requested_by       text,  -- NULL for withdrawals made before this migration
    ADD COLUMN approved_at        timestamptz,
    ADD COLUMN approved_by        text,
    ADD COLUMN paid_at            timestamptz,
    ADD COLUMN paid_by            text,
    ADD COLUMN payment_reference  text,
    ADD COLUMN rejected_at        timestamptz,
    ADD COLUMN rejected_by        text,
    ADD COLUMN reject_reason      text,
    ADD CONSTRAINT withdrawals_steps CHECK (
        (approved_at IS NULL) = (approved_by IS NULL)
        AND (paid_at IS NULL) = (paid_by IS NULL)
        AND (paid_at IS NULL) = (payment_reference IS NULL)
        AND (rejected_at IS NULL) = (rejected_by IS NULL)
        AND (rejected_at IS NULL) = (reject_reason IS NULL)
        AND CASE status
            WHEN 'requested' THEN approved_at IS NULL AND paid_at IS NULL AND rejected_at IS NULL
            WHEN 'approved' THEN approved_at IS NOT NULL AND paid_at IS NULL
                                 AND rejected_at IS NULL
            WHEN 'paid' THEN approved_at IS NOT NULL AND paid_at IS NOT NULL
                             AND rejected_at IS NULL
            ELSE rejected_at IS NOT NULL AND paid_at IS NULL
        END);
-- The operators' queue: withdrawals still to approve or to pay.
CREATE INDEX withdrawals_open ON withdrawals (id) WHERE status IN ('requested', 'approved');

-- Two ledger kinds, both >= 0: a rejected withdrawal's payout and fee given back. With
-- ledger_one_per_withdrawal (withdrawal_id, kind) each is given back at most once.
-- Other migrations may have added kinds of their own: the allowed list keeps them, and the
-- sign rule (a CASE on kind) gets a branch for each new kind ahead of its others.
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
            kinds := kinds || ARRAY['withdrawal_reversal', 'fee_reversal'];
            EXECUTE format('ALTER TABLE ledger DROP CONSTRAINT %I', found.conname);
            EXECUTE format('ALTER TABLE ledger ADD CONSTRAINT %I CHECK (kind IN (%s))',
                found.conname,
                (SELECT string_agg(quote_literal(k), ', ') FROM unnest(kinds) AS k));
            done := done + 1;
        ELSIF found.def ~ 'CASE kind' THEN
            patched := regexp_replace(found.def, 'CASE kind',
                'CASE kind WHEN ''withdrawal_reversal'' THEN amount >= 0 AND withdrawal_id '
                'IS NOT NULL WHEN ''fee_reversal'' THEN amount >= 0 AND withdrawal_id IS NOT NULL');
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
