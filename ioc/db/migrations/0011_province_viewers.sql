-- Province isolation (issue 17): one deployment serves many provinces, and a province's
-- viewers (Grafana's datasource for that province) read only that province's rows. Each
-- province has a login role (ioc_view_<code>, a member of ioc_province_viewer) mapped here
-- by bootstrap; the viewers' views over every table that names a unit or a device
-- (ioc.db.provinces) keep the rows of the units and devices the two functions below return.
CREATE TABLE province_viewers (
    role_name text PRIMARY KEY,
    province  text NOT NULL REFERENCES admin_units (code)
);

-- The units the logged-in viewer may see: every unit under its provinces, and every unit
-- (with the units under it) that history maps onto them through a merger (old-15, Yen Bai,
-- for today's Lao Cai). SECURITY DEFINER: it reads the mapping, which viewers may not;
-- session_user, because inside it current_user is the owner.
CREATE FUNCTION viewer_units() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
SELECT a.unit_code
FROM unit_ancestors a
JOIN unit_lineage l ON l.code = a.ancestor_code
JOIN province_viewers v ON v.province IN (l.code, l.current_code)
WHERE v.role_name = session_user
$$;

-- The devices at the sites of those units.
CREATE FUNCTION viewer_devices() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id
WHERE s.unit_code IN (SELECT viewer_units())
$$;
