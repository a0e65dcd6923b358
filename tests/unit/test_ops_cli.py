"""The operator commands: argument parsing, local checks (dates, periods, windows), and the
one-line errors for a service that is down or refuses (against loopback HTTP servers)."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ioc.config import Settings
from ioc.services import cli as scli
from ioc.services.ops.client import OpsClient, OpsClientError, OpsServiceDown
from ioc.services.ops.common import VN_TZ


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ioc")
    sub = parser.add_subparsers(dest="command", required=True)
    scli.register_operations(sub)
    return parser


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class _Api(BaseHTTPRequestHandler):
    """Answers every request with the class's (status, body, content type); records them."""

    status: ClassVar[int] = 200
    body: ClassVar[bytes] = b"[]"
    content_type: ClassVar[str] = "application/json"
    seen: ClassVar[list[tuple[str, str, str | None, bytes]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, self.headers.get("Authorization"), data))
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Api]]]:
    handler = type("Api", (_Api,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _settings(url: str) -> Settings:
    return Settings(ops_url=url, ops_token="cli-test-token")  # type-checked by pydantic


# --- parsing ---------------------------------------------------------------------------------


def test_parses_every_command() -> None:
    p = _parser()
    a = p.parse_args(["incidents", "list", "--unit", "132", "--severity", "critical"])
    assert a.handler is scli.cmd_incidents_list and a.unit == "132" and a.limit == 100
    a = p.parse_args(["incidents", "ack", "7", "--note", "đang xử lý"])
    assert a.handler is scli.cmd_incidents_act and a.id == 7 and a.note == "đang xử lý"
    a = p.parse_args(["incidents", "assign", "7", "--to", "lan"])
    assert a.to == "lan"
    a = p.parse_args(["incidents", "resolve", "7", "--reason", "fixed the fibre"])
    assert a.reason == "fixed the fibre"
    assert p.parse_args(["incidents", "events"]).id is None
    a = p.parse_args(
        ["maintenance", "add", "--scope-kind", "device", "--scope", "nn-132-001", "--cron",
         "0 2 * * 0", "--duration-minutes", "60"]
    )  # fmt: skip
    assert a.handler is scli.cmd_maintenance_add and a.duration_minutes == 60
    assert p.parse_args(["maintenance", "list", "--all"]).all
    assert p.parse_args(["maintenance", "cancel", "3"]).id == 3
    a = p.parse_args(["report", "sla", "--unit", "15", "--period", "2026-11", "--format", "pdf"])
    assert a.format == "pdf" and a.lang == "vi"
    assert p.parse_args(["oncall", "show", "--domain", "network"]).domain == "network"


@pytest.mark.parametrize(
    "argv",
    [
        ["incidents", "show", "abc"],
        ["incidents", "show", "0"],
        ["incidents", "assign", "7"],  # --to is required
        ["incidents", "resolve", "7"],  # --reason is required
        ["incidents", "comment", "7"],  # --note is required
        ["incidents", "list", "--severity", "fatal"],
        ["maintenance", "add", "--scope-kind", "galaxy", "--scope", "x"],
        ["maintenance", "add", "--scope-kind", "device", "--scope", "x", "--duration-minutes", "0"],
        ["report", "sla", "--unit", "15", "--period", "2026-11", "--format", "docx"],
    ],
)
def test_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(argv)


# --- local checks ----------------------------------------------------------------------------


def test_dates_are_vietnam_time_unless_zoned() -> None:
    assert scli.parse_when("2026-11-25T08:00", "--since") == datetime(
        2026, 11, 25, 8, 0, tzinfo=VN_TZ
    )
    assert scli.parse_when("2026-11-25T01:00Z", "--since").utcoffset() is not None


@pytest.mark.parametrize("text", ["2026-13-01", "yesterday", "2026-02-30", "25/11/2026"])
def test_bad_dates_are_one_line_errors(text: str) -> None:
    with pytest.raises(scli.UsageError, match="--since") as err:
        scli.parse_when(text, "--since")
    assert "\n" not in str(err.value)


def test_until_before_since_is_refused() -> None:
    args = _parser().parse_args(
        ["incidents", "list", "--since", "2026-11-25", "--until", "2026-11-24"]
    )
    with pytest.raises(scli.UsageError, match="not after"):
        scli.incident_filters(args)


@pytest.mark.parametrize("good", ["2026", "2026-Q4", "2026-11", "2026-W47", "2026-11-25"])
def test_periods(good: str) -> None:
    assert scli.check_period(good) == good


@pytest.mark.parametrize("bad", ["2026-13", "2026-W54", "2026-Q5", "11-2026", "2026-02-30", ""])
def test_bad_periods(bad: str) -> None:
    with pytest.raises(scli.UsageError, match="--period"):
        scli.check_period(bad)


def _add(*extra: str) -> argparse.Namespace:
    return _parser().parse_args(
        ["maintenance", "add", "--scope-kind", "device", "--scope", "nn-132-001", *extra]
    )


def test_window_bodies() -> None:
    now = datetime(2026, 11, 25, 8, 0, tzinfo=VN_TZ)
    body = scli.window_body(_add("--cron", "0 2 * * 0", "--duration-minutes", "60"), now)
    assert body["cron"] == "0 2 * * 0" and body["duration_minutes"] == 60
    assert body["starts_at"] == now.isoformat() and "ends_at" not in body
    body = scli.window_body(_add("--start", "2026-11-29T02:00", "--end", "2026-11-29T03:00"))
    assert body["starts_at"] == "2026-11-29T02:00:00+07:00"
    assert body["ends_at"] == "2026-11-29T03:00:00+07:00"
    body = scli.window_body(_add("--duration-minutes", "30"), now)
    assert body["ends_at"] == "2026-11-25T08:30:00+07:00"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (("--start", "2026-11-29T03:00", "--end", "2026-11-29T02:00"), "before it starts"),
        (("--cron", "0 2 * * 0"), "--duration-minutes"),
        (("--cron", "0 2 * *", "--duration-minutes", "60"), "5 fields"),
        ((), "--end"),
        (("--end", "soon"), "--end"),
    ],
)
def test_bad_windows(extra: tuple[str, ...], reason: str) -> None:
    with pytest.raises(scli.UsageError, match=reason):
        scli.window_body(_add(*extra))


