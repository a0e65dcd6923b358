-- Saturating casts for rollup sums, counts and averages (issue: ingestion that no record can
-- stop). Every raw value is bounded by its message schema so that it fits its column, but a
-- sum over a minute or over a unit's devices has no such bound: 512 interface-counter reports
-- of one node in one minute, each with 2^53 errors, would overflow bigint and stop the rollups
-- of that minute for good. Likewise a double that rounds to 0 as real is an underflow error
-- (SQLSTATE 22003): one tiny but valid value (fps = 1e-45) would make its minute impossible
-- to roll up. The rollups therefore clamp what they store to the column's range and flush
-- magnitudes below float4's smallest normal to zero. CASE rather than LEAST/GREATEST, which
-- ignore NULL (a camera minute without traffic reports must stay NULL, not -2^63). SQL
-- functions that the planner inlines: a comparison per group.
CREATE FUNCTION sat_int4(x numeric) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (CASE WHEN x > 2147483647 THEN 2147483647
                 WHEN x < -2147483648 THEN -2147483648
                 ELSE x END)::integer;

CREATE FUNCTION sat_int8(x numeric) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (CASE WHEN x > 9223372036854775807 THEN 9223372036854775807
                 WHEN x < -9223372036854775808 THEN -9223372036854775808
                 ELSE x END)::bigint;

CREATE FUNCTION sat_real(x double precision) RETURNS real
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (CASE WHEN x > 3.4e38 THEN 3.4e38
                 WHEN x < -3.4e38 THEN -3.4e38
                 WHEN abs(x) < 1.1754944e-38 THEN 0
                 ELSE x END)::real;
