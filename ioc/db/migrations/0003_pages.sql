-- Every page the pager receiver accepted from Alertmanager: one row per alert and status
-- (firing / resolved) and start time, so Alertmanager's retries and repeat notifications are
-- recorded once. `deliveries` records what each outgoing channel did with it.
CREATE TABLE pages (
    id           bigserial PRIMARY KEY,
    fingerprint  text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    alertname    text        NOT NULL,
    severity     text,
    domain       text,
    unit         text,
    site         text,
    device_id    text,
    summary      text,
    description  text,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz,
    receiver     text,
    group_key    text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    notifications integer    NOT NULL DEFAULT 1,
    labels       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    deliveries   jsonb       NOT NULL DEFAULT '[]'::jsonb,
    UNIQUE (fingerprint, status, starts_at)
);
CREATE INDEX pages_received_idx ON pages (received_at);
CREATE INDEX pages_alert_idx ON pages (alertname, status);
