"""The public-service portal feed: one-stop dossiers and online payments, as the provincial
data-sharing platform (LGSP) delivers them (docs/portal.md).

Device model: one ``portal`` device per receiving unit (a provincial department, or a commune
after 2025): that unit's one-stop desk and its LGSP sync channel, keyed ``portal-<unit>``.
Every dossier and payment event of the unit is a message of that device, numbered by the
collector (:class:`ioc.adapters.lgsp.LgspAdapter`). Events arrive late and in batches (hours
late is normal, a dossier's events out of order), so the feed accepts events up to
:data:`MAX_LATENESS_MS` old and keeps its raw rows for :data:`RAW_RETENTION_DAYS`, which
lets ``ioc portal recompute`` rebuild any day, month or quarter of the KPIs from raw.

KPIs: the 1-minute rollups count events per desk and unit; :data:`KPI_DDL` adds the daily KPI
table ``portal_kpi_daily`` (per unit at every level and Vietnam-time day, recomputed from raw
whenever a minute of that day changes, so a 6-hour-late event updates the right day) and the
views ``portal_kpi_1d``/``_1mo``/``_1q`` with the ratios and the Decision 766/QD-TTg index
groups computable from this data.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated, Final, Literal

from msgspec import Meta

from ioc.contract import schemas as s
from ioc.contract import tables as t
from ioc.contract.feeds import Aggregate, Feed, FeedSpec
from ioc.contract.thresholds import WARNING
from ioc.contract.topics import DAY_MS, TopicSpec

MAX_LATENESS_MS: Final = 14 * DAY_MS
"""A week-long LGSP outage and its catch-up batch still land (twice that, for margin)."""
RAW_RETENTION_DAYS: Final = 400
"""Raw dossier events are kept beyond a year: any quarter of the last four can be recomputed."""
LOCAL_TZ: Final = "Asia/Ho_Chi_Minh"
"""KPI days, months and quarters are Vietnam time (UTC+7)."""
BACKLOG_WINDOW_DAYS: Final = 60
"""The overdue backlog counts dossiers that went overdue within this many days (and were
not resolved or returned since)."""

DueDate = Annotated[
    str, Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$", extra={"column": "text"})
]
"""The dossier's due date (``YYYY-MM-DD``, Vietnam time), as the one-stop system sets it."""
AmountVnd = Annotated[int, Meta(ge=0, le=10**12, extra={"column": "bigint"})]
DossierEvent = Literal["received", "status", "resolved", "overdue", "returned"]
Channel = Literal["online", "in_person", "postal"]
PaymentEvent = Literal["attempted", "succeeded", "failed"]


class PortalDossier(s.Message, tag="portal.dossier", frozen=True, kw_only=True):
    """One event of a dossier's life: received (channel, procedure, due date), a status
    change, resolved (on time or late), overdue, or returned to the applicant."""

    dossier_id: s.ShortText
    procedure: s.ShortText
    """The procedure's code in the national catalogue (e.g. ``1.004227``)."""
    dossier_event: DossierEvent
    channel: Channel | None = None
    status: s.ShortText | None = None
    due_date: DueDate | None = None
    on_time: bool | None = None
    """Set on ``resolved``: resolved by its due date."""


class PortalPayment(s.Message, tag="portal.payment", frozen=True, kw_only=True):
    """An online payment of a dossier's fee: attempted, then succeeded or failed (reason)."""

    payment_id: s.ShortText
    dossier_id: s.ShortText
    payment_event: PaymentEvent
    amount_vnd: AmountVnd
    gateway: s.ShortText | None = None
    reason: s.ShortText | None = None


PortalMessage = PortalDossier | PortalPayment

_INT: Final = "integer"


def _count(where: str) -> str:
    return f"sat_int4(count(*) FILTER (WHERE {where}))"


def _sum(column: str) -> str:
    return f"sat_int4(coalesce(sum(r.{column}), 0))"


_DOSSIER = "kind = 'portal.dossier' AND dossier_event"
_PAYMENT = "kind = 'portal.payment' AND payment_event"
COUNTS: Final = {
    "received": f"{_DOSSIER} = 'received'",
    "received_online": f"{_DOSSIER} = 'received' AND channel = 'online'",
    "resolved": f"{_DOSSIER} = 'resolved'",
    "resolved_on_time": f"{_DOSSIER} = 'resolved' AND on_time",
    "overdue": f"{_DOSSIER} = 'overdue'",
    "returned": f"{_DOSSIER} = 'returned'",
    "pay_attempted": f"{_PAYMENT} = 'attempted'",
    "pay_succeeded": f"{_PAYMENT} = 'succeeded'",
    "pay_failed": f"{_PAYMENT} = 'failed'",
}
"""Every count of the feed: column -> the condition on a raw row (device rollup, daily KPI)."""

