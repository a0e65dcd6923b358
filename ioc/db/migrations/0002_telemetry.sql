-- Raw telemetry per feed (for drill-down), one hypertable each. The primary key includes the
-- time column (a hypertable requirement) and the per-device sequence number, so a replayed or
-- duplicated message is the same row: writers use INSERT ... ON CONFLICT DO NOTHING.
-- ingested_at records when the row landed, for freshness and end-to-end latency.

CREATE TABLE raw_camera (
    ts             timestamptz NOT NULL,
    device_id      text        NOT NULL,
    seq            bigint      NOT NULL,
    kind           text        NOT NULL,
    status         text,
    uptime_s       bigint,
    fps            real,
    bitrate_kbps   real,
    dropped_frames integer,
    frozen         boolean,
    black          boolean,
    interval_s     integer,
    vehicles       integer,
    mean_speed_kmh real,
    occupancy_pct  real,
    incident_id    text,
    incident       text,
    incident_state text,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq, ts)
);
SELECT create_hypertable('raw_camera', 'ts', chunk_time_interval => interval '6 hours');

CREATE TABLE raw_telehealth (
    ts               timestamptz NOT NULL,
    device_id        text        NOT NULL,
    seq              bigint      NOT NULL,
    kind             text        NOT NULL,
    status           text,
    waiting_patients integer,
    active_sessions  integer,
    session_id       text,
    event            text,
    peer_site        text,
    reason           text,
    rtt_ms           real,
    jitter_ms        real,
    loss_pct         real,
    video_height     integer,
    ingested_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq, ts)
);
SELECT create_hypertable('raw_telehealth', 'ts', chunk_time_interval => interval '6 hours');

CREATE TABLE raw_netnode (
    ts           timestamptz NOT NULL,
    device_id    text        NOT NULL,
    seq          bigint      NOT NULL,
    kind         text        NOT NULL,
    reachable    boolean,
    rtt_ms       real,
    loss_pct     real,
    interface    text,
    interval_s   integer,
    in_bps       double precision,
    out_bps      double precision,
    in_errors    bigint,
    out_errors   bigint,
    capacity_bps double precision,
    link_state   text,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq, ts)
);
SELECT create_hypertable('raw_netnode', 'ts', chunk_time_interval => interval '6 hours');

-- Minutes whose rollups must be recomputed. Raw writers mark them in the same transaction
-- as the rows, so a crash can never leave a stored minute without its rollup.
CREATE TABLE rollup_dirty (
    feed      text        NOT NULL,
    bucket    timestamptz NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, bucket)
);

