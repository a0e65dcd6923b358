"""Cameras: online ratio, stream health, traffic, worst cameras, state timeline."""

from __future__ import annotations

from grafanalib import core as g

from ioc.contract import metrics as m
from ioc.contract import schemas
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p

INCIDENT_KIND = schemas.KIND_OF_TYPE[schemas.CameraIncident]
"""The raw rows the "Traffic incidents" table lists: migration 0017 indexes exactly these."""


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    return p.dashboard(
        "cameras",
        "Cameras",
        templates=[*p.unit_variables(), p.device_variable("camera")],
        description=("Camera network per unit (any level): online ratio, stream health, traffic."),
        panels=[
            p.stat(
                "Cameras online in unit",
                p.prom(f'max({m.CAMERA_ONLINE_RATIO.series}{{unit="$unit"}})'),
                "percentunit",
                p.thresholds(
                    (None, p.RED),
                    (th.camera_online_ratio_min, p.AMBER),
                    (th.online_ratio_target, p.GREEN),
                ),
                (p.QUARTER, 6),
                decimals=1,
            ),
            p.timeseries(
                "Online ratio",
                [
                    p.prom(
                        f'max by (unit_name) ({m.CAMERA_ONLINE_RATIO.series}{{unit="$unit"}})',
                        "{{unit_name}}",
                    )
                ],
                "percentunit",
                (p.THREE_QUARTERS, 6),
            ),
            p.timeseries(
                "Frame rate and frozen cameras",
                [
                    p.unit_series(
                        "camera",
                        '''avg(fps_avg) AS "fps (avg)", max(frozen_cameras) AS "frozen cameras"''',
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Traffic: vehicles and mean speed",
                [
                    p.unit_series(
                        "camera",
                        '''sum(vehicles) AS vehicles, avg(speed_kmh_avg) AS "speed km/h"''',
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.table(
                "Worst cameras (lowest frame rate, most dropped frames)",
                p.sql(
                    f"""
            SELECT r.device_id AS camera, round(avg(r.fps_avg)::numeric, 1) AS fps,
                   sum(r.dropped_frames) AS dropped_frames, sum(r.frozen_samples) AS frozen,
                   sum(r.incidents_opened) AS incidents
            FROM {p.unit_device_rows("camera")} r
            GROUP BY r.device_id ORDER BY fps ASC NULLS FIRST, dropped_frames DESC
            LIMIT 10""",
                    "table",
                ),
                (p.HALF, 9),
                links=[p.link("cameras", "Camera details", unit="$unit")],
            ),
            p.table(
                "Traffic incidents",
                p.sql(
                    f"""
            SELECT c.ts AS time, c.device_id AS camera, c.incident, c.incident_state AS state
            FROM raw_camera c JOIN devices d ON d.id = c.device_id
            WHERE c.kind = '{INCIDENT_KIND}' AND $__timeFilter(c.ts) AND {p.in_unit()}
            ORDER BY c.ts DESC LIMIT 50""",
                    "table",
                ),
                (p.HALF, 9),
            ),
            p.device_state_timeline(),
            p.timeseries(
                "Stream of $device",
                [
                    p.sql(f"""
            SELECT bucket AS time, fps_avg AS fps, bitrate_kbps_avg AS "bitrate kbps",
                   dropped_frames AS "dropped frames"
            FROM {p.device_rows("camera")} r ORDER BY 1""")
                ],
                "short",
                (p.FULL, 7),
            ),
        ],
    )