KPI_DAILY: Final = "portal_kpi_daily"
KPI_REFRESH: Final = "portal_kpi_refresh"
KPI_VIEWS: Final = MappingProxyType(
    {"day": "portal_kpi_1d", "month": "portal_kpi_1mo", "quarter": "portal_kpi_1q"}
)
"""Period -> the view of the KPIs per unit and period (``bucket`` = its start, Vietnam time)."""
PROGRESS_POINTS_MAX: Final = 20
"""Decision 766/QD-TTg group "progress and results of handling" (points): scored here as
this many points times the share of dossiers resolved on time."""
ONLINE_POINTS_MAX: Final = 12
"""Decision 766/QD-TTg group "online service provision" (points): half for the share of
dossiers submitted online, half for the share of online payments that succeed."""


def _kpi_table() -> str:
    counts = ",\n    ".join(f"{c} integer NOT NULL DEFAULT 0" for c in (*COUNTS, "overdue_backlog"))
    return (
        f"CREATE TABLE IF NOT EXISTS {KPI_DAILY} (\n    day date NOT NULL,\n"
        f"    unit_code text NOT NULL,\n    level smallint NOT NULL,\n    {counts},\n"
        f"    computed_at timestamptz NOT NULL DEFAULT now(),\n"
        f"    PRIMARY KEY (unit_code, day)\n)"
    )


def _kpi_refresh() -> str:
    """``portal_kpi_refresh(minutes timestamptz[])``: recompute, from the raw rows, the daily
    KPIs of every unit for each Vietnam-time day that contains one of ``minutes``; returns
    the number of (unit, day) rows written. The rollup round calls it with its dirty minutes
    (``FeedSpec.after_rollup``), ``ioc portal recompute`` with one minute per day."""
    local = f"AT TIME ZONE '{LOCAL_TZ}'"
    per_device = ",\n        ".join(
        f"count(*) FILTER (WHERE {_qualified(w)}) AS {c}" for c, w in COUNTS.items()
    )
    names = ", ".join((*COUNTS, "overdue_backlog"))
    sums = ", ".join(f"coalesce(sum(p.{c}), 0)::int" for c in COUNTS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*COUNTS, "overdue_backlog"))
    return f"""CREATE OR REPLACE FUNCTION {KPI_REFRESH}(minutes timestamptz[]) RETURNS integer
LANGUAGE sql AS $$
WITH days AS (
    SELECT DISTINCT (m {local})::date AS day FROM unnest(minutes) AS m
), bounds AS (
    SELECT day, (day::timestamp {local}) AS lo, ((day + 1)::timestamp {local}) AS hi FROM days
), per_device AS (
    SELECT b.day, r.device_id,
        {per_device}
    FROM bounds b JOIN raw_portal r ON r.ts >= b.lo AND r.ts < b.hi
    GROUP BY b.day, r.device_id
), went_overdue AS (
    SELECT DISTINCT b.day, r.device_id, r.dossier_id
    FROM bounds b JOIN raw_portal r ON r.ts < b.hi
        AND r.ts >= b.hi - interval '{BACKLOG_WINDOW_DAYS} days'
    WHERE r.kind = 'portal.dossier' AND r.dossier_event = 'overdue'
), closed AS (
    SELECT DISTINCT b.day, r.device_id, r.dossier_id
    FROM bounds b JOIN raw_portal r ON r.ts < b.hi
        AND r.ts >= b.hi - interval '{BACKLOG_WINDOW_DAYS} days'
    WHERE r.kind = 'portal.dossier' AND r.dossier_event IN ('resolved', 'returned')
), backlog AS (
    SELECT o.day, o.device_id, count(*) AS overdue_backlog
    FROM went_overdue o LEFT JOIN closed c
        ON c.day = o.day AND c.device_id = o.device_id AND c.dossier_id = o.dossier_id
    WHERE c.dossier_id IS NULL
    GROUP BY o.day, o.device_id
), units AS (
    SELECT b.day, a.ancestor_code AS unit_code, u.level, d.id AS device_id
    FROM bounds b CROSS JOIN devices d JOIN sites s ON s.id = d.site_id
    JOIN unit_ancestors a ON a.unit_code = s.unit_code
    JOIN admin_units u ON u.code = a.ancestor_code
    WHERE d.device_class = '{Feed.PORTAL}'
), written AS (
    INSERT INTO {KPI_DAILY} (day, unit_code, level, {names})
    SELECT x.day, x.unit_code, x.level, {sums}, coalesce(sum(k.overdue_backlog), 0)::int
    FROM units x
    LEFT JOIN per_device p ON p.day = x.day AND p.device_id = x.device_id
    LEFT JOIN backlog k ON k.day = x.day AND k.device_id = x.device_id
    GROUP BY x.day, x.unit_code, x.level
    ON CONFLICT (unit_code, day) DO UPDATE SET {updates}, computed_at = now()
    RETURNING 1
)
SELECT count(*)::int FROM written
$$"""


