-- Raw tables: one B-tree per row instead of two. 0002 gave each raw hypertable a primary key
-- (device_id, seq, ts) and TimescaleDB added its default (ts DESC) index, so every stored
-- event updated two indexes on the hottest write path. Every query of the raw tables filters
-- on time (rollup recomputation per minute, dashboard tables with $__timeFilter), so one key
-- that starts with ts serves them all and still rejects replays (docs/performance.md).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['raw_camera', 'raw_telehealth', 'raw_netnode'] LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t, t || '_pkey');
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (ts, device_id, seq)', t);
        EXECUTE format('DROP INDEX IF EXISTS %I', t || '_ts_idx');
    END LOOP;
END
$$;
