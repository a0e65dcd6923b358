-- Province model (see ioc.contract.topology): administrative units at any number of levels,
-- sites inside units, devices at sites with the network node they depend on.
-- Loaded from a scenario by `ioc topology load` (and by workers at start); upserts by id.

CREATE TABLE admin_units (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    level       smallint NOT NULL,           -- 0 = province, 1 = district (or commune), ...
    level_name  text NOT NULL,               -- 'province', 'district', 'commune'
    parent_code text REFERENCES admin_units (code),
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    valid_from  date,
    valid_to    date
);
CREATE INDEX admin_units_parent_idx ON admin_units (parent_code);

CREATE TABLE sites (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL,               -- office, junction, town_centre, hospital, ...
    unit_code   text NOT NULL REFERENCES admin_units (code),
    lat         double precision NOT NULL,
    lon         double precision NOT NULL
);
CREATE INDEX sites_unit_idx ON sites (unit_code);

CREATE TABLE devices (
    id            text PRIMARY KEY,
    device_class  text NOT NULL CHECK (device_class IN ('camera', 'telehealth', 'netnode')),
    site_id       text NOT NULL REFERENCES sites (id),
    upstream_node text REFERENCES devices (id) DEFERRABLE INITIALLY DEFERRED,
    lat           double precision NOT NULL,
    lon           double precision NOT NULL,
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX devices_site_idx ON devices (site_id);
CREATE INDEX devices_upstream_idx ON devices (upstream_node);

-- Every ancestor of every unit (including itself), so rollups and dashboards can aggregate
-- at any level with one join instead of a recursive query per panel.
CREATE TABLE unit_ancestors (
    unit_code     text NOT NULL REFERENCES admin_units (code),
    ancestor_code text NOT NULL REFERENCES admin_units (code),
    depth         smallint NOT NULL,
    PRIMARY KEY (unit_code, ancestor_code)
);