def _qualified(condition: str) -> str:
    """A raw-row condition of :data:`COUNTS` on the alias ``r``."""
    out = condition
    for column in ("kind", "dossier_event", "payment_event", "channel", "on_time"):
        out = out.replace(f"{column} ", f"r.{column} ")
        if out.endswith(f" {column}"):
            out = out[: -len(column)] + f"r.{column}"
    return out


_LENGTH: Final = {"day": "1 day", "month": "1 month", "quarter": "3 months"}


def kpi_select(period: str) -> str:
    """The KPIs per unit and ``period`` (``day``, ``month``, ``quarter``) from the daily table:
    counts, the overdue backlog at the period's end, the ratios and the 766 index groups;
    ``bucket``/``bucket_end`` bound the period (a panel selects the periods that overlap its
    time range)."""
    start = f"date_trunc('{period}', day)::date"
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in COUNTS)
    ontime = "sum(resolved_on_time)::float8 / nullif(sum(resolved), 0)"
    online = "sum(received_online)::float8 / nullif(sum(received), 0)"
    paid = "sum(pay_succeeded)::float8 / nullif(sum(pay_attempted), 0)"
    half = ONLINE_POINTS_MAX / 2
    return (
        f"SELECT ({start}::timestamp AT TIME ZONE '{LOCAL_TZ}') AS bucket, "
        f"{start} AS period_start, unit_code, level, {sums}, "
        f"(array_agg(overdue_backlog ORDER BY day DESC))[1] AS overdue_backlog, "
        f"(100 * {ontime})::real AS ontime_pct, (100 * {online})::real AS online_pct, "
        f"(100 * {paid})::real AS payment_success_pct, "
        f"({PROGRESS_POINTS_MAX} * {ontime})::real AS progress_points, "
        f"({half} * coalesce({online}, 0) + {half} * coalesce({paid}, 0))::real "
        f"AS online_points, "
        f"(({start} + interval '{_LENGTH[period]}')::timestamp AT TIME ZONE '{LOCAL_TZ}') "
        f"AS bucket_end "
        f"FROM {KPI_DAILY} GROUP BY 1, 2, 3, 4"
    )


KPI_DDL: Final = (
    # the backlog reads only these events over its window (a few percent of the rows)
    "CREATE INDEX IF NOT EXISTS raw_portal_closing_idx ON raw_portal (ts) "
    "WHERE dossier_event IN ('overdue', 'resolved', 'returned')",
    _kpi_table(),
    _kpi_refresh(),
    *(f"CREATE OR REPLACE VIEW {view} AS {kpi_select(p)}" for p, view in KPI_VIEWS.items()),
)

FEED: Final = FeedSpec(
    name=Feed.PORTAL,
    title="Public-service portal",
    messages=(PortalDossier, PortalPayment),
    topic=TopicSpec(
        "ioc.portal.v1",
        2,
        7 * DAY_MS,
        description="one-stop dossier and online payment events, as LGSP delivers them",
    ),
    device_rollup=(
        Aggregate("reports", _INT, "sat_int4(count(*))", not_null=True),
        *(Aggregate(c, _INT, _count(w), not_null=True) for c, w in COUNTS.items()),
    ),
    unit_rollup=(
        Aggregate("desks", _INT, "sat_int4(count(*))", not_null=True),
        Aggregate("desks_reporting", _INT, "sat_int4(count(r.device_id))", not_null=True),
        *(Aggregate(c, _INT, _sum(c), not_null=True) for c in COUNTS),
    ),
    heartbeat_timeout_ms=15_000,
    incident_severity=MappingProxyType({t.INCIDENT_DEVICE_DOWN: WARNING}),
    behaviour="ioc.simulators.portal:PortalSim",
    max_lateness_ms=MAX_LATENESS_MS,
    raw_retention_days=RAW_RETENTION_DAYS,
    extra_ddl=KPI_DDL,
    after_rollup=f"SELECT {KPI_REFRESH}($1::timestamptz[])",
)
