-- History behind the dashboards (issue 18 item 5, docs/history.md): hourly and daily rollup
-- tiers per device and per unit, rolled by the shard leader from the tier below (hours from
-- the 1-minute rollups, days from the hours) and kept longer than the 1-minute tier, which
-- shrinks to what the last day or two of dashboards need. The Apache-2 TimescaleDB has no
-- continuous aggregates, and the project keeps one mechanism on both licences (its own
-- tables, as for the 1-minute rollups: ioc.streams.history).

-- The hourly and daily views of 0002 and of every feed declared later read the 1-minute
-- rollups, which will no longer hold 90 days: the tables below take their names. CASCADE:
-- the provinces' views over them, which every migration run re-makes (ioc.db.provinces).
DO $$
DECLARE
    v text;
BEGIN
    FOR v IN
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
          AND c.relkind = 'v'
          AND c.relname ~ '^unit_rollup_[a-z][a-z0-9_]*_1[hd]$'
    LOOP
        EXECUTE format('DROP VIEW %I CASCADE', v);
    END LOOP;
END
$$;

-- Hours and days to (re)roll. The 1-minute round marks the hour of every minute it
-- recomputed, the history round the day of every hour it rolled; a mark that is marked again
-- while it is rolled gets a new version, and the round deletes only the version it rolled, so
-- no change is lost (ioc.streams.history). feed: a feed's name.
CREATE TABLE history_dirty (
    feed      text        NOT NULL,
    tier      text        NOT NULL CHECK (tier IN ('1h', '1d')),
    bucket    timestamptz NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    version   bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (feed, tier, bucket)
);
CREATE INDEX history_dirty_marked_idx ON history_dirty (marked_at);

