"""The main job (`ioc run`): bring everything up and run the pipeline on a scenario.

Beside the stream workers it starts the pager and the operations service, so the loop an
operator works in (incident -> page -> acknowledge -> resolve, maintenance, escalation) runs
too; the simulator gets the user's fault plans and, unless turned off, a seeded background of
everyday failures and a weekly maintenance window, so a new user sees that loop at once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ioc.config import ENV_PREFIX, Settings
from ioc.errors import IocError
from ioc.processes import (
    Process,
    WorkerProcess,
    http_ok,
    ioc_command,
    service_env,
    stop_all,
)

WEEKLY_CRON = "0 2 * * 0"
"""The default scenario's weekly maintenance: Sundays 02:00 Vietnam time..."""
WEEKLY_MINUTES = 60
"""...for an hour."""
WEEKLY_NOTE = "ioc run: bảo trì định kỳ hằng tuần (weekly maintenance)"
"""Marks the window `ioc run` creates, so a later run finds it (and one an operator
cancelled is not created again)."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_infrastructure(settings: Settings, scenario: str) -> None:
    """Stack up, then the bootstrap step (schema, topics, topology) that workers check for."""
    from ioc.bootstrap import bootstrap
    from ioc.deploy.local.stack import Stack

    Stack(settings).up()
    topology = asyncio.run(bootstrap(settings, scenario))
    _say(
        f"[bootstrap] schema {settings.db_schema} migrated, topics ready, scenario "
        f"{topology.name} loaded ({len(topology.devices)} devices)"
    )


def start_workers(
    settings: Settings, scenario: str, count: int, log_dir: Path
) -> list[WorkerProcess]:
    """Start ``count`` stream workers (one consumer group) and wait until they serve."""
    settings = settings.model_copy(update={"workers_desired": count})
    workers = [
        WorkerProcess(
            settings,
            scenario,
            log_dir / f"worker-{i + 1}.log",
            name=f"worker-{i + 1}",
            metrics_port=settings.metrics_port + i if settings.metrics_port else 0,
        ).start()
        for i in range(count)
    ]
    deadline = time.monotonic() + 90
    try:
        for worker in workers:
            worker.wait_serving(timeout=max(0.0, deadline - time.monotonic()))
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: list[WorkerProcess]) -> None:
    stop_all(workers, timeout=60)


@dataclass
class RunOptions:
    """What `ioc run` does beyond the pipeline itself."""

    faults_path: str | None = None
    fault_flags: list[str] = field(default_factory=list)
    seed: int | None = None
    background_faults: bool = True
    operations: bool = True
    """Start the pager and the operations service (and create the weekly window)."""


def start_service(
    settings: Settings, argv: Sequence[str], name: str, health_url: str, log_dir: Path
) -> Process | None:
    """Start ``ioc <argv>`` and wait until ``health_url`` answers; None if something already
    answers there (a pager or service the user started by hand is used as it is)."""
    if http_ok(health_url):
        _say(f"[{name}] already running at {health_url.rsplit('/', 1)[0]}; using it")
        return None
    env = service_env(settings, argv[0])  # `ioc pager ...` / `ioc ops serve`: own Kafka user
    proc = Process(ioc_command(*argv), log_dir / f"{name}.log", env=env, name=name)
    proc.start()
    try:
        proc.wait_http(health_url, timeout=60)
    except BaseException:
        stop_all([proc], timeout=10)
        raise
    return proc


def start_operations(settings: Settings, log_dir: Path) -> list[Process]:
    """The pager (Alertmanager's webhook) and the operations service (API and console)."""
    started: list[Process] = []
    try:
        for argv, name, url in (
            (("pager",), "pager", f"http://127.0.0.1:{settings.pager_port}/healthz"),
            # the second pager Alertmanager notifies: a page survives the loss of either
            (
                ("pager", "--port", str(settings.pager_peer_port)),
                "pager-2",
                f"http://127.0.0.1:{settings.pager_peer_port}/healthz",
            ),
            (("ops", "serve"), "ops", f"http://127.0.0.1:{settings.ops_port}/healthz"),
        ):
            _say(f"[{name}] starting `ioc {' '.join(argv)}` (log {log_dir / (name + '.log')})")
            proc = start_service(settings, argv, name, url, log_dir)
            if proc is not None:
                started.append(proc)
    except BaseException:
        stop_all(started, timeout=30)
        raise
    return started


def ensure_weekly_maintenance(client: Any, node: str) -> str:
    """The default scenario's weekly window over ``node`` (a commune network node), created
    through the operations API once: a later run finds it by its note, and one an operator
    cancelled stays cancelled. Returns what happened, for the start-up lines."""
    for window in client.list_windows(include_cancelled=True):
        if (
            window.get("scope") == node
            and window.get("cron") == WEEKLY_CRON
            and str(window.get("note", "")).startswith(WEEKLY_NOTE)
        ):
            if window.get("cancelled_at"):
                return f"weekly maintenance of {node} was cancelled by an operator; left so"
            return f"weekly maintenance #{window.get('id')}: {node}, Sundays 02:00-03:00 (VN)"
    window = client.create_window(
        {
            "scope_kind": "device",
            "scope": node,
            "starts_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cron": WEEKLY_CRON,
            "duration_minutes": WEEKLY_MINUTES,
            "note": WEEKLY_NOTE,
        }
    )
    return f"weekly maintenance #{window.get('id')} created: {node}, Sundays 02:00-03:00 (VN)"


def _admin_token_hint(settings: Settings) -> str:
    """Where the admin token to log in with is (never the token itself)."""
    if settings.ops_admin_token is not None:
        return f"the token in {ENV_PREFIX}OPS_ADMIN_TOKEN"
    return f"the admin token in {settings.stack_credentials().ops_admin_token_path}"


def run_main_job(
    settings: Settings,
    scenario: str,
    duration: float | None,
    workers: int = 1,
    options: RunOptions | None = None,
) -> int:
    opts = options or RunOptions()
    from ioc.contract.topology import load_scenario
    from ioc.simulators.faults import load_plan, resolve_targets

    # the fault plans first: a typo fails in a second, not after the stack is up
    resolve_targets(load_plan(opts.faults_path, opts.fault_flags), load_scenario(scenario))
    prepare_infrastructure(settings, scenario)
    log_dir = settings.stack_dir / "logs"
    _say(f"[streams] starting {workers} worker(s) for scenario {scenario} (logs in {log_dir})")
    procs = start_workers(settings, scenario, workers, log_dir)
    services: list[Process] = []
    maintenance = ""
    try:
        if opts.operations:
            # the children serve this run's scenario, whatever IOC_SCENARIO says
            services = start_operations(settings.model_copy(update={"scenario": scenario}), log_dir)
            if opts.background_faults:
                maintenance = _weekly_maintenance(settings, scenario)
    except BaseException:
        stop_workers(procs)
        raise
    ports = ", ".join(f":{worker.served_port()}" for worker in procs)
    _say("")
    _say("IOC pipeline is running:")
    _say(f"  Kafka bootstrap   {settings.bootstrap_servers}")
    _say(
        f"  TimescaleDB       127.0.0.1:{settings.postgres_port} (database ioc, schema "
        f"{settings.db_schema}; `ioc stack status --json` prints the DSNs)"
    )
    _say(f"  Prometheus        {settings.prometheus_url}")
    _say(f"  Alertmanager      {' and '.join(settings.alertmanager_urls)} (one cluster)")
    _say(f"  worker metrics    http://127.0.0.1{ports.split(',')[0]}/metrics ({ports})")
    if opts.operations:
        _say(f"  pager             http://127.0.0.1:{settings.pager_port}/alertmanager/webhook")
        _say(
            f"  second pager      http://127.0.0.1:{settings.pager_peer_port}/alertmanager/webhook"
        )
        _say(f"  operations API    {settings.ops_base_url}/api/v1 (`ioc incidents list`)")
        _say(f"  operator console  {settings.console_base_url}/console")
        _say(f"      log in with {_admin_token_hint(settings)}")
        if maintenance:
            _say(f"      {maintenance}")
    from ioc.dashboards.build import build as build_dashboards

    dash_dir = settings.stack_dir / "dashboards"
    written = build_dashboards(dash_dir)
    _say(f"  Grafana dashboards {len(written)} JSON files in {dash_dir}")
    _say("      load them: `ioc dashboards push --url http://GRAFANA:3000 --token TOKEN`, or")
    _say(
        "      `docker compose -f deploy/ioc/deploy/compose/docker-compose.yml up` "
        "(provisioned, with"
    )
    _say("      datasources ioc-prometheus / ioc-timescaledb), or Grafana > Dashboards > Import")
    if opts.background_faults:
        _say(
            "background failures on (seeded; the first ones within minutes): watch "
            "`ioc incidents list` or the console; `--no-background-faults` turns them off"
        )
    _say(f"scenario: {scenario}; press Ctrl-C to stop")
    _say("")
    from ioc.simulators.run import SimConfig, run_simulation

    try:
        summary = run_simulation(
            settings.for_kafka_service("simulator"),  # its own Kafka user, as `ioc simulate`
            SimConfig(
                scenario=scenario,
                mode="realtime",
                duration_s=duration,
                seed=opts.seed,
                faults_path=opts.faults_path,
                fault_flags=list(opts.fault_flags),
                background_faults=opts.background_faults,
            ),
        )
        _say(summary.render())
    finally:
        _say("[streams] stopping workers" + (", pager and operations service" if services else ""))
        stop_all([*procs, *services], timeout=60)
    return 0 if summary.errors == 0 else 1


def _weekly_maintenance(settings: Settings, scenario: str) -> str:
    """Create the weekly window if the scenario has a commune node; a failure is reported
    and the run goes on (the pipeline does not need it)."""
    from ioc.contract.topology import load_scenario
    from ioc.services.ops.client import OpsClient
    from ioc.simulators.background import maintenance_node

    node = maintenance_node(load_scenario(scenario))
    if node is None:
        return ""
    try:
        client = OpsClient(
            f"http://127.0.0.1:{settings.ops_port}", settings.resolved_ops_admin_token()
        )
        return ensure_weekly_maintenance(client, node)
    except IocError as exc:
        return f"weekly maintenance not set up: {exc}"
