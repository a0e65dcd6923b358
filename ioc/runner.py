"""The main job (`ioc run`): bring everything up and run the pipeline on a scenario."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from ioc.config import Settings
from ioc.processes import WorkerProcess, stop_all


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


def run_main_job(
    settings: Settings, scenario: str, duration: float | None, workers: int = 1
) -> int:
    prepare_infrastructure(settings, scenario)
    log_dir = settings.stack_dir / "logs"
    _say(f"[streams] starting {workers} worker(s) for scenario {scenario} (logs in {log_dir})")
    procs = start_workers(settings, scenario, workers, log_dir)
    ports = ", ".join(f":{worker.served_port()}" for worker in procs)
    _say("")
    _say("IOC pipeline is running:")
    _say(f"  Kafka bootstrap   {settings.bootstrap_servers}")
    _say(
        f"  TimescaleDB       127.0.0.1:{settings.postgres_port} (database ioc, schema "
        f"{settings.db_schema}; `ioc stack status --json` prints the DSNs)"
    )
    _say(f"  Prometheus        {settings.prometheus_url}")
    _say(f"  Alertmanager      {settings.alertmanager_url}")
    _say(f"  worker metrics    http://127.0.0.1{ports.split(',')[0]}/metrics ({ports})")
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
    _say(f"scenario: {scenario}; press Ctrl-C to stop")
    _say("")
    from ioc.simulators.run import SimConfig, run_simulation

    try:
        summary = run_simulation(
            settings, SimConfig(scenario=scenario, mode="realtime", duration_s=duration)
        )
        _say(summary.render())
    finally:
        _say("[streams] stopping workers")
        stop_workers(procs)
    return 0 if summary.errors == 0 else 1
