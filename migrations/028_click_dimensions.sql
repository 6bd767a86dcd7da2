-- Traffic dimensions of a click (issue 19), resolved by the flusher and stored with the click:
-- country (ISO 3166-1 alpha-2) and ASN from the client address, device type, browser and OS
-- (family and major version) from the user agent, the referer's host and Accept-Language's
-- first language. All nullable: NULL is "unknown", which is what every click stored before
-- this migration shows until `python -m app.cli backfill-dimensions` fills it.
--
-- ALTER TABLE on the partitioned parent adds the columns to every partition, the default
-- one included; adding a nullable column without a default rewrites no row. Partitions made
-- later get them too: ensure_click_partition() (002) creates each one LIKE clicks, i.e. with
-- the parent's columns of the day it runs, and its INSERT ... SELECT * from the default
-- partition matches because that partition got the same columns in the same order here.
-- asn is bigint: an ASN is a 32-bit unsigned number (up to 4294967295), beyond integer.

ALTER TABLE clicks
    ADD COLUMN country        char(2),
    ADD COLUMN asn            bigint,
    ADD COLUMN device         text,
    ADD COLUMN browser        text,
    ADD COLUMN browser_major  integer,
    ADD COLUMN os             text,
    ADD COLUMN os_major       integer,
    ADD COLUMN referrer_host  text,
    ADD COLUMN language       text;