-- Each tier's bucket width and how long the workers keep it (the retention round writes what
-- it enforces; NULL: kept for ever). Read by rollup_tier() below.
CREATE TABLE rollup_tiers (
    tier       text        PRIMARY KEY,
    width      interval    NOT NULL,
    kept       interval,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rollup_tiers (tier, width, kept) VALUES
    ('1m', interval '1 minute', interval '2 days'),
    ('1h', interval '1 hour', interval '90 days'),
    ('1d', interval '1 day', interval '400 days');

-- Which tier a dashboard query over [t0, t1) reads (ioc.contract.history.choose_tier, the
-- same rule in Python; a unit test holds this text to it).
CREATE OR REPLACE FUNCTION rollup_tier(
    t0 timestamptz, t1 timestamptz, step interval DEFAULT NULL) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
WITH span AS (
    SELECT greatest(t1 - t0, interval '0') AS s
), wanted AS (
    SELECT greatest(coalesce(step, s / 24), s / 1500) AS w FROM span
), holding AS (
    SELECT tier, width FROM rollup_tiers
    WHERE kept IS NULL OR t0 >= now() - kept - interval '1 hour'
), pool AS (
    SELECT tier, width FROM holding
    UNION ALL
    (SELECT tier, width FROM rollup_tiers WHERE NOT EXISTS (SELECT FROM holding)
     ORDER BY kept DESC NULLS FIRST LIMIT 1)
)
SELECT tier FROM pool, wanted
ORDER BY width <= w DESC, CASE WHEN width <= w THEN width END DESC NULLS LAST, width
LIMIT 1
$$;

-- The built-in feeds' hourly and daily tiers (ioc.db.feeds.tier_ddl generates the same for
-- feeds declared without a migration): the 1-minute table's columns, and `minutes`, the
-- number of 1-minute rows the bucket was rolled from. Daily buckets start at midnight,
-- Vietnam time.
CREATE TABLE rollup_camera_1h (
    bucket            timestamptz NOT NULL,
    device_id         text NOT NULL,
    minutes           integer NOT NULL,
    reports           integer NOT NULL,
    heartbeats        integer NOT NULL,
    fps_avg           real,
    fps_min           real,
    bitrate_kbps_avg  real,
    dropped_frames    bigint,
    frozen_samples    integer,
    black_samples     integer,
    vehicles          bigint,
    speed_kmh_avg     real,
    occupancy_pct_avg real,
    occupancy_pct_max real,
    incidents_opened  integer,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('rollup_camera_1h', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE unit_rollup_camera_1h (
    bucket            timestamptz NOT NULL,
    unit_code         text NOT NULL,
    level             smallint NOT NULL,
    minutes           integer NOT NULL,
    cameras           integer NOT NULL,
    cameras_reporting integer NOT NULL,
    fps_avg           real,
    frozen_cameras    integer,
    vehicles          bigint,
    speed_kmh_avg     real,
    occupancy_pct_avg real,
    incidents_opened  integer,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_camera_1h', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE rollup_camera_1d (
    bucket            timestamptz NOT NULL,
    device_id         text NOT NULL,
    minutes           integer NOT NULL,
    reports           integer NOT NULL,
    heartbeats        integer NOT NULL,
    fps_avg           real,
    fps_min           real,
    bitrate_kbps_avg  real,
    dropped_frames    bigint,
    frozen_samples    integer,
    black_samples     integer,
    vehicles          bigint,
    speed_kmh_avg     real,
    occupancy_pct_avg real,
    occupancy_pct_max real,
    incidents_opened  integer,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('rollup_camera_1d', 'bucket', chunk_time_interval => interval '30 days');

CREATE TABLE unit_rollup_camera_1d (
    bucket            timestamptz NOT NULL,
    unit_code         text NOT NULL,
    level             smallint NOT NULL,
    minutes           integer NOT NULL,
    cameras           integer NOT NULL,
    cameras_reporting integer NOT NULL,
    fps_avg           real,
    frozen_cameras    integer,
    vehicles          bigint,
    speed_kmh_avg     real,
    occupancy_pct_avg real,
    incidents_opened  integer,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_camera_1d', 'bucket', chunk_time_interval => interval '30 days');

CREATE TABLE rollup_telehealth_1h (
    bucket           timestamptz NOT NULL,
    device_id        text NOT NULL,
    minutes          integer NOT NULL,
    reports          integer NOT NULL,
    heartbeats       integer NOT NULL,
    waiting_max      integer,
    sessions_active  integer,
    sessions_started integer,
    sessions_ended   integer,
    sessions_dropped integer,
    quality_samples  integer,
    rtt_ms_avg       real,
    rtt_ms_p95       real,
    jitter_ms_avg    real,
    jitter_ms_p95    real,
    loss_pct_avg     real,
    loss_pct_max     real,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('rollup_telehealth_1h', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE unit_rollup_telehealth_1h (
    bucket             timestamptz NOT NULL,
    unit_code          text NOT NULL,
    level              smallint NOT NULL,
    minutes            integer NOT NULL,
    stations           integer NOT NULL,
    stations_reporting integer NOT NULL,
    sessions_active    integer,
    sessions_started   integer,
    sessions_dropped   integer,
    waiting            integer,
    rtt_ms_p95         real,
    jitter_ms_p95      real,
    loss_pct_avg       real,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_telehealth_1h', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE rollup_telehealth_1d (
    bucket           timestamptz NOT NULL,
    device_id        text NOT NULL,
    minutes          integer NOT NULL,
    reports          integer NOT NULL,
    heartbeats       integer NOT NULL,
    waiting_max      integer,
    sessions_active  integer,
    sessions_started integer,
    sessions_ended   integer,
    sessions_dropped integer,
    quality_samples  integer,
    rtt_ms_avg       real,
    rtt_ms_p95       real,
    jitter_ms_avg    real,
    jitter_ms_p95    real,
    loss_pct_avg     real,
    loss_pct_max     real,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('rollup_telehealth_1d', 'bucket', chunk_time_interval => interval '30 days');

CREATE TABLE unit_rollup_telehealth_1d (
    bucket             timestamptz NOT NULL,
    unit_code          text NOT NULL,
    level              smallint NOT NULL,
    minutes            integer NOT NULL,
    stations           integer NOT NULL,
    stations_reporting integer NOT NULL,
    sessions_active    integer,
    sessions_started   integer,
    sessions_dropped   integer,
    waiting            integer,
    rtt_ms_p95         real,
    jitter_ms_p95      real,
    loss_pct_avg       real,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_telehealth_1d', 'bucket', chunk_time_interval => interval '30 days');

CREATE TABLE rollup_netnode_1h (
    bucket       timestamptz NOT NULL,
    device_id    text NOT NULL,
    minutes      integer NOT NULL,
    reports      integer NOT NULL,
    probes       integer NOT NULL,
    probes_ok    integer NOT NULL,
    rtt_ms_avg   real,
    rtt_ms_p95   real,
    loss_pct_avg real,
    loss_pct_max real,
    in_bps_avg   double precision,
    out_bps_avg  double precision,
    util_pct_max real,
    errors       bigint,
    link_changes integer,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('rollup_netnode_1h', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE unit_rollup_netnode_1h (
    bucket          timestamptz NOT NULL,
    unit_code       text NOT NULL,
    level           smallint NOT NULL,
    minutes         integer NOT NULL,
    nodes           integer NOT NULL,
    nodes_reporting integer NOT NULL,
    nodes_reachable integer NOT NULL,
    rtt_ms_avg      real,
    rtt_ms_p95      real,
    loss_pct_avg    real,
    in_bps          double precision,
    out_bps         double precision,
    errors          bigint,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_netnode_1h', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE rollup_netnode_1d (
    bucket       timestamptz NOT NULL,
    device_id    text NOT NULL,
    minutes      integer NOT NULL,
    reports      integer NOT NULL,
    probes       integer NOT NULL,
    probes_ok    integer NOT NULL,
    rtt_ms_avg   real,
    rtt_ms_p95   real,
    loss_pct_avg real,
    loss_pct_max real,
    in_bps_avg   double precision,
    out_bps_avg  double precision,
    util_pct_max real,
    errors       bigint,
    link_changes integer,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('rollup_netnode_1d', 'bucket', chunk_time_interval => interval '30 days');

CREATE TABLE unit_rollup_netnode_1d (
    bucket          timestamptz NOT NULL,
    unit_code       text NOT NULL,
    level           smallint NOT NULL,
    minutes         integer NOT NULL,
    nodes           integer NOT NULL,
    nodes_reporting integer NOT NULL,
    nodes_reachable integer NOT NULL,
    rtt_ms_avg      real,
    rtt_ms_p95      real,
    loss_pct_avg    real,
    in_bps          double precision,
    out_bps         double precision,
    errors          bigint,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_netnode_1d', 'bucket', chunk_time_interval => interval '30 days');

-- The 1-minute tier is kept for days, not months: day-long chunks, so retention drops it a
-- day at a time (new chunks only; the ones there keep their 7 days).
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT hypertable_name FROM timescaledb_information.hypertables
        WHERE hypertable_schema = current_schema()
          AND hypertable_name ~ '^(unit_)?rollup_[a-z][a-z0-9_]*_1m$'
    LOOP
        PERFORM set_chunk_time_interval(format('%I', t)::regclass, interval '1 day');
    END LOOP;
END
$$;

-- An upgrade: the 1-minute rows already stored are the only history there is. Every hour they
-- span is marked for rolling, and the 1-minute tier counts as kept back to the oldest of
-- them, so panels keep reading it there and the retention round (which keeps the 1-minute
-- tier while hours older than its days wait to be rolled: ioc.streams.rollups) drops
-- nothing before its hour is rolled. Hours from min to max by the time index, not a scan.
DO $$
DECLARE
    t text;
    first_at timestamptz;
    last_at timestamptz;
    oldest timestamptz;
BEGIN
    FOR t IN
        SELECT hypertable_name FROM timescaledb_information.hypertables
        WHERE hypertable_schema = current_schema()
          AND hypertable_name ~ '^rollup_[a-z][a-z0-9_]*_1m$'
    LOOP
        EXECUTE format('SELECT min(bucket), max(bucket) FROM %I', t) INTO first_at, last_at;
        CONTINUE WHEN first_at IS NULL;
        INSERT INTO history_dirty (feed, tier, bucket)
        SELECT substring(t FROM '^rollup_(.*)_1m$'), '1h', h
        FROM generate_series(time_bucket(interval '1 hour', first_at),
                             time_bucket(interval '1 hour', last_at), interval '1 hour') AS h
        ON CONFLICT DO NOTHING;
        oldest := least(oldest, first_at);
    END LOOP;
    IF oldest IS NOT NULL THEN
        UPDATE rollup_tiers SET kept = greatest(kept, date_trunc('day', now() - oldest)
                                                      + interval '1 day')
        WHERE tier = '1m';
    END IF;
END
$$;
