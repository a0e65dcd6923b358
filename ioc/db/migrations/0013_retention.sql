-- Retention as the runtime role (issue 18 item 5): drop_chunks and add_retention_policy need
-- the hypertable's owner, and the workers run as a role that owns nothing, so every
-- retention round failed ("must be owner of hypertable") and the database grew without
-- bound. This function runs as its owner (SECURITY DEFINER) and only does retention: on a
-- hypertable of its own schema, keeping at least a day. EXECUTE is revoked from PUBLIC
-- (provinces' viewers must not call it) and granted to the runtime role with the other
-- grants that follow every migration (ioc.db.migrate: EXECUTE on the schema's functions).
CREATE FUNCTION drop_old_chunks(hypertable regclass, keep interval) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
BEGIN
    IF keep < interval '1 day' THEN
        RAISE EXCEPTION 'retention keeps at least one day, not %', keep
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (
        SELECT FROM timescaledb_information.hypertables h
        WHERE h.hypertable_schema = current_schema()
          AND format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass = hypertable
    ) THEN
        RAISE EXCEPTION '% is not a hypertable of schema %', hypertable, current_schema()
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        PERFORM add_retention_policy(hypertable, keep, if_not_exists => true);
        RETURN 'policy';
    END IF;
    PERFORM drop_chunks(hypertable, older_than => keep);
    RETURN 'drop_chunks';
END $$;

REVOKE ALL ON FUNCTION drop_old_chunks(regclass, interval) FROM PUBLIC;
