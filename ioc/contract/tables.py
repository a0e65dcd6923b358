"""TimescaleDB tables and views of the product (created by ``ioc/db/migrations``, and for
feeds declared after them by ``ioc.db.feeds``).

The workers (writer, rollups, evaluator, retention), ``ioc.db.features`` and some tests refer
to these names. Not yet everyone: most of the dashboards' SQL, the rollups' joins of the
topology tables, ``ioc.db.topology`` and the pager (``pages``, which has no name here) still
spell table names out; the live dashboard test runs every panel's query, so a renamed table
fails there.
"""

from __future__ import annotations

from typing import Final

# Per-feed tables (raw hypertable, device and unit rollups in three tiers: 1 minute, 1 hour,
# 1 day), named from the feed: ``raw_<feed>``, ``rollup_<feed>_1m``/``_1h``/``_1d``,
# ``unit_rollup_<feed>_1m``/``_1h``/``_1d`` (docs/history.md). Kept in step with the feed
# registry by ioc.contract.feeds.
RAW: Final[dict[str, str]] = {}
ROLLUP_DEVICE_1M: Final[dict[str, str]] = {}
ROLLUP_DEVICE_1H: Final[dict[str, str]] = {}
ROLLUP_DEVICE_1D: Final[dict[str, str]] = {}
ROLLUP_UNIT_1M: Final[dict[str, str]] = {}
ROLLUP_UNIT_1H: Final[dict[str, str]] = {}
ROLLUP_UNIT_1D: Final[dict[str, str]] = {}
ROLLUP_DIRTY: Final = "rollup_dirty"
HISTORY_DIRTY: Final = "history_dirty"
"""Hours and days whose rollups must be (re)rolled from the tier below (migration 0013)."""
ROLLUP_TIERS: Final = "rollup_tiers"
"""Each tier's bucket width and the retention the workers enforce (migration 0013); the SQL
function ``rollup_tier(t0, t1, step)`` reads it to pick a dashboard panel's tier."""

ADMIN_UNITS: Final = "admin_units"
UNIT_ANCESTORS: Final = "unit_ancestors"
SITES: Final = "sites"
DEVICES: Final = "devices"
UNIT_LINEAGE: Final = "unit_lineage"
"""View: every unit code, old or current, and today's unit it maps onto (migration 0010)."""
CURRENT_UNIT: Final = "current_unit"
"""SQL function ``current_unit(unit_code text, on_day date DEFAULT unit_today())``."""

DEVICE_LAST_SEEN: Final = "device_last_seen"
DEVICE_STATE: Final = "device_state"
DEVICE_STATE_INTERVALS: Final = "device_state_intervals"
INCIDENTS: Final = "incidents"
INCIDENT_EVENTS: Final = "incident_events"
DEVICE_EVENTS_OUTBOX: Final = "device_events_outbox"
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
INCIDENT_SECURITY: Final = "security-alert"
"""A critical SOC alert on a site (ioc.contract.soc, ioc.streams.soc)."""
INCIDENT_KINDS: Final = (
    INCIDENT_DEVICE_DOWN,
    INCIDENT_SITE_ISOLATED,
    INCIDENT_FLAPPING,
    INCIDENT_DEGRADED,
    INCIDENT_SECURITY,
)
SEVERITIES: Final = ("critical", "warning", "info")
