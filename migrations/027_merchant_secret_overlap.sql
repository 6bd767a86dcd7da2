-- A merchant's postback secret rotated with an overlap: the secret it replaced keeps being
-- accepted until ``previous_secret_expires_at`` (a rotation without an overlap clears both),
-- so the merchant can switch its signing key without losing postbacks in between.

ALTER TABLE merchants
    ADD COLUMN previous_secret            text CHECK (length(previous_secret) >= 32),
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD CONSTRAINT merchants_previous_secret_expiry
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL));
