-- Publishers, their API keys, and their links.

CREATE TABLE publishers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL DEFAULT 'publisher' CHECK (kind IN ('publisher', 'network')),
    network_id  bigint REFERENCES publishers (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX publishers_network_id ON publishers (network_id) WHERE network_id IS NOT NULL;

-- Only a SHA-256 of each key is kept; the key itself is shown once, at creation.
CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_hash      bytea NOT NULL UNIQUE,
    key_prefix    text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'publisher')),
    publisher_id  bigint REFERENCES publishers (id),
    name          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CHECK ((role = 'admin') = (publisher_id IS NULL))
);

CREATE TABLE links (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9]{1,32}$'),
    publisher_id  bigint NOT NULL REFERENCES publishers (id),
    destination   text NOT NULL,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX links_publisher_id_id ON links (publisher_id, id);
