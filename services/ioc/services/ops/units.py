"""The scenario's administrative units as the API lists them: today's by default, the ones
abolished in a merger (the pre-2025 districts and provinces of a national scenario) on
request, each with the unit its history rolls into today (``current``, as the database's
``current_unit`` and ``unit_lineage`` map it)."""

from __future__ import annotations

import datetime as dt

from ioc.contract.topology import Topology
from ioc.services.ops import auth
from ioc.services.ops.models import UnitOut


def list_units(
    topology: Topology,
    principal: auth.Principal,
    include_abolished: bool = False,
    on: dt.date | None = None,
) -> list[UnitOut]:
    """The units the principal sees (its unit's subtree if it is limited to one), top tier
    first, by code; judged on ``on`` (default today, Vietnam time)."""
    return [
        UnitOut(
            code=u.code,
            name=u.name,
            level=u.level_name,
            parent=u.parent,
            valid_from=u.valid_from,
            valid_to=u.valid_to,
            merged_into=u.merged_into,
            abolished=u.abolished(on),
            current=topology.current_unit(u.code, on),
        )
        for u in topology.unit_list(include_abolished, on)
        if auth.sees_unit(topology, principal, u.code)
    ]
