"""Maintenance windows without a database: what is refused (with a reason), how a recurrence
expands in Vietnam time, and which Alertmanager matchers a window or an incident gets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from ioc.contract import tables as t
from ioc.contract.topology import Topology, load_scenario
from ioc.services.ops.alertmanager import Matcher, incident_matchers
from ioc.services.ops.common import VN_TZ, Invalid
from ioc.services.ops.maintenance import (
    WindowIn,
    domains,
    expand,
    firings,
    unit_subtree,
    window_matchers,
)

NOW = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)  # 10:00 in Vietnam
CAMERA = "cam-991-001"
NODE = "nn-991"


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_scenario("demo")


def vn(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=VN_TZ)


def window(**fields: Any) -> WindowIn:
    base: dict[str, Any] = {
        "scope_kind": "device",
        "scope": CAMERA,
        "starts_at": vn(2026, 11, 27, 1, 0),
        "ends_at": vn(2026, 11, 27, 3, 0),
    }
    return WindowIn.model_validate(base | fields)


def refused(w: WindowIn, topology: Topology) -> str:
    with pytest.raises(Invalid) as info:
        w.check(topology, NOW)
    return str(info.value)


def test_naive_times_are_vietnam_time() -> None:
    w = WindowIn.model_validate(
        {
            "scope_kind": "site",
            "scope": "s",
            "starts_at": "2026-11-27T01:00:00",
            "ends_at": "2026-11-27T03:00:00+00:00",
        }
    )
    assert w.starts_at == dt.datetime(2026, 11, 26, 18, 0, tzinfo=dt.UTC)
    assert w.ends_at == dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)


def test_unknown_fields_and_wrong_types_are_refused() -> None:
    with pytest.raises(ValidationError):
        window(colour="red")
    with pytest.raises(ValidationError):
        window(scope_kind="building")
    with pytest.raises(ValidationError):
        window(duration_minutes=0, cron="0 2 * * *")


def test_a_good_one_off_and_a_good_recurrence_pass(topology: Topology) -> None:
    window().check(topology, NOW)
    window(cron="0 2 * * 0", duration_minutes=120, ends_at=None).check(topology, NOW)
    window(cron="0 2 * * *", duration_minutes=60, ends_at=vn(2027, 1, 1, 0, 0)).check(topology, NOW)


def test_a_window_that_ends_before_it_starts_is_refused(topology: Topology) -> None:
    assert "before it starts" in refused(window(ends_at=vn(2026, 11, 27, 0, 30)), topology)
    assert "before it starts" in refused(
        window(ends_at=vn(2026, 11, 27, 1, 0), cron="0 2 * * *", duration_minutes=30), topology
    )


def test_times_out_of_range_are_refused(topology: Topology) -> None:
    assert "over already" in refused(
        window(starts_at=vn(2026, 11, 26, 8, 0), ends_at=vn(2026, 11, 26, 9, 0)), topology
    )
    assert "in the past" in refused(window(starts_at=vn(2026, 11, 20, 8, 0)), topology)
    assert "year ahead" in refused(
        window(starts_at=vn(2028, 1, 1, 0, 0), ends_at=vn(2028, 1, 2, 0, 0)), topology
    )
    assert "at most 31 days" in refused(window(ends_at=vn(2027, 1, 27, 3, 0)), topology)
    assert "needs ends_at" in refused(window(ends_at=None), topology)
    assert "give cron too" in refused(window(duration_minutes=30), topology)
    assert "needs duration_minutes" in refused(window(cron="0 2 * * *", ends_at=None), topology)


def test_a_cron_that_never_fires_is_refused(topology: Topology) -> None:
    reason = refused(window(cron="0 0 31 2 *", duration_minutes=60, ends_at=None), topology)
    assert "never fires" in reason and "0 0 31 2 *" in reason
    # fires, but not before the recurrence ends
    reason = refused(
        window(cron="0 2 1 1 *", duration_minutes=60, ends_at=vn(2026, 12, 31, 0, 0)), topology
    )
    assert "never fires" in reason


def test_bad_crons_are_refused(topology: Topology) -> None:
    assert "5 fields" in refused(window(cron="0 0 2 * * *", duration_minutes=5), topology)
    assert "not a valid" in refused(window(cron="61 2 * * *", duration_minutes=5), topology)
    assert "once an hour" in refused(
        window(cron="*/5 * * * *", duration_minutes=1, ends_at=None), topology
    )
    assert "overlap" in refused(
        window(cron="0 */2 * * *", duration_minutes=180, ends_at=None), topology
    )


@pytest.mark.parametrize(
    ("kind", "scope"),
    [
        ("device", "cam-000-404"),
        ("site", "site-nowhere"),
        ("unit", "9999"),
        ("domain", "weather"),
        ("unit", "'; DROP TABLE maintenance_windows; --"),
    ],
)
def test_unknown_scopes_are_refused_by_name(topology: Topology, kind: str, scope: str) -> None:
    reason = refused(window(scope_kind=kind, scope=scope), topology)
    assert f"no {kind} {scope!r}" in reason


def test_every_scope_kind_that_exists_passes(topology: Topology) -> None:
    for kind, scope in [("device", NODE), ("site", "site-991-hosp"), ("unit", "991")]:
        window(scope_kind=kind, scope=scope).check(topology, NOW)
    for domain in ("network", "camera", "telehealth"):
        assert domain in domains()
        window(scope_kind="domain", scope=domain).check(topology, NOW)


def test_a_recurrence_expands_in_vietnam_time_across_days() -> None:
    # 23:30 every night in Vietnam for two hours: crosses Vietnam's midnight, 16:30 UTC
    occ = expand(
        "30 23 * * *",
        dt.timedelta(hours=2),
        vn(2026, 11, 27, 0, 0),
        None,
        NOW,
        NOW + dt.timedelta(days=3),
    )
    assert occ == [
        (vn(2026, 11, d, 23, 30), vn(2026, 11, d, 23, 30) + dt.timedelta(hours=2)) for d in (27, 28)
    ]
    assert occ[0][0] == dt.datetime(2026, 11, 27, 16, 30, tzinfo=dt.UTC)
    assert occ[0][1].astimezone(VN_TZ).day == 28
    # Monday 01:00 in Vietnam is Sunday 18:00 UTC
    (monday,) = firings("0 1 * * 1", NOW, NOW + dt.timedelta(days=7), 10)
    assert monday == dt.datetime(2026, 11, 29, 18, 0, tzinfo=dt.UTC)
    assert monday.astimezone(VN_TZ).weekday() == 0


def test_a_recurrence_starts_at_starts_at_and_is_cut_at_ends_at() -> None:
    start, end = vn(2026, 11, 27, 2, 0), vn(2026, 11, 29, 2, 30)
    occ = expand("0 2 * * *", dt.timedelta(hours=1), start, end, NOW, NOW + dt.timedelta(days=9))
    assert [s for s, _ in occ] == [vn(2026, 11, d, 2, 0) for d in (27, 28, 29)]
    assert occ[-1][1] == end  # the last occurrence ends with the recurrence
    # a one-off window is its own single occurrence, once
    assert expand(None, None, start, end, NOW, NOW + dt.timedelta(days=9)) == [(start, end)]
    assert expand(None, None, start, end, start + dt.timedelta(seconds=1), end) == []


def test_window_matchers_per_scope_kind(topology: Topology) -> None:
    assert window_matchers("device", CAMERA, topology) == [[Matcher("device_id", CAMERA)]]
    assert window_matchers("device", NODE, topology) == [
        [Matcher("device_id", NODE)],
        [Matcher("node_id", NODE)],
        # the devices behind the node, through every node below it
        [Matcher("upstream_node", r"nn\-991|nn\-991\-001|nn\-991\-002", isRegex=True)],
    ]
    assert window_matchers("site", "site-991-hosp", topology) == [
        [Matcher("site", "site-991-hosp")]
    ]
    assert window_matchers("domain", "network", topology) == [[Matcher("domain", "network")]]
    assert unit_subtree(topology, "991") == ["991", "991-001", "991-002"]
    ((unit,),) = window_matchers("unit", "991", topology)
    assert unit == Matcher("unit", r"991|991\-001|991\-002", isRegex=True)
    assert str(unit) == r'unit=~"991|991\-001|991\-002"'


def test_incident_matchers_name_exactly_the_incidents_alerts(topology: Topology) -> None:
    assert incident_matchers(t.INCIDENT_SITE_ISOLATED, NODE, topology) == [
        [Matcher("node_id", NODE)],
        [Matcher("upstream_node", NODE)],
        [Matcher("device_id", NODE)],
    ]
    for kind in (t.INCIDENT_DEVICE_DOWN, t.INCIDENT_DEGRADED, t.INCIDENT_FLAPPING):
        assert incident_matchers(kind, CAMERA, topology) == [[Matcher("device_id", CAMERA)]]
    assert incident_matchers(t.INCIDENT_DEVICE_DOWN, "nn-99-po01", topology) == [
        [Matcher("device_id", "nn-99-po01")],
        [Matcher("node_id", "nn-99-po01")],
    ]
