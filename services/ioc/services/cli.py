"""``ioc pager`` (the Alertmanager webhook receiver) and the operator's commands: ``ioc
incidents``, ``ioc maintenance``, ``ioc oncall`` and ``ioc report sla``.

The operator commands talk to the operations service over HTTP (:mod:`ioc.services.ops.client`)
with the CLI's token, so a terminal gets the same roles, audit rows and incident events as the
console. Only ``ioc incidents events`` reads Kafka directly: it shows the raw event stream,
which is what one checks when the service itself is in doubt.

Times typed without a zone are Vietnam time, like everything the operators read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ioc.config import Settings
from ioc.errors import IocError
from ioc.services.ops.common import VN_TZ

SEVERITIES = ("critical", "warning", "info")
STATUSES = ("open", "acknowledged", "resolved", "active")
SCOPE_KINDS = ("device", "site", "unit", "domain")
REPORT_FORMATS = ("csv", "html", "pdf")
ACTIONS = {"ack": "acknowledge", "assign": "assign", "comment": "comment", "resolve": "resolve"}


class UsageError(IocError):
    """Input the CLI can reject before asking the service (bad dates, periods, missing ids)."""


# --- pager -----------------------------------------------------------------------------------


def cmd_pager(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.services.pager import serve

    if args.port:
        settings = settings.model_copy(update={"pager_port": args.port})
    settings = settings.for_kafka_service("pager")  # its own Kafka user: reads incidents
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("pager", help="run the pager receiver (Alertmanager webhook)")
    p.add_argument("--port", type=int, help="listen port (default IOC_PAGER_PORT)")
    p.set_defaults(handler=cmd_pager)
    register_operations(sub)
    from ioc.services.ops import cli as ops_cli

    ops_cli.register(sub)


# --- input checks ----------------------------------------------------------------------------


def parse_when(text: str, flag: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is Vietnam time."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{flag} {text!r}: not a date/time; expected ISO 8601 such as 2026-11-25 or "
            "2026-11-25T08:00 (Vietnam time unless a zone is given, e.g. +07:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=VN_TZ)
    return when


_PERIOD = re.compile(r"^(\d{4})(?:-(?:(\d{2})(?:-(\d{2}))?|W(\d{2})|Q([1-4])))?$")


def check_period(text: str) -> str:
    """An SLA period: 2026, 2026-Q4, 2026-11, 2026-W47 or 2026-11-25 (Vietnam time)."""
    match = _PERIOD.match(text.strip())
    bad = UsageError(
        f"--period {text!r}: expected a year (2026), quarter (2026-Q4), month (2026-11), "
        "ISO week (2026-W47) or day (2026-11-25)"
    )
    if match is None:
        raise bad
    year, month, day, week, _quarter = match.groups()
    try:
        if month is not None:
            date(int(year), int(month), int(day or 1))
        if week is not None:
            date.fromisocalendar(int(year), int(week), 1)
    except ValueError:
        raise bad from None
    return text.strip()


def _positive_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a positive integer)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a positive integer)")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


# --- output ----------------------------------------------------------------------------------


def _vn(value: Any) -> str:
    """A timestamp from the API as Vietnam wall time (``-`` for none)."""
    if not value:
        return "-"
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is None:
        return when.strftime("%Y-%m-%d %H:%M")
    return when.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _client(settings: Settings) -> Any:
    from ioc.services.ops.client import OpsClient

    return OpsClient.from_settings(settings)


def format_incident_line(inc: dict[str, Any]) -> str:
    unit = inc.get("unit_name") or inc.get("unit_code") or "-"
    who = inc.get("assigned_to") or inc.get("acknowledged_by") or ""
    return (
        f"#{inc.get('id')!s:<6} {inc.get('severity', ''):<8} {inc.get('status', ''):<12} "
        f"{_vn(inc.get('opened_at'))}  {unit:<20} {inc.get('root_device', ''):<14} "
        f"{inc.get('title', '')}" + (f"  [{who}]" if who else "")
    ).rstrip()


def format_incident(inc: dict[str, Any]) -> str:
    lines = [
        format_incident_line(inc),
        f"  kind {inc.get('kind', '-')}, domain {inc.get('domain', '-')}, class "
        f"{inc.get('device_class', '-')}, site {inc.get('site_id') or '-'}, "
        f"{inc.get('affected_count', 0)} affected",
        f"  opened {_vn(inc.get('opened_at'))}, acknowledged {_vn(inc.get('acknowledged_at'))}"
        + (f" by {inc['acknowledged_by']}" if inc.get("acknowledged_by") else "")
        + f", resolved {_vn(inc.get('resolved_at'))}",
    ]
    timeline = inc.get("timeline") or []
    if timeline:
        lines.append("  timeline:")
        for step in timeline:
            actor = step.get("actor") or ""
            extra = f" -> {step['assigned_to']}" if step.get("assigned_to") else ""
            note = f"  {step['note']}" if step.get("note") else ""
            lines.append(
                f"    {_vn(step.get('at'))}  {step.get('event', ''):<13} "
                f"{step.get('status', ''):<12} {actor}{extra}{note}".rstrip()
            )
    escalations = inc.get("escalations") or []
    if escalations:
        lines.append("  escalations:")
        for esc in escalations:
            targets = ", ".join(str(t) for t in esc.get("targets") or [])
            lines.append(f"    {_vn(esc.get('paged_at'))}  level {esc.get('level')}  {targets}")
    affected = inc.get("affected") or []
    if affected:
        lines.append(f"  affected ({len(affected)}):")
        for dev in affected[:50]:
            lines.append(
                f"    {dev.get('device_id', ''):<16} {dev.get('device_class') or '-':<11} "
                f"{dev.get('state') or '-':<20} {dev.get('site_name') or dev.get('site_id') or ''}"
            )
        if len(affected) > 50:
            lines.append(f"    ... and {len(affected) - 50} more")
    pages = inc.get("pages") or []
    if pages:
        lines.append("  pages:")
        for page in pages:
            lines.append(
                f"    {_vn(page.get('received_at'))}  {page.get('status', ''):<9} "
                f"{page.get('alertname', '')}  {page.get('summary') or ''}".rstrip()
            )
    silences = inc.get("silences") or []
    if silences:
        lines.append("  silences: " + ", ".join(str(s) for s in silences))
    return "\n".join(lines)


def format_window(w: dict[str, Any]) -> str:
    if w.get("cron"):
        when = (
            f"cron '{w['cron']}' for {w.get('duration_minutes')} min from {_vn(w.get('starts_at'))}"
        )
        if w.get("ends_at"):
            when += f" until {_vn(w['ends_at'])}"
    else:
        when = f"{_vn(w.get('starts_at'))} -> {_vn(w.get('ends_at'))}"
    state = f"  cancelled {_vn(w['cancelled_at'])}" if w.get("cancelled_at") else ""
    nxt = w.get("next_occurrences") or []
    upcoming = ""
    if nxt and not w.get("cancelled_at"):
        first = nxt[0]
        if isinstance(first, list | tuple) and len(first) == 2:
            upcoming = f"  next {_vn(first[0])} -> {_vn(first[1])}"
    note = f"  ({w['note']})" if w.get("note") else ""
    return (
        f"#{w.get('id')!s:<5} {w.get('scope_kind', ''):<7} {w.get('scope', ''):<16} "
        f"{when}{upcoming}{state}{note}"
    )


# --- incidents -------------------------------------------------------------------------------


def incident_filters(args: argparse.Namespace) -> dict[str, str | int | None]:
    since = parse_when(args.since, "--since") if args.since else None
    until = parse_when(args.until, "--until") if args.until else None
    if since and until and until <= since:
        raise UsageError(f"--until {args.until} is not after --since {args.since}")
    return {
        "unit": args.unit,
        "domain": args.domain,
        "severity": args.severity,
        "status": args.status,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "q": args.q,
        "limit": args.limit,
    }


def cmd_incidents_list(args: argparse.Namespace, settings: Settings) -> int:
    incidents = _client(settings).list_incidents(incident_filters(args))
    if args.json:
        _print_json(incidents)
        return 0
    for inc in incidents:
        print(format_incident_line(inc))
    if not incidents:
        print("no incidents match", file=sys.stderr)
    return 0


def cmd_incidents_show(args: argparse.Namespace, settings: Settings) -> int:
    inc = _client(settings).incident(args.id)
    if args.json:
        _print_json(inc)
    else:
        print(format_incident(inc))
    return 0


def cmd_incidents_act(args: argparse.Namespace, settings: Settings) -> int:
    action = ACTIONS[args.incidents_command]
    if action == "resolve":  # the reason is what the API keeps; a --note is added to it
        reason = (args.reason or "").strip()
        if not reason:
            raise UsageError("resolve needs --reason: why the incident is closed by hand")
        note = f"{reason} ({args.note.strip()})" if (args.note or "").strip() else reason
    else:
        note = args.note or ""
    inc = _client(settings).act(args.id, action, note=note, assignee=getattr(args, "to", None))
    if inc.get("id") is not None:
        print(format_incident_line(inc))
    else:  # 202: sent, the incident agent has not applied it yet
        detail = inc.get("detail") or "sent; the incident's timeline will show it"
        print(f"incident {args.id}: {action} {detail}")
    return 0


def cmd_incidents_events(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.services.incidents import read_incident_events

    log = asyncio.run(read_incident_events(settings))
    for e in log.events:
        if args.id is None or e.incident_id == args.id:
            who = f" by {e.actor}" if e.actor != "ioc" else ""
            print(
                f"#{e.incident_id}.{e.seq} {e.event:<12} {e.status:<12} {e.kind:<14} "
                f"{e.root_device}{who} {e.note}".rstrip()
            )
    return 0


def cmd_incidents_export(args: argparse.Namespace, settings: Settings) -> int:
    """``ioc.incidents.v1`` from its beginning (like ``events``: the openings that updates
    reference are there), the steps since ``--since`` as CAP 1.2 files or NGSI-LD entities."""
    from ioc.contract.exchange.mapping import export_events
    from ioc.contract.topology import load_scenario
    from ioc.services.incidents import read_incident_events

    since = parse_when(args.since, "--since") if args.since else None
    out = Path(args.out) if args.out else None
    topology = load_scenario(settings.scenario)
    log = asyncio.run(read_incident_events(settings))
    done = export_events(
        log.events,
        topology,
        formats=(args.format,),
        since_ms=int(since.timestamp() * 1000) if since else None,
        incident_id=args.id,
        sender=args.sender,
        status=args.cap_status,
    )
    written = write_export(done.cap, done.ngsi_ld, args.format, out)
    for line in done.errors:
        print(f"ioc incidents export: {line}", file=sys.stderr)
    if log.undecodable:
        print(
            f"ioc incidents export: {log.undecodable} undecodable record(s) on the topic skipped",
            file=sys.stderr,
        )
    print(f"{written} exported, {len(done.errors)} refused", file=sys.stderr)
    return 1 if done.errors else 0


def write_export(cap: dict[str, bytes], ngsi_ld: dict[str, Any], fmt: str, out: Path | None) -> int:
    """CAP: one file per message in the folder ``out`` (``<identifier>.xml``), or the one
    message on stdout; NGSI-LD: a JSON array of entities (an NGSI-LD batch upsert body) in the
    file ``out`` or on stdout. Returns how many documents were written."""
    if fmt == "cap":
        if out is None:
            if len(cap) > 1:
                raise UsageError(
                    f"{len(cap)} CAP messages: give --out DIR (one file each), or narrow with "
                    "an incident id and --since"
                )
            for body in cap.values():
                sys.stdout.write(body.decode("utf-8"))
            return len(cap)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for identifier, body in cap.items():
                (out / f"{identifier}.xml").write_bytes(body)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write ({exc.strerror})") from None
        return len(cap)
    text = json.dumps(list(ngsi_ld.values()), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write ({exc.strerror})") from None
    return len(ngsi_ld)


# --- maintenance -----------------------------------------------------------------------------


def window_body(args: argparse.Namespace, now: datetime | None = None) -> dict[str, Any]:
    """WindowIn's fields from ``ioc maintenance add``, checked where it is cheap."""
    start = parse_when(args.start, "--start") if args.start else (now or datetime.now(VN_TZ))
    end = parse_when(args.end, "--end") if args.end else None
    if args.cron:
        if args.duration_minutes is None:
            raise UsageError("--cron needs --duration-minutes (how long each occurrence lasts)")
        if len(args.cron.split()) != 5:
            raise UsageError(
                f"--cron {args.cron!r}: expected 5 fields 'MIN HOUR DAY MONTH WEEKDAY' in "
                "Vietnam time, e.g. '0 2 * * 0' (Sundays 02:00)"
            )
    elif end is None:
        if args.duration_minutes is None:
            raise UsageError("give --end (a one-off window) or --cron and --duration-minutes")
        end = start + timedelta(minutes=args.duration_minutes)
    if end is not None and end <= start:
        raise UsageError(
            f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    body: dict[str, Any] = {
        "scope_kind": args.scope_kind,
        "scope": args.scope,
        "starts_at": start.isoformat(),
        "note": args.note or "",
    }
    if end is not None:
        body["ends_at"] = end.isoformat()
    if args.cron:
        body["cron"] = args.cron
        body["duration_minutes"] = args.duration_minutes
    return body


def cmd_maintenance_add(args: argparse.Namespace, settings: Settings) -> int:
    window = _client(settings).create_window(window_body(args))
    print(format_window(window))
    return 0


def cmd_maintenance_list(args: argparse.Namespace, settings: Settings) -> int:
    windows = _client(settings).list_windows(include_cancelled=args.all)
    if args.json:
        _print_json(windows)
        return 0
    for w in windows:
        print(format_window(w))
    if not windows:
        print("no maintenance windows", file=sys.stderr)
    return 0


def cmd_maintenance_cancel(args: argparse.Namespace, settings: Settings) -> int:
    result = _client(settings).cancel_window(args.id)
    after = result.get("after", result) if isinstance(result.get("after"), dict) else result
    print(format_window(after) if after.get("scope") else f"maintenance window {args.id} cancelled")
    return 0


# --- reports ---------------------------------------------------------------------


def cmd_report_sla(args: argparse.Namespace, settings: Settings) -> int:
    period = check_period(args.period)
    if args.format == "pdf" and not args.out:
        raise UsageError("a PDF report needs --out FILE.pdf")
    body = _client(settings).sla_report(args.unit, period, args.format, args.lang)
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(body)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot write ({exc.strerror})") from None
        print(f"wrote {out} ({len(body):,} bytes)", file=sys.stderr)
    else:
        sys.stdout.write(body.decode("utf-8", errors="replace"))
        sys.stdout.flush()
    return 0


# --- parsers ---------------------------------------------------------------------------------


def register_operations(sub: Any) -> None:
    """``ioc incidents``, ``ioc maintenance``, ``ioc oncall`` (:mod:`ioc.services.ops.oncall`) and
    ``ioc report``."""
    inc = sub.add_parser(
        "incidents", help="list, show and act on incidents (through the operations service)"
    )
    isub = inc.add_subparsers(dest="incidents_command", required=True, metavar="ACTION")
    p = isub.add_parser("list", help="incidents, newest first, filtered")
    p.add_argument("--unit", help="a unit code at any level (its whole subtree)")
    p.add_argument("--domain", help="network, camera, telehealth, ...")
    p.add_argument("--severity", choices=SEVERITIES)
    p.add_argument("--status", choices=STATUSES, help="active: open or acknowledged")
    p.add_argument("--since", metavar="WHEN", help="opened at or after (ISO 8601, VN time)")
    p.add_argument("--until", metavar="WHEN", help="opened before (ISO 8601, VN time)")
    p.add_argument("--q", metavar="TEXT", help="text in the title or a device id")
    p.add_argument("--limit", type=_positive_int, default=100)
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(handler=cmd_incidents_list)
    p = isub.add_parser("show", help="one incident: timeline, affected devices, pages")
    p.add_argument("id", type=_positive_id)
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(handler=cmd_incidents_show)
    for name, helptext in (
        ("ack", "acknowledge: stops escalation and silences its alerts"),
        ("assign", "hand it to someone"),
        ("comment", "add a note to its timeline"),
        ("resolve", "close it by hand, with a reason"),
    ):
        p = isub.add_parser(name, help=helptext)
        p.add_argument("id", type=_positive_id)
        p.add_argument("--note", default="", required=name == "comment", help="the text")
        if name == "assign":
            p.add_argument("--to", required=True, metavar="WHO", help="who takes it")
        if name == "resolve":
            p.add_argument("--reason", required=True, help="why it is closed by hand")
        else:
            p.set_defaults(reason="")
        p.set_defaults(handler=cmd_incidents_act)
    p = isub.add_parser("events", help="the raw incident events on Kafka (ioc.incidents.v1)")
    p.add_argument("id", type=_positive_id, nargs="?", help="only this incident")
    p.set_defaults(handler=cmd_incidents_events)
    p = isub.add_parser(
        "export",
        help="incident steps as OASIS CAP 1.2 or NGSI-LD Alert (from ioc.incidents.v1)",
        description="Every step since --since (default: all the topic keeps, 30 days) as a CAP "
        "1.2 alert (one file per step in --out DIR) or the incidents' NGSI-LD Alert entities "
        "(a JSON array). docs/exchange.md",
    )
    p.add_argument("id", type=_positive_id, nargs="?", help="only this incident")
    p.add_argument("--format", choices=("cap", "ngsi-ld"), default="cap")
    p.add_argument("--since", metavar="WHEN", help="steps at or after (ISO 8601, VN time)")
    p.add_argument("--out", metavar="PATH", help="CAP: a folder; NGSI-LD: a file (default stdout)")
    p.add_argument("--sender", help="CAP sender (default ioc.<scenario>@<province code>)")
    p.add_argument(
        "--cap-status",
        choices=("Actual", "Exercise", "System", "Test", "Draft"),
        default="Actual",
        help="CAP status: Exercise or Test for a simulated province",
    )
    p.set_defaults(handler=cmd_incidents_export)

    maint = sub.add_parser("maintenance", help="maintenance windows (alerting suppressed)")
    msub = maint.add_subparsers(dest="maintenance_command", required=True, metavar="ACTION")
    p = msub.add_parser(
        "add",
        help="one-off (--start/--end) or recurring (--cron, --duration-minutes) window",
        description="Times without a zone and cron expressions are Vietnam time.",
    )
    p.add_argument("--scope-kind", required=True, choices=SCOPE_KINDS)
    p.add_argument("--scope", required=True, help="device id, site id, unit code or domain")
    p.add_argument("--start", metavar="WHEN", help="start (default now; VN time)")
    p.add_argument("--end", metavar="WHEN", help="end of a one-off window (VN time)")
    p.add_argument("--cron", metavar="EXPR", help="recurrence, e.g. '0 2 * * 0' (Sun 02:00)")
    p.add_argument(
        "--duration-minutes", type=_positive_int, metavar="N", help="length of each occurrence"
    )
    p.add_argument("--note", default="", help="why (shown on silences and the console)")
    p.set_defaults(handler=cmd_maintenance_add)
    p = msub.add_parser("list", help="current and upcoming windows")
    p.add_argument("--all", action="store_true", help="cancelled ones too")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(handler=cmd_maintenance_list)
    p = msub.add_parser("cancel", help="cancel a window (its silences are removed)")
    p.add_argument("id", type=_positive_id)
    p.set_defaults(handler=cmd_maintenance_cancel)

    from ioc.services.ops.oncall import register_oncall

    register_oncall(sub)  # reads the roster file itself: works with the service down

    report = sub.add_parser("report", help="reports")
    rsub = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    p = rsub.add_parser("sla", help="availability against the SLA for a unit and period")
    p.add_argument("--unit", required=True, help="unit code (its whole subtree)")
    p.add_argument("--period", required=True, help="2026, 2026-Q4, 2026-11, 2026-W47 or 2026-11-25")
    p.add_argument("--format", choices=REPORT_FORMATS, default="csv")
    p.add_argument("--out", metavar="FILE", help="write here (default stdout; PDF needs it)")
    p.add_argument("--lang", choices=("vi", "en"), default="vi")
    p.set_defaults(handler=cmd_report_sla)
