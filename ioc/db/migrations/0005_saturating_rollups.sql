-- Saturating casts for rollup sums and counts (issue: ingestion that no record can stop).
-- Every raw value is bounded by its message schema so that it fits its column, but a sum
-- over a minute or over a unit's devices has no such bound: 512 interface-counter reports of
-- one node in one minute, each with 2^53 errors, would overflow bigint and stop the rollups
-- of that minute for good. The rollups therefore clamp what they store to the column's range
-- (a saturated figure is still "more than anyone can act on"); SQL functions that the planner
-- inlines, so the cost is a comparison per group.
CREATE FUNCTION sat_int4(x numeric) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN least(greatest(x, -2147483648), 2147483647)::integer;

CREATE FUNCTION sat_int8(x numeric) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN least(greatest(x, -9223372036854775808), 9223372036854775807)::bigint;

CREATE FUNCTION sat_real(x double precision) RETURNS real
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN least(greatest(x, -3.4e38), 3.4e38)::real;
