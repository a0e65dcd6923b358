-- The hourly and daily tiers' closed chunks in key order (issue 18 item 5, docs/history.md
-- section 4). The history round writes a tier bucket by bucket, every device's row of an hour
-- (or day) together, so one device's rows of a week lie on as many pages as it has hours:
-- the per-device tables ("worst cameras", "worst nodes"...) and the video-conference bridges'
-- series read one 8 kB page per row (1,113,336 rows, 1,208,125 buffers for a province's
-- cameras over a week of the national history). A chunk rewritten in the order of its key
-- (device_id or unit_code, then bucket) holds each device's rows of the chunk on a few
-- adjacent pages, and the devices of a province next to each other (their ids carry its
-- code).
--
-- CLUSTER needs the chunk's owner, as drop_chunks does (migration 0013), so this function runs
-- as its owner and does only that: on a hypertable of its own schema, one chunk per call (the
-- newest closed one not yet in order), so a call's lock and time stay bounded. CLUSTER holds
-- an exclusive lock on that chunk while it rewrites it: readers of the chunk wait (seconds
-- for a day's chunk, minutes for a national week of camera hours), and it gives up when it
-- cannot have that lock within 5 s, rather than queue every reader behind it. Where the
-- licence has policy jobs, TimescaleDB's reorder policy does the same work (one chunk at a
-- time, its own schedule) and this only registers it (not tested here: the local stack is the
-- Apache-2 edition).
CREATE FUNCTION order_closed_chunk(hypertable regclass, settled interval) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
DECLARE
    chunk regclass;
    chunk_key name;
    key_index text;
BEGIN
    IF NOT EXISTS (
        SELECT FROM timescaledb_information.hypertables h
        WHERE h.hypertable_schema = current_schema()
          AND format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass = hypertable
    ) THEN
        RAISE EXCEPTION '% is not a hypertable of schema %', hypertable, current_schema()
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        SELECT k.relname INTO key_index
        FROM pg_index i JOIN pg_class k ON k.oid = i.indexrelid
        WHERE i.indrelid = hypertable AND i.indisprimary;
        PERFORM add_reorder_policy(hypertable, key_index, if_not_exists => true);
        RETURN 'policy';
    END IF;
    -- the newest chunk that ended at least `settled` ago and whose key is not yet in order
    SELECT format('%I.%I', c.chunk_schema, c.chunk_name)::regclass INTO chunk
    FROM timescaledb_information.chunks c
    WHERE c.hypertable_schema = current_schema()
      AND format('%I.%I', c.hypertable_schema, c.hypertable_name)::regclass = hypertable
      AND c.range_end < now() - settled
      AND NOT EXISTS (
          SELECT FROM pg_index i
          WHERE i.indrelid = format('%I.%I', c.chunk_schema, c.chunk_name)::regclass
            AND i.indisclustered)
    ORDER BY c.range_end DESC
    LIMIT 1;
    IF chunk IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT k.relname INTO chunk_key
    FROM pg_index i JOIN pg_class k ON k.oid = i.indexrelid
    WHERE i.indrelid = chunk AND i.indisprimary;
    IF chunk_key IS NULL THEN
        RAISE EXCEPTION 'chunk % of % has no primary key to order it by', chunk, hypertable
            USING ERRCODE = 'invalid_table_definition';
    END IF;
    -- a long read of the chunk would make CLUSTER wait, and every reader queue behind it:
    -- give up after a few seconds (lock_not_available), the next round tries again
    PERFORM set_config('lock_timeout', '5s', true);
    EXECUTE format('CLUSTER %s USING %I', chunk, chunk_key);
    EXECUTE format('ANALYZE %s', chunk);
    RETURN chunk::text;
END $$;

REVOKE ALL ON FUNCTION order_closed_chunk(regclass, interval) FROM PUBLIC;