# --- talking to the service ------------------------------------------------------------------


def test_service_down_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(OpsServiceDown) as err:
        OpsClient(url, "t", timeout=2).list_incidents()
    message = str(err.value)
    assert f"the operations service at {url} is not answering" in message
    assert "ioc ops serve" in message and "ioc run" in message and "\n" not in message


def test_a_command_against_a_service_that_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["incidents", "list"])
    with pytest.raises(OpsServiceDown):
        args.handler(args, _settings(f"http://127.0.0.1:{_closed_port()}"))


def test_the_whole_cli_says_it_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ioc.cli import main

    monkeypatch.setenv("IOC_OPS_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("IOC_OPS_TOKEN", "cli-test-token")
    assert main(["incidents", "show", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ioc: error: the operations service at") and "\n" not in err
    assert "cli-test-token" not in err


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, {"error": "no incident 7"}, "no incident 7 (404)"),
        (409, {"error": "incident 7 is resolved"}, "incident 7 is resolved (409)"),
        (422, {"detail": [{"loc": ["body", "note"], "msg": "too long"}]}, "note: too long"),
        (401, {"error": "unknown token"}, "refused the token (401: unknown token)"),
        (403, {"error": "viewer may not acknowledge"}, "role may not do that (403"),
        (500, {"error": "internal error"}, "failed (500: internal error); see its log"),
    ],
)
def test_refusals_carry_the_service_reason(
    api: tuple[str, type[_Api]], status: int, body: dict[str, Any], expected: str
) -> None:
    url, handler = api
    handler.status, handler.body = status, json.dumps(body).encode()
    with pytest.raises(OpsClientError) as err:
        OpsClient(url, "secret-token").act(7, "acknowledge", note="x")
    assert expected in str(err.value)
    assert err.value.status == status
    assert "secret-token" not in str(err.value)


