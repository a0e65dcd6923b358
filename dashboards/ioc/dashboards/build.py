"""Build every dashboard to JSON (committed under dashboards/ioc/dashboards/generated); push to
Grafana."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import (
    cameras,
    feeds,
    network,
    overview,
    pipeline,
    portal,
    sla,
    soc,
    telehealth,
    vconf,
)
from ioc.dashboards.grafana_json import saved_model
from ioc.errors import IocError

BUILDERS: dict[str, Callable[[Thresholds], g.Dashboard]] = {
    "overview": overview.build,
    "cameras": cameras.build,
    "telehealth": telehealth.build,
    "network": network.build,
    "sla": sla.build,
    "pipeline": pipeline.build,
    "feeds": feeds.build,
    "vconf": vconf.build,
    "portal": portal.build,
    "soc": soc.build,
}
GENERATED = Path(__file__).resolve().parent / "generated"


def dashboard_json(name: str, th: Thresholds = THRESHOLDS) -> dict[str, Any]:
    """One dashboard as the JSON Grafana 11-13 saves, its thresholds from ``th``.

    grafanalib builds it; :func:`ioc.dashboards.grafana_json.saved_model` drops the legacy
    keys grafanalib still writes and fills in what Grafana writes on save.
    """
    data: dict[str, Any] = json.loads(
        json.dumps(BUILDERS[name](th).to_json_data(), cls=DashboardEncoder)
    )
    return saved_model(data)


def render(name: str, th: Thresholds = THRESHOLDS) -> str:
    return json.dumps(dashboard_json(name, th), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build(out: Path = GENERATED) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in BUILDERS:
        path = out / f"ioc-{name}.json"
        path.write_text(render(name))
        written.append(path)
    return written


def push(url: str, token: str, folder_uid: str | None = None) -> list[str]:
    """Upload every dashboard through Grafana's HTTP API (overwrite by UID)."""
    import urllib.error
    import urllib.request

    done = []
    for name in BUILDERS:
        body = json.dumps(
            {
                "dashboard": dashboard_json(name),
                "overwrite": True,
                "folderUid": folder_uid,
                "message": "ioc dashboards push",
            }
        ).encode()
        req = urllib.request.Request(
            f"{url.rstrip('/')}/api/dashboards/db",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                done.append(f"{name}: HTTP {resp.status}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise IocError(
                f"Grafana at {url} refused dashboard {name}: HTTP {exc.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise IocError(
                f"cannot reach Grafana at {url}: {getattr(exc, 'reason', exc)}"
            ) from None
    return done
