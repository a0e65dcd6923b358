"""The main job (`ioc run`): bring everything up and run the pipeline on a scenario."""

from __future__ import annotations

import asyncio
import sys

from ioc.config import Settings


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_infrastructure(settings: Settings) -> None:
    """Stack up, schema migrated, topics created: what every later step needs."""
    from ioc.db.migrate import migrate
    from ioc.deploy.local.stack import Stack
    from ioc.kafka import ensure_topics

    Stack(settings).up()
    applied = asyncio.run(migrate(settings.admin_dsn(), settings.db_schema))
    _say(f"[db] schema {settings.db_schema}: {len(applied)} migration(s) applied")
    topics = asyncio.run(ensure_topics(settings))
    _say(f"[kafka] {len(topics)} topics ready: {', '.join(t.name for t in topics)}")


def run_main_job(settings: Settings, scenario: str, duration: float | None) -> int:
    prepare_infrastructure(settings)
    _say("")
    _say("IOC local stack is up:")
    _say(f"  Kafka bootstrap   {settings.bootstrap_servers}")
    _say(
        f"  TimescaleDB       127.0.0.1:{settings.postgres_port} (database ioc, "
        f"`ioc stack status --json` prints the DSNs)"
    )
    _say(f"  Prometheus        {settings.prometheus_url}")
    _say(f"  Alertmanager      {settings.alertmanager_url}")
    _say(f"scenario: {scenario}; press Ctrl-C to stop")
    _say("")
    # The pipeline as it exists so far: the feed simulators in real time. Later stages
    # (stream workers, pager, dashboards) plug in here.
    from ioc.simulators.run import SimConfig, run_simulation

    summary = run_simulation(
        settings, SimConfig(scenario=scenario, mode="realtime", duration_s=duration)
    )
    _say(summary.render())
    return 0 if summary.errors == 0 else 1
