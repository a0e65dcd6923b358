"""Sub-commands contributed by the packages that own them.

Each package exposes ``register(subparsers)``; the CLI composes them here so the core never
imports a package's internals, and a package's command lives next to its code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def registrars() -> list[Callable[[Any], None]]:
    from ioc.dashboards import cli as dashboards_cli
    from ioc.deploy.k8s import cli as k8s_cli
    from ioc.services import cli as services_cli
    from ioc.services.collect import cli as collect_cli
    from ioc.simulators import cli as simulators_cli
    from ioc.streams import cli as streams_cli
    from ioc.streams import deadletter_cli

    return [
        simulators_cli.register,
        streams_cli.register,
        deadletter_cli.register,
        services_cli.register,
        collect_cli.register,
        dashboards_cli.register,
        k8s_cli.register,
    ]