-- 1-minute rollups per device.
CREATE TABLE rollup_camera_1m (
    bucket            timestamptz NOT NULL,
    device_id         text        NOT NULL,
    reports           integer     NOT NULL,
    heartbeats        integer     NOT NULL,
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
SELECT create_hypertable('rollup_camera_1m', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE rollup_telehealth_1m (
    bucket           timestamptz NOT NULL,
    device_id        text        NOT NULL,
    reports          integer     NOT NULL,
    heartbeats       integer     NOT NULL,
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
SELECT create_hypertable('rollup_telehealth_1m', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE rollup_netnode_1m (
    bucket        timestamptz NOT NULL,
    device_id     text        NOT NULL,
    reports       integer     NOT NULL,
    probes        integer     NOT NULL,
    probes_ok     integer     NOT NULL,
    rtt_ms_avg    real,
    rtt_ms_p95    real,
    loss_pct_avg  real,
    loss_pct_max  real,
    in_bps_avg    double precision,
    out_bps_avg   double precision,
    util_pct_max  real,
    errors        bigint,
    link_changes  integer,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('rollup_netnode_1m', 'bucket', chunk_time_interval => interval '7 days');

-- 1-minute rollups per administrative unit, at every level (unit_ancestors). Percentiles
-- at unit level are taken over the unit's device-minute values.
CREATE TABLE unit_rollup_camera_1m (
    bucket            timestamptz NOT NULL,
    unit_code         text        NOT NULL,
    level             smallint    NOT NULL,
    cameras           integer     NOT NULL,
    cameras_reporting integer     NOT NULL,
    fps_avg           real,
    frozen_cameras    integer,
    vehicles          bigint,
    speed_kmh_avg     real,
    occupancy_pct_avg real,
    incidents_opened  integer,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_camera_1m', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE unit_rollup_telehealth_1m (
    bucket             timestamptz NOT NULL,
    unit_code          text        NOT NULL,
    level              smallint    NOT NULL,
    stations           integer     NOT NULL,
    stations_reporting integer     NOT NULL,
    sessions_active    integer,
    sessions_started   integer,
    sessions_dropped   integer,
    waiting            integer,
    rtt_ms_p95         real,
    jitter_ms_p95      real,
    loss_pct_avg       real,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_telehealth_1m', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE unit_rollup_netnode_1m (
    bucket          timestamptz NOT NULL,
    unit_code       text        NOT NULL,
    level           smallint    NOT NULL,
    nodes           integer     NOT NULL,
    nodes_reporting integer     NOT NULL,
    nodes_reachable integer     NOT NULL,
    rtt_ms_avg      real,
    rtt_ms_p95      real,
    loss_pct_avg    real,
    in_bps          double precision,
    out_bps         double precision,
    errors          bigint,
    PRIMARY KEY (unit_code, bucket)
);
SELECT create_hypertable('unit_rollup_netnode_1m', 'bucket', chunk_time_interval => interval '7 days');

-- Hourly and daily views on the unit rollups. (Where the TimescaleDB licence allows,
-- ioc.db.features replaces nothing here but adds continuous aggregates beside them.)
CREATE VIEW unit_rollup_camera_1h AS
SELECT time_bucket('1 hour', bucket) AS bucket, unit_code, level,
       max(cameras) AS cameras, avg(cameras_reporting)::real AS cameras_reporting_avg,
       avg(fps_avg)::real AS fps_avg, sum(vehicles) AS vehicles,
       avg(speed_kmh_avg)::real AS speed_kmh_avg, sum(incidents_opened) AS incidents_opened
FROM unit_rollup_camera_1m GROUP BY 1, 2, 3;
CREATE VIEW unit_rollup_camera_1d AS
SELECT time_bucket('1 day', bucket) AS bucket, unit_code, level,
       max(cameras) AS cameras, avg(cameras_reporting)::real AS cameras_reporting_avg,
       avg(fps_avg)::real AS fps_avg, sum(vehicles) AS vehicles,
       avg(speed_kmh_avg)::real AS speed_kmh_avg, sum(incidents_opened) AS incidents_opened
FROM unit_rollup_camera_1m GROUP BY 1, 2, 3;
CREATE VIEW unit_rollup_telehealth_1h AS
SELECT time_bucket('1 hour', bucket) AS bucket, unit_code, level,
       max(stations) AS stations, sum(sessions_started) AS sessions_started,
       sum(sessions_dropped) AS sessions_dropped, max(rtt_ms_p95) AS rtt_ms_p95,
       avg(loss_pct_avg)::real AS loss_pct_avg
FROM unit_rollup_telehealth_1m GROUP BY 1, 2, 3;
CREATE VIEW unit_rollup_telehealth_1d AS
SELECT time_bucket('1 day', bucket) AS bucket, unit_code, level,
       max(stations) AS stations, sum(sessions_started) AS sessions_started,
       sum(sessions_dropped) AS sessions_dropped, max(rtt_ms_p95) AS rtt_ms_p95,
       avg(loss_pct_avg)::real AS loss_pct_avg
FROM unit_rollup_telehealth_1m GROUP BY 1, 2, 3;
CREATE VIEW unit_rollup_netnode_1h AS
SELECT time_bucket('1 hour', bucket) AS bucket, unit_code, level,
       max(nodes) AS nodes, avg(nodes_reachable)::real AS nodes_reachable_avg,
       avg(rtt_ms_avg)::real AS rtt_ms_avg, avg(loss_pct_avg)::real AS loss_pct_avg,
       avg(in_bps) AS in_bps, avg(out_bps) AS out_bps, sum(errors) AS errors
FROM unit_rollup_netnode_1m GROUP BY 1, 2, 3;
CREATE VIEW unit_rollup_netnode_1d AS
SELECT time_bucket('1 day', bucket) AS bucket, unit_code, level,
       max(nodes) AS nodes, avg(nodes_reachable)::real AS nodes_reachable_avg,
       avg(rtt_ms_avg)::real AS rtt_ms_avg, avg(loss_pct_avg)::real AS loss_pct_avg,
       avg(in_bps) AS in_bps, avg(out_bps) AS out_bps, sum(errors) AS errors
FROM unit_rollup_netnode_1m GROUP BY 1, 2, 3;

-- Latest known facts per device, upserted by the writers with every batch (one row per
-- device per batch); the state evaluator reads only this table.
CREATE TABLE device_last_seen (
    device_id        text PRIMARY KEY,
    device_class     text NOT NULL,
    last_ts          timestamptz,              -- newest own report (probes excluded)
    last_seq         bigint NOT NULL DEFAULT 0,
    probe_ts         timestamptz,
    probe_reachable  boolean,
    quality_ts       timestamptz,
    fps              real,
    frozen           boolean,
    rtt_ms           real,
    jitter_ms        real,
    loss_pct         real,
    sessions_active  integer,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Current state per device and its history as intervals.
CREATE TABLE device_state (
    device_id   text PRIMARY KEY,
    state       text NOT NULL,
    reason      text,
    since       timestamptz NOT NULL,
    incident_id bigint,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device_state_intervals (
    device_id  text        NOT NULL,
    state      text        NOT NULL,
    reason     text,
    start_ts   timestamptz NOT NULL,
    end_ts     timestamptz,
    PRIMARY KEY (device_id, start_ts)
);
CREATE INDEX device_state_intervals_time_idx ON device_state_intervals (start_ts, end_ts);

CREATE TABLE incidents (
    id              bigserial PRIMARY KEY,
    kind            text        NOT NULL,
    severity        text        NOT NULL,
    status          text        NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'acknowledged', 'resolved')),
    title           text        NOT NULL,
    root_device     text        NOT NULL,
    device_class    text        NOT NULL,
    unit_code       text,
    site_id         text,
    opened_at       timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    affected        text[]      NOT NULL DEFAULT '{}',
    details         jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX incidents_open_idx ON incidents (status) WHERE status <> 'resolved';
CREATE INDEX incidents_opened_idx ON incidents (opened_at);
CREATE UNIQUE INDEX incidents_one_open_per_root
    ON incidents (root_device, kind) WHERE status <> 'resolved';

-- Planned maintenance, excluded from availability reports.
CREATE TABLE maintenance_windows (
    id        bigserial PRIMARY KEY,
    device_id text,
    unit_code text,
    start_ts  timestamptz NOT NULL,
    end_ts    timestamptz NOT NULL,
    note      text,
    CHECK (end_ts > start_ts)
);
