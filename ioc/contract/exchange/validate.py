"""Check an exported document against the published schemas committed in ``schemas/``.

The OASIS and Smart Data Models sites cannot be reached from the project's machines, so the
schemas are copies (schemas/README.md: source, version, sha256) and every ``$ref`` of the
Alert schema resolves to a local file by its ``$id``: nothing is fetched. ``xmlschema`` and
``jsonschema`` are in the ``dev`` extra (the tests use this module); a deployment that wants
to check its exports installs them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from ioc.contract.exchange.mapping import ExchangeError

SCHEMAS = "ioc.contract.exchange"
CAP_XSD = "CAP-v1.2.xsd"
ALERT_SCHEMA_ID = "https://smart-data-models.github.io/dataModel.Alert/alert/schema.json"
SDM_FILES = (
    "dataModel.Alert.Alert.schema.json",
    "dataModel.Alert.alert-schema.json",
    "data-models.common-schema.json",
    "dataModel.Weather.weather-schema.json",
)


def _schemas() -> Any:
    return resources.files(SCHEMAS).joinpath("schemas")


@cache
def _cap_schema() -> Any:
    import xmlschema

    return xmlschema.XMLSchema(_schemas().joinpath(CAP_XSD).read_text(encoding="utf-8"))


@cache
def _alert_validator() -> Any:
    import jsonschema
    from referencing import Registry, Resource

    folder = _schemas().joinpath("smart_data_models")
    registry: Registry[Any] = Registry()
    for name in SDM_FILES:
        document = json.loads(folder.joinpath(name).read_text(encoding="utf-8"))
        resource = Resource.from_contents(document)
        registry = registry.with_resource(document["$id"], resource)
    root = registry.contents(ALERT_SCHEMA_ID)
    return jsonschema.Draft202012Validator(
        root, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def cap_errors(document: bytes) -> list[str]:
    """Why ``document`` is not a valid CAP 1.2 alert (empty: it is)."""
    schema = _cap_schema()
    try:
        return [f"{e.path}: {e.reason}" for e in schema.iter_errors(document.decode("utf-8"))]
    except Exception as exc:  # not XML at all
        return [f"not a CAP document: {exc}"]


def ngsi_ld_errors(entity: dict[str, Any]) -> list[str]:
    """Why ``entity`` is not a valid Smart Data Models Alert (empty: it is)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(entity)'}: {e.message}"
        for e in _alert_validator().iter_errors(entity)
    ]


def check_cap(document: bytes) -> None:
    errors = cap_errors(document)
    if errors:
        raise ExchangeError(
            f"CAP 1.2: {errors[0]}" + (f" (+{len(errors) - 1})" if errors[1:] else "")
        )


def check_ngsi_ld(entity: dict[str, Any]) -> None:
    errors = ngsi_ld_errors(entity)
    if errors:
        raise ExchangeError(
            f"NGSI-LD Alert {entity.get('id')}: {errors[0]}"
            + (f" (+{len(errors) - 1})" if errors[1:] else "")
        )
