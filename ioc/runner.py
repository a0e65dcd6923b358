"""The main job (`ioc run`): bring everything up and run the pipeline on a scenario."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ioc.config import Settings


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


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a child `ioc` process needs to work in the same namespace."""
    env = dict(os.environ)
    env.update(
        {
            "IOC_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "IOC_DB_SCHEMA": settings.db_schema,
            "IOC_STACK_DIR": str(settings.stack_dir),
            "IOC_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "IOC_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        }
    )
    if settings.db_dsn is not None:
        env["IOC_DB_DSN"] = settings.db_dsn.get_secret_value()
    if settings.kafka_sasl_mechanism:
        env["IOC_KAFKA_SASL_MECHANISM"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        env["IOC_KAFKA_SASL_USERNAME"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:  # to the child only, never logged
        env["IOC_KAFKA_SASL_PASSWORD"] = settings.kafka_sasl_password.get_secret_value()
    return env


def start_workers(
    settings: Settings, scenario: str, count: int, log_dir: Path
) -> list[tuple[subprocess.Popen[bytes], int]]:
    """Start ``count`` stream workers (one consumer group) and wait until they serve."""
    log_dir.mkdir(parents=True, exist_ok=True)
    ioc = str(Path(sys.executable).parent / "ioc")
    workers = []
    for i in range(count):
        port = settings.metrics_port + i
        log = (log_dir / f"worker-{i + 1}.log").open("ab")
        proc = subprocess.Popen(
            [
                ioc,
                "worker",
                "--scenario",
                scenario,
                "--metrics-port",
                str(port),
                "--name",
                f"worker-{i + 1}",
            ],
            env=worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        workers.append((proc, port))
    deadline = time.monotonic() + 90
    for proc, port in workers:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"ioc: error: worker on :{port} exited; see {log_dir}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"ioc: error: worker on :{port} did not start; see {log_dir}"
                    ) from None
                time.sleep(0.5)
    return workers


def stop_workers(workers: list[tuple[subprocess.Popen[bytes], int]]) -> None:
    for proc, _port in workers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc, _port in workers:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def run_main_job(
    settings: Settings, scenario: str, duration: float | None, workers: int = 1
) -> int:
    prepare_infrastructure(settings, scenario)
    log_dir = settings.stack_dir / "logs"
    _say(f"[streams] starting {workers} worker(s) for scenario {scenario} (logs in {log_dir})")
    procs = start_workers(settings, scenario, workers, log_dir)
    ports = ", ".join(f":{port}" for _proc, port in procs)
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
    _say("      `docker compose -f deploy/compose/docker-compose.yml up` (provisioned, with")
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
