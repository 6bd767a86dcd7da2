-- API keys get an optional expiry and a last-use time (written at most once a minute per
-- key), and a rotated key names the key that replaced it.

ALTER TABLE api_keys
    ADD COLUMN expires_at    timestamptz,
    ADD COLUMN last_used_at  timestamptz,
    ADD COLUMN replaced_by   bigint REFERENCES api_keys (id);

CREATE INDEX api_keys_publisher_id ON api_keys (publisher_id, id) WHERE publisher_id IS NOT NULL;
