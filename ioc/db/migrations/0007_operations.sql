-- The operations service (issue: operators run the room): maintenance windows with scopes and
-- recurrence, Alertmanager silences per incident and per maintenance occurrence, escalation
-- steps, SLA objects, API tokens and the audit log.

-- Maintenance windows: what an operator schedules. One-off: [start_ts, end_ts). Recurring:
-- `cron` (5 fields, in `timezone`) starts an occurrence lasting `duration_s`, from start_ts
-- until end_ts. The scope names a device, a site, a unit (and its subtree) or a domain.
ALTER TABLE maintenance_windows
    ADD COLUMN scope_kind   text,
    ADD COLUMN scope        text,
    ADD COLUMN cron         text,
    ADD COLUMN duration_s   integer CHECK (duration_s > 0),
    ADD COLUMN timezone     text NOT NULL DEFAULT 'Asia/Ho_Chi_Minh',
    ADD COLUMN created_by   text NOT NULL DEFAULT 'sql',
    ADD COLUMN created_at   timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN cancelled_at timestamptz,
    ADD COLUMN cancelled_by text;
UPDATE maintenance_windows
   SET scope_kind = CASE WHEN device_id IS NOT NULL THEN 'device' ELSE 'unit' END,
       scope = coalesce(device_id, unit_code);
DELETE FROM maintenance_windows WHERE scope IS NULL;
ALTER TABLE maintenance_windows
    ALTER COLUMN scope_kind SET NOT NULL,
    ALTER COLUMN scope SET NOT NULL,
    ADD CONSTRAINT maintenance_windows_scope_kind_check
        CHECK (scope_kind IN ('device', 'site', 'unit', 'domain')),
    ADD CONSTRAINT maintenance_windows_recurrence_check
        CHECK ((cron IS NULL) = (duration_s IS NULL)),
    DROP COLUMN device_id,
    DROP COLUMN unit_code;

-- Each occurrence of a window (a one-off window has one), materialised ahead of time by the
-- operations service: what the SLA excludes and what Alertmanager silences cover.
CREATE TABLE maintenance_occurrences (
    window_id   bigint      NOT NULL REFERENCES maintenance_windows (id),
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    silence_ids text[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (window_id, start_ts),
    CHECK (end_ts > start_ts)
);
CREATE INDEX maintenance_occurrences_time_idx ON maintenance_occurrences (start_ts, end_ts);

-- The domain of a device class, as the alert rules' `domain` label names it (netnode ->
-- network, every other class is its own domain): ioc.contract.feeds.domain_of, checked by a
-- unit test.
CREATE FUNCTION device_domain(device_class text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE device_class WHEN 'netnode' THEN 'network' ELSE device_class END $$;

-- Every device under maintenance and when: the scope expanded to devices, and then to every
-- device behind one of them (whose chain of devices.upstream_node passes through it, over any
-- number of hops): planned work on a network node makes what is behind it unreachable, so the
-- SLA (device_maintenance, 0008) and escalation both treat those devices as under maintenance
-- too. UNION (not UNION ALL) keeps one row per device and occurrence and ends on a cycle.
CREATE VIEW maintenance_device_windows AS
WITH RECURSIVE covered (device_id, start_ts, end_ts, window_id) AS (
    SELECT d.id, o.start_ts, o.end_ts, w.id
    FROM maintenance_occurrences o
    JOIN maintenance_windows w ON w.id = o.window_id
    JOIN devices d ON
           (w.scope_kind = 'device' AND d.id = w.scope)
        OR (w.scope_kind = 'site' AND d.site_id = w.scope)
        OR (w.scope_kind = 'domain' AND device_domain(d.device_class) = w.scope)
        OR (w.scope_kind = 'unit' AND EXISTS (
                SELECT 1 FROM sites s JOIN unit_ancestors a ON a.unit_code = s.unit_code
                WHERE s.id = d.site_id AND a.ancestor_code = w.scope))
    UNION
    SELECT behind.id, c.start_ts, c.end_ts, c.window_id
    FROM covered c
    JOIN devices behind ON behind.upstream_node = c.device_id
)
SELECT device_id, start_ts, end_ts, window_id FROM covered;

-- The Alertmanager silences created when an incident was acknowledged; expired when it
-- resolves (expired_at set).
CREATE TABLE incident_silences (
    incident_id bigint      NOT NULL REFERENCES incidents (id),
    silence_id  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expired_at  timestamptz,
    PRIMARY KEY (incident_id, silence_id)
);

-- Escalation steps taken: one row per incident and level, so a level is paged only once.
-- `note` is the `escalate` command put on the incident stream for the timeline;
-- `timeline_sent` turns true once the broker took it (an outbox: a restart resends it).
CREATE TABLE escalations (
    incident_id   bigint      NOT NULL REFERENCES incidents (id),
    level         smallint    NOT NULL CHECK (level >= 1),
    targets       text[]      NOT NULL,
    paged_at      timestamptz NOT NULL DEFAULT now(),
    note          text        NOT NULL DEFAULT '',
    timeline_sent boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (incident_id, level)
);
CREATE INDEX escalations_unsent_idx ON escalations (paged_at) WHERE NOT timeline_sent;

-- SLA objects (Zabbix's model): an objective over a scope and a period, a schedule, and
-- excluded downtime.
CREATE TABLE sla_objects (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    slo_pct     numeric(7, 4) NOT NULL CHECK (slo_pct > 0 AND slo_pct <= 100),
    scope_kind  text        NOT NULL CHECK (scope_kind IN ('unit', 'domain', 'device_class')),
    scope       text        NOT NULL,
    period      text        NOT NULL
                CHECK (period IN ('day', 'week', 'month', 'quarter', 'year')),
    schedule    jsonb       NOT NULL DEFAULT '[]'::jsonb,
    excluded    jsonb       NOT NULL DEFAULT '[]'::jsonb,
    upstream_as text        NOT NULL DEFAULT 'upstream'
                CHECK (upstream_as IN ('upstream', 'device')),
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API tokens: only a hash is stored; the token is shown once when created.
CREATE TABLE api_tokens (
    id             bigserial PRIMARY KEY,
    name           text        NOT NULL UNIQUE,
    role           text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    unit_code      text,
    token_hash     text        NOT NULL UNIQUE,
    rate_per_min   integer     NOT NULL DEFAULT 120 CHECK (rate_per_min > 0),
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);

-- Who did what, when, from where, before and after: every write and every failed login.
CREATE TABLE audit_log (
    id         bigserial,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text,
    token_id   bigint,
    role       text,
    address    text,
    method     text        NOT NULL,
    path       text        NOT NULL,
    action     text        NOT NULL,
    target     text,
    outcome    text        NOT NULL,
    status     integer     NOT NULL,
    before     jsonb,
    after      jsonb,
    PRIMARY KEY (at, id)
);
SELECT create_hypertable('audit_log', 'at', chunk_time_interval => interval '30 days');
CREATE INDEX audit_log_target_idx ON audit_log (target, at DESC);
