"""Which Alertmanager matcher sets an incident's silences get when devices were correlated
into it (the SOC feed's members in ``affected``), without Alertmanager or a database."""

from __future__ import annotations

import pytest

from ioc.contract import tables as t
from ioc.contract.topology import Topology, load_scenario
from ioc.services.ops.alertmanager import Matcher, incident_matchers, silence_matchers

NODE = "nn-991-001"  # a commune node
SENSOR = "soc-991-001"  # its site's SOC sensor, behind it
CAMERA = "cam-991-001"


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_scenario("demo")


def test_the_demo_has_what_the_tests_assume(topology: Topology) -> None:
    assert topology.devices[NODE].device_class == "netnode"
    assert topology.devices[SENSOR].device_class == "soc"
    assert topology.devices[SENSOR].upstream == NODE
    assert topology.devices[CAMERA].device_class == "camera"


def test_a_degraded_link_with_its_sensor_correlated(topology: Topology) -> None:
    """SecurityAttackOnDegradedLink is labelled device_id=<sensor>: the sensor's set."""
    assert incident_matchers(t.INCIDENT_DEGRADED, NODE, topology, [NODE, SENSOR]) == [
        [Matcher("device_id", NODE)],
        [Matcher("node_id", NODE)],
        [Matcher("device_id", SENSOR)],
    ]
    # affected as the agent stores it (sorted, the root anywhere in it): same answer
    assert incident_matchers(
        t.INCIDENT_DEGRADED, NODE, topology, sorted([SENSOR, NODE])
    ) == incident_matchers(t.INCIDENT_DEGRADED, NODE, topology, [NODE, SENSOR])


def test_a_security_alert_with_its_node_correlated(topology: Topology) -> None:
    """A node member gets node_id too (NetworkLinkDegraded and the node's other alerts)."""
    assert incident_matchers(t.INCIDENT_SECURITY, SENSOR, topology, [NODE, SENSOR]) == [
        [Matcher("device_id", SENSOR)],
        [Matcher("device_id", NODE)],
        [Matcher("node_id", NODE)],
    ]


def test_members_are_deduplicated_in_a_stable_order(topology: Topology) -> None:
    members = [CAMERA, SENSOR, NODE, CAMERA, SENSOR, "unknown-device"]
    sets = incident_matchers(t.INCIDENT_DEVICE_DOWN, NODE, topology, members)
    assert sets == [
        [Matcher("device_id", NODE)],
        [Matcher("node_id", NODE)],
        [Matcher("device_id", CAMERA)],
        [Matcher("device_id", SENSOR)],
        [Matcher("device_id", "unknown-device")],  # not (yet) in the topology: device_id only
    ]
    assert len({frozenset(s) for s in sets}) == len(sets)
    assert sets == incident_matchers(t.INCIDENT_DEVICE_DOWN, NODE, topology, members)


def test_without_members_nothing_changes(topology: Topology) -> None:
    for kind in (
        t.INCIDENT_DEVICE_DOWN,
        t.INCIDENT_DEGRADED,
        t.INCIDENT_FLAPPING,
        t.INCIDENT_SECURITY,
    ):
        assert incident_matchers(kind, CAMERA, topology) == [[Matcher("device_id", CAMERA)]]
        assert incident_matchers(kind, CAMERA, topology, [CAMERA]) == [
            [Matcher("device_id", CAMERA)]
        ]
    assert incident_matchers(t.INCIDENT_FLAPPING, NODE, topology, []) == [
        [Matcher("device_id", NODE)],
        [Matcher("node_id", NODE)],
    ]


def test_site_isolated_ignores_its_affected_devices(topology: Topology) -> None:
    """upstream_node=N already covers every device behind N."""
    behind = [d for d in topology.devices if NODE in topology.upstream_chain(d)]
    assert SENSOR in behind
    assert incident_matchers(t.INCIDENT_SITE_ISOLATED, NODE, topology, [NODE, *behind]) == [
        [Matcher("node_id", NODE)],
        [Matcher("upstream_node", NODE)],
        [Matcher("device_id", NODE)],
    ]


def test_silence_matchers_reads_alertmanagers_listing() -> None:
    listed = {
        "id": "s-1",
        "matchers": [
            {"name": "node_id", "value": NODE, "isRegex": False, "isEqual": True},
            {"name": "device_id", "value": "cam-.*", "isRegex": True},
        ],
    }
    assert silence_matchers(listed) == frozenset(
        {Matcher("device_id", "cam-.*", isRegex=True), Matcher("node_id", NODE)}
    )
    assert silence_matchers({"id": "s-2"}) == frozenset()
