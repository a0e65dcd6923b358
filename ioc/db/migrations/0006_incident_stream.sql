-- Incidents become the projection of an event stream (issue: one owner for every concept).
--
-- The shard leader's evaluation decides device-state transitions and writes them, in the
-- same transaction as device_state and its intervals, to this outbox; after the commit it
-- publishes them to ioc.device-events.v1 in id order and deletes what the broker confirmed.
-- A transition is therefore published if and only if it was committed, and a leader killed
-- between publishing and deleting leaves rows the next leader publishes again: the incident
-- agent drops them by id (ids only grow, one leader round at a time).
CREATE TABLE device_events_outbox (
    id        bigserial PRIMARY KEY,
    device_id text        NOT NULL,
    prev      text        NOT NULL,
    new       text        NOT NULL,
    reason    text        NOT NULL DEFAULT '',
    at_ts     timestamptz NOT NULL,
    since_ts  timestamptz NOT NULL
);

-- The incident agent (a Faust agent) owns incident state; these rows are its projection.
ALTER TABLE incidents ADD COLUMN assigned_to text;

-- Every step of an incident's life (the timeline the operations service shows), written in
-- the agent's transaction and then published on ioc.incidents.v1: `published` turns true when
-- the broker confirmed it, so a step committed just before a crash is published on the next
-- touch of its incident rather than lost. (incident_id, seq) lets consumers drop a step
-- published twice.
CREATE TABLE incident_events (
    incident_id bigint      NOT NULL REFERENCES incidents (id),
    seq         integer     NOT NULL,
    event       text        NOT NULL,
    status      text        NOT NULL,
    assigned_to text,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    note        text        NOT NULL DEFAULT '',
    published   boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (incident_id, seq)
);
CREATE INDEX incident_events_unpublished_idx ON incident_events (incident_id)
    WHERE NOT published;

-- The pager tells the on-call which incident a page belongs to (from ioc.incidents.v1).
ALTER TABLE pages ADD COLUMN incident_id bigint;
