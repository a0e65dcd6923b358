"""The inventory template, imported as it ships (its units sheet: the demo province's), runs
end to end: bootstrap stores its devices with their poll addresses, the simulators and a real
``ioc worker`` land rows for them in the raw tables, and the state evaluator tracks them
(docs/inventory.md). The cheapest whole path: bootstrap, one worker, a 10-second load run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap
from ioc.cli import main
from ioc.config import Settings
from ioc.contract.tables import RAW
from ioc.contract.topology import load_scenario
from ioc.simulators.run import SimConfig, run_simulation
from tests.support.db import query
from tests.support.processes import Worker
from tests.support.wait import wait_for

RAW_DEVICES_SQL = " UNION ".join(f"SELECT DISTINCT device_id FROM {t}" for t in RAW.values())
REPORTING = ("netnode", "camera", "telehealth", "vconf", "soc")
"""Classes whose every device reports on a period (portal desks report dossiers in working
hours only, so the test does not wait for them)."""


def _raw_devices(settings: Settings) -> set[str]:
    return {row["device_id"] for row in query(settings, RAW_DEVICES_SQL)}


def test_the_imported_template_runs_end_to_end(
    namespace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template, scenario = tmp_path / "inventory.xlsx", tmp_path / "province.yaml"
    assert main(["inventory", "template", "--out", str(template)]) == 0
    assert main(["inventory", "import", str(template), "--out", str(scenario)]) == 0, (
        capsys.readouterr().err
    )
    topology = load_scenario(str(scenario))
    assert len(topology.devices) == 15

    asyncio.run(bootstrap(namespace, str(scenario)))
    stored = query(namespace, "SELECT id, attributes->>'address' AS address FROM devices")
    assert {r["id"]: r["address"] for r in stored} == {
        d.id: d.attributes["address"] for d in topology.devices.values()
    }

    reporting = {d.id for d in topology.devices.values() if d.device_class in REPORTING}
    worker = Worker(namespace, str(scenario), tmp_path / "worker.log").start()
    try:
        worker.wait_serving()
        summary = run_simulation(
            namespace,
            SimConfig(scenario=str(scenario), mode="rate", rate=200, duration_s=10, progress=False),
        )
        assert summary.errors == 0, summary.first_error
        wait_for(
            lambda: reporting <= _raw_devices(namespace),
            40,
            what=f"raw rows from every reporting device ({worker.log_tail()})",
        )
        assert _raw_devices(namespace) <= set(topology.devices)  # nothing from elsewhere
        wait_for(
            lambda: (
                {
                    r["device_id"]
                    for r in query(
                        namespace,
                        "SELECT device_id FROM device_state WHERE device_id = ANY($1::text[])",
                        sorted(reporting),
                    )
                }
                == reporting
            ),
            30,
            what="device_state rows for the inventory's devices",
        )
    finally:
        worker.stop()
