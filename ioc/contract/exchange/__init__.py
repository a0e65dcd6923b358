"""Incidents in the open formats peers import: OASIS CAP 1.2 and FIWARE's NGSI-LD ``Alert``.

A national centre or another system subscribes to ``ioc.incidents.v1`` (or asks the operations
service) and gets each step of an incident's life as a CAP 1.2 ``<alert>`` (what IBM's IOC
imports) or as a Smart Data Models ``Alert`` entity. The mappings are pure (an incident event
and the scenario's topology in, a document out) so that the CLI, the operations service and
the tests share them; :mod:`ioc.contract.exchange.validate` checks a document against the
published schemas committed in ``schemas/`` (docs/exchange.md).
"""

from ioc.contract.exchange.mapping import (
    CAP_NS,
    ExchangeError,
    Opened,
    opened_events,
    to_cap,
    to_cap_xml,
    to_ngsi_ld,
)

__all__ = [
    "CAP_NS",
    "ExchangeError",
    "Opened",
    "opened_events",
    "to_cap",
    "to_cap_xml",
    "to_ngsi_ld",
]
