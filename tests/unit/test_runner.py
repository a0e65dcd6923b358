"""`ioc run`'s own parts: its options, the weekly maintenance window it creates once, and the
services it starts or reuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ioc.config import Settings
from ioc.runner import (
    WEEKLY_CRON,
    WEEKLY_NOTE,
    RunOptions,
    ensure_weekly_maintenance,
    start_service,
)


class FakeClient:
    """The two calls ensure_weekly_maintenance makes, on a list in memory."""

    def __init__(self) -> None:
        self.windows: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []

    def list_windows(self, include_cancelled: bool = False) -> list[dict[str, Any]]:
        return [w for w in self.windows if include_cancelled or not w.get("cancelled_at")]

    def create_window(self, window: dict[str, Any]) -> dict[str, Any]:
        out = {**window, "id": len(self.windows) + 1, "cancelled_at": None}
        self.windows.append(out)
        self.created.append(window)
        return out


def test_weekly_window_is_created_once() -> None:
    client = FakeClient()
    first = ensure_weekly_maintenance(client, "nn-991-001")
    assert "created" in first
    assert client.created == [
        {
            "scope_kind": "device",
            "scope": "nn-991-001",
            "starts_at": client.created[0]["starts_at"],
            "cron": WEEKLY_CRON,
            "duration_minutes": 60,
            "note": WEEKLY_NOTE,
        }
    ]
    again = ensure_weekly_maintenance(client, "nn-991-001")
    assert "created" not in again and "#1" in again
    assert len(client.created) == 1


def test_a_cancelled_weekly_window_stays_cancelled() -> None:
    client = FakeClient()
    ensure_weekly_maintenance(client, "nn-991-001")
    client.windows[0]["cancelled_at"] = "2026-11-25T01:00:00+00:00"
    assert "cancelled" in ensure_weekly_maintenance(client, "nn-991-001")
    assert len(client.created) == 1


def test_an_operators_own_window_on_the_node_does_not_count() -> None:
    client = FakeClient()
    client.windows.append(
        {
            "id": 9,
            "scope": "nn-991-001",
            "cron": WEEKLY_CRON,
            "note": "thay UPS",
            "cancelled_at": None,
        }
    )
    assert "created" in ensure_weekly_maintenance(client, "nn-991-001")


@pytest.fixture
def healthy_server() -> Iterator[str]:
    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


def test_a_service_already_answering_is_reused(healthy_server: str, tmp_path: Path) -> None:
    assert start_service(Settings(), ["pager"], "pager", healthy_server, tmp_path) is None
    assert not (tmp_path / "pager.log").exists()


def test_run_options_from_the_command_line() -> None:
    from ioc.cli import build_parser

    args = build_parser().parse_args(
        ["run", "--scenario", "demo", "--fault", "node_down:nn-991@60+300", "--fault",
         "device_dark:camera#0@10+60", "--faults", "plan.yaml", "--seed", "7"]
    )  # fmt: skip
    assert args.fault == ["node_down:nn-991@60+300", "device_dark:camera#0@10+60"]
    assert (args.faults, args.seed, args.background_faults, args.operations) == (
        "plan.yaml",
        7,
        True,
        True,
    )
    args = build_parser().parse_args(["run", "--no-background-faults", "--no-operations"])
    assert not args.background_faults and not args.operations
    assert RunOptions().background_faults and RunOptions().operations


def test_a_bad_fault_plan_fails_before_the_stack_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from ioc.errors import IocError
    from ioc.runner import run_main_job

    def no_stack(*_args: object) -> None:
        raise AssertionError("the stack must not start for a bad plan")

    monkeypatch.setattr("ioc.runner.prepare_infrastructure", no_stack)
    with pytest.raises(IocError, match="nn-nowhere"):
        run_main_job(
            Settings(),
            "demo",
            1.0,
            options=RunOptions(fault_flags=["node_down:nn-nowhere@0+10"]),
        )
