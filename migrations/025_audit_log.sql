-- The audit log: every administrative change (who, what, when, the target's state before and
-- after), appended in the same transaction as the change, never updated or deleted by the
-- application. ``actor`` is 'key:<id>' for an API key, 'cli:<os user>' for the CLI,
-- 'dashboard:key:<id>' for the dashboard; ``actor_role`` and ``publisher_id`` say whose it is.

CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    actor_role    text NOT NULL CHECK (actor_role IN ('admin', 'publisher', 'operator')),
    publisher_id  bigint,
    action        text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_kind   text NOT NULL CHECK (length(target_kind) BETWEEN 1 AND 40),
    target_id     text NOT NULL CHECK (length(target_id) BETWEEN 1 AND 200),
    before        jsonb,
    after         jsonb
);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, id);
CREATE INDEX audit_log_publisher ON audit_log (publisher_id, id) WHERE publisher_id IS NOT NULL;
