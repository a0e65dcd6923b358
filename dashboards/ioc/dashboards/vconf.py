"""Video conference: meeting readiness, the meeting schedule, bridge load and point quality.

The readiness table and VconfPointNotJoined read the same series
(``ioc_vconf_point_not_joined``, exported by the shard leader: :mod:`ioc.streams.vconf`), so
the panel lists exactly the points the alert fires for, with the cause (``site_isolated``
names the network node that cut the commune off).
"""

from __future__ import annotations

from grafanalib import core as g

from ioc.alerting.rules import PROC
from ioc.contract import metrics as m
from ioc.contract.feeds import Feed
from ioc.contract.tables import RAW
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p

READINESS_TITLE = "Meeting readiness: points not joined"
SCHEDULE_TITLE = "Meetings (booking calendar)"
FAILURES_TITLE = "Join failures by point and reason"
MEETING_PANELS = (READINESS_TITLE, SCHEDULE_TITLE, FAILURES_TITLE)
"""Panels with rows only when a meeting is near or a join failed (a run without meetings
shows them empty)."""


def _max(series: str, selector: str = "") -> str:
    return f"max without ({PROC}) ({series}{selector})"


def _readiness_target() -> g.Target:
    target = p.prom(_max(m.VCONF_POINT_NOT_JOINED.series), instant=True)
    target.format = "table"
    return target


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    raw = RAW[Feed.VCONF]
    # the bridges' rows only, before any is read: as an array, which the planner reads one
    # bridge at a time by the key index (a few pages each in an ordered chunk), where
    # `IN (SELECT ...)` let it guess hundreds of bridges from the JSON condition and scan every
    # endpoint's rows of the range (7.4 M rows, 3-4 s at 90 d, docs/history.md section 7)
    bridge_rows = p.rollup_rows(
        Feed.VCONF,
        "$__timeFilter(bucket) AND device_id = ANY(ARRAY("
        "SELECT id FROM devices WHERE attributes->>'role' = 'mcu'))",
        unit=False,
        series=True,
    )
    in_scope = (
        "(scope_unit IN (SELECT unit_code FROM unit_ancestors WHERE ancestor_code = '$unit') "
        "OR scope_unit IN (SELECT ancestor_code FROM unit_ancestors WHERE unit_code = '$unit'))"
    )
    not_joined, joined = '{state="not_joined"}', '{state="joined"}'
    ports_ratio = _max(
        f"{m.VCONF_BRIDGE_PORTS_USED.series} / {m.VCONF_BRIDGE_PORTS_LICENSED.series}"
    )
    return p.dashboard(
        "vconf",
        "Video conference",
        templates=[*p.unit_variables(), p.device_variable(Feed.VCONF)],
        description=(
            "The provincial online meeting system: who has not joined a scheduled meeting and "
            "why, the bridges' load and licences, the points' media quality."
        ),
        panels=[
            p.stat(
                "Points not joined (meetings now)",
                p.prom(f"sum({_max(m.VCONF_MEETING_POINTS.series, not_joined)}) or vector(0)"),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (p.QUARTER, 5),
                decimals=0,
            ),
            p.stat(
                "Points joined (meetings now)",
                p.prom(f"sum({_max(m.VCONF_MEETING_POINTS.series, joined)}) or vector(0)"),
                "short",
                None,
                (p.QUARTER, 5),
                decimals=0,
            ),
            p.stat(
                "Bridge ports in use (busiest bridge)",
                p.prom(f"max({ports_ratio})"),
                "percentunit",
                p.thresholds((None, p.GREEN), (th.vconf_ports_use_max, p.RED)),
                (p.QUARTER, 5),
            ),
            p.stat(
                "Bridge stress level (busiest bridge)",
                p.prom(f"max({_max(m.VCONF_BRIDGE_STRESS.series)})"),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),  # 1 = its configured load limit
                (p.QUARTER, 5),
                decimals=2,
            ),
            p.table(
                READINESS_TITLE,
                _readiness_target(),
                (p.FULL, 9),
                description=(
                    "Every expected point of a meeting from "
                    f"{th.vconf_readiness_before_s // 60} min before its start to "
                    f"{th.vconf_readiness_after_s // 60} min after that is not in it; Value = "
                    "seconds since the start (negative: before it). cause: site_isolated = its "
                    "network node (cause_device) is down; link_degraded = its link loses too "
                    "much; bridge_down / licence_exhausted = the bridge; point_down = the room "
                    "system; join_failed; not_joined = up and reachable but not in the meeting."
                ),
            ),
            p.table(
                SCHEDULE_TITLE,
                p.sql(
                    f"""
            SELECT start AS "start", title, scope_unit AS unit, minutes, expected, status,
                   bridge
            FROM (SELECT DISTINCT ON (meeting_id) to_timestamp(starts_at_ms / 1000.0) AS start,
                         title, scope_unit, duration_s / 60 AS minutes,
                         expected_points AS expected, status, bridge_id AS bridge
                  FROM {raw} WHERE kind = 'vconf.meeting' AND $__timeFilter(ts) AND {in_scope}
                  ORDER BY meeting_id, ts DESC, seq DESC) m
            ORDER BY start LIMIT 50""",
                    "table",
                ),
                (p.HALF, 8),
            ),
            p.table(
                FAILURES_TITLE,
                p.sql(
                    f"""
            SELECT r.device_id AS point, r.reason, count(*) AS failures, max(r.ts) AS "last"
            FROM {raw} r JOIN devices d ON d.id = r.device_id
            WHERE r.kind = 'vconf.join' AND r.event = 'failed' AND $__timeFilter(r.ts)
              AND {p.in_unit()}
            GROUP BY r.device_id, r.reason ORDER BY failures DESC LIMIT 20""",
                    "table",
                ),
                (p.HALF, 8),
            ),
            p.timeseries(
                "Points in a meeting, joins and failures in unit",
                [
                    p.unit_series(
                        Feed.VCONF,
                        """max(points_in_meeting) AS "points in a meeting",
                        sum(joins) AS joins, sum(join_failures) AS "join failures",
                        max(devices_reporting) AS reporting""",
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Media quality of points in unit",
                [
                    p.unit_series(
                        Feed.VCONF,
                        """avg(rtt_ms_avg) AS "RTT ms", avg(jitter_ms_avg) AS "jitter ms",
                        max(loss_pct_max) AS "loss % (worst point)", avg(fps_avg) AS fps""",
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Freezes and audio-only fallback in unit",
                [
                    p.unit_series(
                        Feed.VCONF,
                        """sum(freezes) AS freezes,
                        max(audio_only_points) AS audio_only_points""",
                    )
                ],
                "short",
                (p.HALF, 7),
            ),
            p.timeseries(
                "Bridge load: participants, ports, stress",
                [
                    p.sql(
                        f"""
            SELECT time_bucket('$__interval', r.bucket) AS time,
                   sum(r.participants_max) AS participants, sum(r.ports_used_max) AS "ports used",
                   sum(r.ports_licensed) AS "ports licensed",
                   max(r.stress_max) AS "stress (max)"
            FROM {bridge_rows} r GROUP BY 1 ORDER BY 1"""
                    )
                ],
                "short",
                (p.HALF, 7),
            ),
            p.timeseries(
                "Bridge bitrate and failed conferences",
                [
                    p.sql(
                        f"""
            SELECT time_bucket('$__interval', r.bucket) AS time,
                   sum(r.download_bps_avg) AS "in bps", sum(r.upload_bps_avg) AS "out bps",
                   sum(r.conferences_failed + r.conferences_partially_failed)
                     AS "failed or partially failed conferences"
            FROM {bridge_rows} r GROUP BY 1 ORDER BY 1"""
                    )
                ],
                "bps",
                (p.HALF, 7),
            ),
            p.device_state_timeline(),
        ],
    )
