"""TimescaleDB tables and views of the product (created by ``ioc/db/migrations``).

The workers (writer, rollups, evaluator, retention), ``ioc.db.features`` and some tests refer
to these names. Not yet everyone: most of the dashboards' SQL, the rollups' joins of the
topology tables, ``ioc.db.topology`` and the pager (``pages``, which has no name here) still
spell table names out; the live dashboard test runs every panel's query, so a renamed table
fails there.
"""

from __future__ import annotations

from typing import Final

RAW: Final = {"camera": "raw_camera", "telehealth": "raw_telehealth", "netnode": "raw_netnode"}
ROLLUP_DEVICE_1M: Final = {
    "camera": "rollup_camera_1m",
    "telehealth": "rollup_telehealth_1m",
    "netnode": "rollup_netnode_1m",
}
ROLLUP_UNIT_1M: Final = {
    "camera": "unit_rollup_camera_1m",
    "telehealth": "unit_rollup_telehealth_1m",
    "netnode": "unit_rollup_netnode_1m",
}
ROLLUP_UNIT_1H: Final = {feed: f"unit_rollup_{feed}_1h" for feed in ROLLUP_UNIT_1M}
ROLLUP_UNIT_1D: Final = {feed: f"unit_rollup_{feed}_1d" for feed in ROLLUP_UNIT_1M}
ROLLUP_DIRTY: Final = "rollup_dirty"

ADMIN_UNITS: Final = "admin_units"
UNIT_ANCESTORS: Final = "unit_ancestors"
SITES: Final = "sites"
DEVICES: Final = "devices"

DEVICE_LAST_SEEN: Final = "device_last_seen"
DEVICE_STATE: Final = "device_state"
DEVICE_STATE_INTERVALS: Final = "device_state_intervals"
INCIDENTS: Final = "incidents"
MAINTENANCE_WINDOWS: Final = "maintenance_windows"

# Device states (device_state.state, device_state_intervals.state, metric label values).
STATE_UP: Final = "up"
STATE_DOWN: Final = "down"
STATE_DEGRADED: Final = "degraded"
STATE_UNREACHABLE: Final = "unreachable-upstream"
STATE_FLAPPING: Final = "flapping"
STATE_UNKNOWN: Final = "unknown"
STATES: Final = (
    STATE_UP,
    STATE_DEGRADED,
    STATE_DOWN,
    STATE_UNREACHABLE,
    STATE_FLAPPING,
    STATE_UNKNOWN,
)

# Incident kinds and severities (incidents.kind / .severity, metric labels, alert rules).
INCIDENT_DEVICE_DOWN: Final = "device-down"
INCIDENT_SITE_ISOLATED: Final = "site-isolated"
INCIDENT_FLAPPING: Final = "flapping"
INCIDENT_DEGRADED: Final = "degraded"
INCIDENT_KINDS: Final = (
    INCIDENT_DEVICE_DOWN,
    INCIDENT_SITE_ISOLATED,
    INCIDENT_FLAPPING,
    INCIDENT_DEGRADED,
)
SEVERITIES: Final = ("critical", "warning", "info")
