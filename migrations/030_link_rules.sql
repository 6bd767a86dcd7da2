-- A link's rules (issue 19): an ordered list of conditions on the click (country, device
-- type, OS, language, a query parameter), each with a destination of its own; the first that
-- matches chooses where the click goes (app/links/rules.py holds their rules and shape).
-- '[]' is "no rules": the link's own destination, as every link before this migration.
--
-- clicks.rule: which rule chose the click's destination, 1-based (its position in the
-- link's list when the click was made); NULL: none matched, the link's own destination, and
-- every click stored before this migration. No CHECK: the flusher refuses a value out of
-- range as a dead letter (app/flusher/sink.py), where a failed CHECK would fail its batch.
-- ALTER TABLE on the partitioned parent adds the column to every partition (see 028); a
-- nullable column without a default, and a constant default on links, rewrite no row.

ALTER TABLE links
    ADD COLUMN rules jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(rules) = 'array');

ALTER TABLE clicks
    ADD COLUMN rule smallint;
