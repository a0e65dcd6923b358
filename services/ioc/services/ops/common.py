"""What every part of the operations service shares: its errors, its context, Vietnam time,
and the two languages it speaks.

Errors carry the HTTP status the API answers with, so a module deep down can say "404: no
incident 7" once and the API, the console and the CLI all show that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal
from zoneinfo import ZoneInfo

from ioc.errors import IocError

if TYPE_CHECKING:
    import asyncpg

    from ioc.config import Settings
    from ioc.contract.topology import Topology
    from ioc.services.channels import Dispatcher
    from ioc.services.incidents import CommandProducer
    from ioc.services.ops.alertmanager import AlertmanagerClient
    from ioc.services.ops.oncall import Roster

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
"""Periods, recurring windows and on-call shifts are in Vietnam time (UTC+7, no DST)."""

Lang = Literal["vi", "en"]
DEFAULT_LANG: Lang = "vi"


def tr(lang: Lang, vi: str, en: str) -> str:
    """The text in the reader's language: Vietnamese by default, English on request."""
    return en if lang == "en" else vi


class OpsError(IocError):
    """A request the service refuses, with the reason and the HTTP status to answer."""

    status: ClassVar[int] = 400


class Invalid(OpsError):
    status = 422


class NotFound(OpsError):
    status = 404


class Conflict(OpsError):
    status = 409


class Unauthorized(OpsError):
    status = 401


class Forbidden(OpsError):
    status = 403


class TooManyRequests(OpsError):
    status = 429


class Unavailable(OpsError):
    """A dependency (database, Kafka, Alertmanager) is away: retry later."""

    status = 503


@dataclass
class OpsContext:
    """The running service's dependencies, built once by :func:`ioc.services.ops.app.build`."""

    settings: Settings
    topology: Topology
    pool: asyncpg.Pool
    alertmanager: AlertmanagerClient
    dispatcher: Dispatcher
    roster: Roster
    commands: CommandProducer | None = None
    """The one producer of operator commands (:func:`ioc.services.ops.app.build`); None: a
    producer per command (tests that build a context by hand)."""
