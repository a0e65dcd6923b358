"""Incidents in the open formats against the real stack: the operations API's
``/incidents/{id}/cap.xml`` and ``/ngsi-ld`` on a stored incident, and ``ioc incidents
export`` on ``ioc.incidents.v1``; every document checked against the committed schemas."""

from __future__ import annotations

import argparse
import asyncio
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract.exchange import CAP_NS
from ioc.contract.exchange.validate import check_cap, check_ngsi_ld
from ioc.contract.topics import INCIDENT_EVENTS
from ioc.kafka_clients import aiokafka_common
from tests.support.ops_server import ADMIN_TOKEN, OpsService, ops_service, store_incident

NS = {"cap": CAP_NS}
OPENED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
ROOT = "nn-991-001"


async def _stored_incident(svc: OpsService) -> int:
    """A site-isolated node, opened, acknowledged with a note, resolved."""
    acknowledged = OPENED + timedelta(minutes=5)
    resolved = OPENED + timedelta(hours=1)
    return await store_incident(
        svc,
        ROOT,
        "site-isolated",
        "critical",
        "resolved",
        f"Site isolated: node {ROOT} is down",
        OPENED,
        affected=svc.topology.devices_behind(ROOT),
        acknowledged_by="op-an",
        resolved=resolved,
        steps=[
            ("opened", "open", "ioc", "down", OPENED),
            ("acknowledged", "acknowledged", "op-an", "đã cử đội", acknowledged),
            ("resolved", "resolved", "ioc", "up", resolved),
        ],
    )


async def test_api_serves_a_stored_incident_as_cap_and_ngsi_ld(namespace: Settings) -> None:
    async with ops_service(namespace) as svc, aiohttp.ClientSession() as http:
        incident_id = await _stored_incident(svc)
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        base = f"{svc.url}/api/v1/incidents/{incident_id}"

        async with http.get(f"{base}/cap.xml", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("application/cap+xml")
            body = await resp.read()
        check_cap(body)
        alert = ET.fromstring(body)
        assert alert.findtext("cap:msgType", namespaces=NS) == "Update"
        assert alert.findtext("cap:identifier", namespaces=NS) == f"ioc-99-{incident_id}-3"
        assert f"ioc-99-{incident_id}-1" in (alert.findtext("cap:references", namespaces=NS) or "")
        assert "Phường Đại Châu" in body.decode("utf-8")
        assert "op-an" not in body.decode("utf-8")

        async with http.get(f"{base}/cap.xml?seq=1", headers=auth) as resp:
            first = ET.fromstring(await resp.read())
        assert first.findtext("cap:msgType", namespaces=NS) == "Alert"

        async with http.get(f"{base}/ngsi-ld", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("application/ld+json")
            entity = json.loads(await resp.read())
        check_ngsi_ld(entity)
        assert entity["id"] == f"urn:ngsi-ld:Alert:99:{incident_id}"
        assert entity["validTo"] and entity["@context"]

        for path, status in (
            (f"{base}/cap.xml?seq=9", 404),
            (f"{svc.url}/api/v1/incidents/999999/ngsi-ld", 404),
            (f"{base}/cap.xml?seq=0", 422),
        ):
            async with http.get(path, headers=auth) as resp:
                assert resp.status == status, (path, await resp.text())
                assert "error" in json.loads(await resp.read())
        async with http.get(f"{base}/cap.xml") as resp:
            assert resp.status == 401


async def _publish(settings: Settings, events: list[ev.IncidentEvent]) -> None:
    producer = AIOKafkaProducer(**aiokafka_common(settings), acks="all")
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(
                settings.topic(INCIDENT_EVENTS.name), ev.encode(e), key=e.root_device.encode()
            )
    finally:
        await producer.stop()


@pytest.mark.timeout(120)
async def test_cli_export_reads_the_incident_topic(
    namespace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ioc.bootstrap import bootstrap
    from ioc.services.cli import cmd_incidents_export

    settings = namespace.model_copy(update={"scenario": "demo"})
    topology = await bootstrap(settings, "demo")
    opened_ms = int(OPENED.timestamp() * 1000)
    base = ev.IncidentEvent(
        incident_id=5,
        seq=1,
        event="opened",
        kind="device-down",
        severity="warning",
        status="open",
        title="camera cam-991-003 is down",
        root_device="cam-991-003",
        device_class="camera",
        unit_code=topology.unit_of_device["cam-991-003"],
        site_id=topology.devices["cam-991-003"].site,
        affected=["cam-991-003"],
        at_ms=opened_ms,
    )
    steps = [
        base,
        msgspec.structs.replace(
            base, seq=2, event="resolved", status="resolved", at_ms=opened_ms + 600_000
        ),
    ]
    await _publish(settings, steps)

    def run(**kw: object) -> int:
        args = argparse.Namespace(
            id=None, format="cap", since=None, out=None, sender=None, cap_status="Test"
        )
        for key, value in kw.items():
            setattr(args, key, value)
        return cmd_incidents_export(args, settings)

    out = tmp_path / "cap"
    assert await asyncio.to_thread(run, out=str(out)) == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["ioc-99-5-1.xml", "ioc-99-5-2.xml"]
    for f in files:
        check_cap(f.read_bytes())
    assert await asyncio.to_thread(run, format="ngsi-ld", id=5) == 0
    entities = json.loads(capsys.readouterr().out)
    assert len(entities) == 1
    check_ngsi_ld(entities[0])
    assert entities[0]["data"]["status"] == "resolved"
