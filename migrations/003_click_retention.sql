-- Retention: drop the day partitions of clicks older than a cutoff day, and old rows that
-- sit in the default partition. Returns how many partitions were dropped.
CREATE FUNCTION drop_click_partitions_before(cutoff date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('clicktrack.partition'));
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'clicks'::regclass
          AND c.relname ~ '^clicks_[0-9]{8}$'
          AND to_date(substr(c.relname, 8), 'YYYYMMDD') < cutoff
    LOOP
        EXECUTE format('ALTER TABLE clicks DETACH PARTITION %I', part.relname);
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM clicks_default WHERE ts < (cutoff::timestamp AT TIME ZONE 'UTC');
    RETURN dropped;
END;
$$;