def test_actions_send_the_token_and_body(
    api: tuple[str, type[_Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, handler = api
    incident = {"id": 7, "severity": "critical", "status": "acknowledged", "title": "x"}
    handler.body = json.dumps(incident).encode()
    args = _parser().parse_args(["incidents", "assign", "7", "--to", "lan", "--note", "đi"])
    assert args.handler(args, _settings(url)) == 0
    method, path, auth, data = handler.seen[-1]
    assert (method, path, auth) == ("POST", "/api/v1/incidents/7/assign", "Bearer cli-test-token")
    assert json.loads(data) == {"note": "đi", "assignee": "lan"}
    assert "#7" in capsys.readouterr().out

    args = _parser().parse_args(["incidents", "resolve", "7", "--reason", "fibre spliced"])
    args.handler(args, _settings(url))
    assert handler.seen[-1][1] == "/api/v1/incidents/7/resolve"
    assert json.loads(handler.seen[-1][3]) == {"note": "fibre spliced"}


def test_list_sends_the_filters(api: tuple[str, type[_Api]]) -> None:
    url, handler = api
    args = _parser().parse_args(
        ["incidents", "list", "--unit", "132", "--status", "active", "--since", "2026-11-25"]
    )
    args.handler(args, _settings(url))
    path = handler.seen[-1][1]
    assert path.startswith("/api/v1/incidents?")
    assert "unit=132" in path and "status=active" in path
    assert "since=2026-11-25T00%3A00%3A00%2B07%3A00" in path


def test_sla_report_goes_to_the_file(api: tuple[str, type[_Api]], tmp_path: Path) -> None:
    url, handler = api
    handler.body, handler.content_type = b"%PDF-1.4 fake", "application/pdf"
    out = tmp_path / "sla.pdf"
    args = _parser().parse_args(
        ["report", "sla", "--unit", "15", "--period", "2026-11", "--format", "pdf",
         "--out", str(out), "--lang", "en"]
    )  # fmt: skip
    assert args.handler(args, _settings(url)) == 0
    assert out.read_bytes() == b"%PDF-1.4 fake"
    path = handler.seen[-1][1]
    assert path.startswith("/api/v1/sla/report?") and "format=pdf" in path and "lang=en" in path


def test_pdf_needs_a_file_and_periods_are_checked_first() -> None:
    settings = _settings(f"http://127.0.0.1:{_closed_port()}")
    args = _parser().parse_args(
        ["report", "sla", "--unit", "15", "--period", "2026-11", "--format", "pdf"]
    )
    with pytest.raises(scli.UsageError, match="--out"):
        args.handler(args, settings)
    args = _parser().parse_args(["report", "sla", "--unit", "15", "--period", "2026-13"])
    with pytest.raises(scli.UsageError, match="--period"):
        args.handler(args, settings)


def test_no_answer_is_not_service_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connected, sent, no answer: the action may have been applied, and the CLI says so
    (not "not answering"); an action waits longer than a read."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel accepts the connection; nothing ever answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = OpsClient(url, "t", timeout=0.3)
        with pytest.raises(OpsClientError) as err:
            client.request("POST", "/api/v1/incidents/7/ack", unanswered="check it")
    assert not isinstance(err.value, OpsServiceDown)
    assert "no answer within 0.3 s; check it" in str(err.value)

    seen: dict[str, Any] = {}

    def fake_json(self: OpsClient, method: str, path: str, **kw: Any) -> dict[str, Any]:
        seen.update(kw)
        return {"id": 7}

    monkeypatch.setattr(OpsClient, "json", fake_json)
    OpsClient(url, "t").act(7, "acknowledge")
    assert seen["timeout"] >= 60 and "ioc incidents show 7" in seen["unanswered"]


def test_resolve_sends_the_reason_and_keeps_a_note(api: tuple[str, type[_Api]]) -> None:
    url, handler = api
    handler.body = json.dumps({"id": 7, "status": "resolved"}).encode()
    args = _parser().parse_args(
        ["incidents", "resolve", "7", "--reason", "fibre spliced", "--note", "by team 2"]
    )
    args.handler(args, _settings(url))
    assert json.loads(handler.seen[-1][3]) == {"note": "fibre spliced (by team 2)"}
    args = _parser().parse_args(["incidents", "resolve", "7", "--reason", "  "])
    with pytest.raises(scli.UsageError, match="--reason"):
        args.handler(args, _settings(url))
