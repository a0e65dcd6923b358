-- History across the mergers (issue 17): since 1 July 2025 most provinces and communes were
-- merged (Yen Bai into Lao Cai, for one). Rollups, state intervals and incidents keep the unit
-- code of their day; a unit that ended (`valid_to`, its last day, Vietnam time) in a merger
-- names the unit it was merged into, so a period that spans the reform can be shown rolled
-- into today's units (join `unit_lineage`, or call `current_unit`) or as it was (the stored
-- codes). The scenario refuses a merger into the unit itself, into a unit that ended too, or
-- without `valid_to` (ioc.contract.topology.merger_problem); the walk below still stops after
-- 32 steps, for units an older scenario left behind (units are never deleted).
ALTER TABLE admin_units
    ADD COLUMN merged_into text REFERENCES admin_units (code) DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT admin_units_merged_into_other CHECK (merged_into <> code),
    ADD CONSTRAINT admin_units_merged_into_ended
        CHECK (merged_into IS NULL OR valid_to IS NOT NULL);
CREATE INDEX admin_units_merged_into_idx ON admin_units (merged_into)
    WHERE merged_into IS NOT NULL;

-- Today in Vietnam time: the day units' validity is judged on (ioc.contract.topology.today).
CREATE FUNCTION unit_today() RETURNS date
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date $$;

-- The unit that `unit_code` (old or current) is on `on_day`: follows merged_into from every
-- unit that had ended before that day (Topology.current_unit in Python). An unknown code,
-- and a unit that ended without a successor, map onto themselves.
CREATE FUNCTION current_unit(unit_code text, on_day date DEFAULT unit_today()) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $$
WITH RECURSIVE walk (code, hops) AS (
    SELECT unit_code, 0
    UNION ALL
    SELECT u.merged_into, w.hops + 1
    FROM walk w JOIN admin_units u ON u.code = w.code
    WHERE u.merged_into IS NOT NULL AND u.valid_to < on_day AND w.hops < 32
)
SELECT walk.code FROM walk ORDER BY walk.hops DESC LIMIT 1
$$;

-- Every unit, old or current, with today's unit it maps onto (itself when it is current, or
-- ended without a successor), and how many mergers lie between. Roll history into today's
-- units with `JOIN unit_lineage l ON l.code = r.unit_code ... GROUP BY l.current_code`.
CREATE VIEW unit_lineage AS
WITH RECURSIVE walk (code, current_code, hops) AS (
    SELECT code, code, 0 FROM admin_units
    UNION ALL
    SELECT w.code, u.merged_into, w.hops + 1
    FROM walk w JOIN admin_units u ON u.code = w.current_code
    WHERE u.merged_into IS NOT NULL AND u.valid_to < unit_today() AND w.hops < 32
)
SELECT DISTINCT ON (walk.code) walk.code, walk.current_code, walk.hops AS mergers,
       a.valid_to IS NOT NULL AND a.valid_to < unit_today() AS abolished
FROM walk JOIN admin_units a ON a.code = walk.code
ORDER BY walk.code, walk.hops DESC;
