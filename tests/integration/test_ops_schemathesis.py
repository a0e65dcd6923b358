"""Fuzz the whole operations API from the OpenAPI document it serves: valid and invalid
requests (schemathesis, positive and negative generation) with an admin token must never get
a 5xx. Bounded examples per operation keep it well under two minutes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err

from ioc.config import Settings
from tests.support.ops_server import OpsService, ops_service

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}


def _fuzz(svc: OpsService, document: dict[str, Any]) -> list[str]:
    """Every operation, both generation modes; the failures (none expected)."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()
        for mode, examples in EXAMPLES.items():
            strategy = operation.as_strategy(generation_mode=mode)

            @hsettings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                response = case.call(base_url=svc.url, headers=svc.admin, timeout=30)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                continue
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


async def test_no_server_error_anywhere(namespace: Settings) -> None:
    async with ops_service(namespace, apply_wait_s=0.2) as svc, aiohttp.ClientSession() as http:
        async with http.get(svc.url + "/openapi.json") as resp:
            assert resp.status == 200
            document = await resp.json()
        assert len(document["paths"]) >= 10
        failures = await asyncio.to_thread(_fuzz, svc, document)
        assert not failures, "\n\n".join(failures)
