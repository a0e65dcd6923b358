"""Feeds, declared once: :class:`Feed` names the built-in ones, one :class:`FeedSpec` per feed
says everything generic code needs to carry it from Kafka to its rollups.

A feed's declaration holds its message kinds (msgspec types, :mod:`ioc.contract.schemas`),
its Kafka topic, its raw table (columns derived from the message fields), its 1-minute rollups
per device and per administrative unit (and how each column combines into the hourly and
daily tiers, docs/history.md), its heartbeat timeout
and the severity of the incidents its devices open, and where its simulator behaviour lives.
Everything else is derived from the registry (:func:`specs`): the per-feed dicts of
:mod:`~ioc.contract.schemas` (decoders, ``FEED_OF_KIND``...), :mod:`~ioc.contract.topics`
(``FEED_TOPICS``), :mod:`~ioc.contract.tables` (``RAW``, ``ROLLUP_*``),
:mod:`~ioc.contract.raw` (``RAW_COLUMNS``) and :mod:`~ioc.contract.thresholds` (heartbeat
timeouts, incident severities) are kept in step with it, and the stream workers, the writer,
the rollups, the database bootstrap (:mod:`ioc.db.feeds`) and the simulators iterate over them.

The built-in feeds are declared in :mod:`ioc.contract.builtin_feeds`. More feeds are added with
:func:`register`, or for a whole process (``ioc worker``, ``ioc bootstrap``, ``ioc simulate``)
with ``IOC_EXTRA_FEEDS=module:attr[,module:attr]`` (:func:`load_extra_feeds`). See
docs/adding-a-feed.md.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import msgspec

from ioc.contract import raw, schemas, tables, thresholds, topics
from ioc.errors import IocError

EXTRA_FEEDS_ENV: Final = "IOC_EXTRA_FEEDS"
"""``module:attr[,module:attr...]``: feeds (FeedSpec objects) registered at process start."""


class Feed(StrEnum):
    """The built-in feeds. A StrEnum: ``Feed.CAMERA == "camera"``, on the wire and in labels."""

    CAMERA = "camera"
    TELEHEALTH = "telehealth"
    NETNODE = "netnode"
    VCONF = "vconf"
    PORTAL = "portal"
    SOC = "soc"


class FeedError(IocError):
    """A feed declaration that cannot be registered, or an unknown feed."""


ROLLUP_TYPES: Final = ("integer", "bigint", "real", "double precision")
"""The SQL types a rollup column may have: the ones the coarser tiers know how to sum and
average without overflow (ioc.streams.history)."""

OVER_TIME: Final = ("sum", "max", "min", "avg")
"""How a rollup column's finer buckets combine into a coarser one (hour from minutes, day from
hours; docs/history.md): ``sum`` for counts and totals, ``max``/``min`` for extremes (and
``max`` for percentiles: an upper bound), ``avg`` for means and for gauges such as devices
reporting."""

RESERVED_COLUMNS: Final = ("bucket", "device_id", "unit_code", "level", "minutes")
"""Key and bookkeeping columns of the rollup tables: no aggregate may take these names."""


@dataclass(frozen=True)
class Aggregate:
    """One column of a rollup: its name, SQL type and the SQL expression that computes it
    (over the raw rows of a device-minute, or over the device rollup ``r`` for a unit), and
    how the hourly and daily tiers combine it over time (``over_time``, one of
    :data:`OVER_TIME`; empty: inferred from ``expr`` by :func:`infer_over_time`)."""

    name: str
    type: str
    expr: str
    not_null: bool = False
    over_time: str = ""

    def __post_init__(self) -> None:
        if self.over_time and self.over_time not in OVER_TIME:
            raise FeedError(
                f"aggregate {self.name!r}: over_time {self.over_time!r} is not one of "
                f"{', '.join(OVER_TIME)}"
            )


class _Call:
    """An SQL expression read as ``name(inner) rest`` (``rest``: what follows the call's
    closing parenthesis, e.g. ``FILTER (WHERE ...)``); None when it does not start so."""

    __slots__ = ("inner", "name", "rest")

    def __init__(self, name: str, inner: str, rest: str) -> None:
        self.name, self.inner, self.rest = name, inner, rest

    @staticmethod
    def read(expr: str) -> _Call | None:
        head = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(", expr)
        if head is None:
            return None
        for i, char, depth in _unquoted(expr, head.end() - 1):
            if char == ")" and depth == 0:
                return _Call(head[1].lower(), expr[head.end() : i], expr[i + 1 :].strip())
        return None


def _unquoted(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, parenthesis depth after it) of every character of ``text`` from
    ``start`` that is outside a quoted SQL string (quotes themselves left out)."""
    depth, quoted = 0, False
    for i in range(start, len(text)):
        char = text[i]
        if char == "'":
            quoted = not quoted
            continue
        if quoted:
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        yield i, char, depth


def _first_argument(args: str) -> str:
    for i, char, depth in _unquoted(args):
        if char == "," and depth == 0:
            return args[:i]
    return args


def _core(expr: str) -> str:
    """``expr`` without the wrappers that do not change what it aggregates: the saturating
    casts (``sat_int4``...) and ``coalesce(x, 0)``."""
    while True:
        call = _Call.read(expr)
        if call is None or call.rest:
            return expr.strip()
        if call.name in ("sat_int4", "sat_int8", "sat_real"):
            expr = call.inner
        elif call.name == "coalesce":
            expr = _first_argument(call.inner)
        else:
            return expr.strip()


def infer_over_time(
    expr: str, *, unit: bool = False, device_rules: Mapping[str, str] | None = None
) -> str | None:
    """How a rollup column combines over time, read from its expression; None when the
    expression does not say (the declaration must then give ``over_time``).

    Per device (over raw rows): a count or sum of events adds up (``sum``); ``max``, ``min``
    and ``avg`` keep their meaning; a percentile becomes the ``max`` of the finer values,
    which bounds the true percentile from above (docs/history.md). ``count(DISTINCT ...)`` is
    neither a sum nor a max of its minutes: declare it.

    Per unit (over the device rollup ``r``): ``count(*)`` is the unit's devices (``max``);
    ``count(r.device_id)`` and any filtered count are devices in some condition, a gauge
    (``avg``); ``sum(r.x)`` combines like the device column ``x`` it adds up
    (``device_rules``): a sum of device counts is a count, a sum of device means a mean."""
    core = _core(expr)
    if re.match(r"^percentile_(cont|disc)\s*\(", core, re.IGNORECASE):
        return "max"
    call = _Call.read(core)
    if call is None:
        return None
    filtered = call.rest.lower().startswith("filter")
    if call.rest and not filtered:
        return None
    inner = call.inner.strip()
    if call.name == "count":
        if inner.lower().startswith("distinct"):
            return None
        if not unit:
            return "sum"
        return "max" if inner == "*" and not filtered else "avg"
    if filtered:
        return None
    if call.name in ("max", "min", "avg"):
        return call.name
    if call.name == "sum":
        if not unit:
            return "sum"
        column = re.fullmatch(r"r\.([a-z_][a-z0-9_]*)", inner)
        if column is None or device_rules is None:
            return None
        return device_rules.get(column[1])
    return None


@dataclass(frozen=True)
class Collection:
    """How the collectors of real sources (``ioc collect``, docs/collectors.md) poll a feed's
    devices: the one place their schedule is set, so no collector holds its own constants.

    ``interval_s`` gives, per message kind the collectors produce, the seconds between two
    rounds (the simulators use the same periods, ``ioc.simulators.behaviour``); ``timeout_s``
    is how long one request to one device may take before it counts as lost (an ICMP echo, an
    SNMP get, an HTTP GET, opening an RTSP stream); ``echoes`` is how many ICMP echo requests
    a probe sends to a device per round (its loss is the share of them unanswered; ICMP only);
    ``sample_s`` is how many seconds of a video stream are decoded per sample (0: the feed
    samples no video; RTSP only)."""

    interval_s: Mapping[str, float]
    timeout_s: float
    echoes: int = 3
    sample_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.interval_s:
            raise FeedError("collection: interval_s names no message kind")
        for kind, seconds in self.interval_s.items():
            if not 1.0 <= seconds <= 3600.0:
                raise FeedError(f"collection: interval of {kind} must be 1..3600 s")
            if not 0.05 <= self.timeout_s < seconds:
                raise FeedError(
                    f"collection: timeout {self.timeout_s} s must be >= 0.05 s and shorter "
                    f"than the interval of {kind} ({seconds} s)"
                )
        if not 1 <= self.echoes <= 20:
            raise FeedError("collection: echoes must be 1..20")
        if not 0.0 <= self.sample_s <= 60.0:
            raise FeedError("collection: sample_s must be 0..60 s")
        longest = max(self.interval_s.values())
        if self.sample_s and self.sample_s + self.timeout_s >= longest:
            raise FeedError(
                f"collection: a sample ({self.sample_s} s) and its timeout ({self.timeout_s} s) "
                f"must fit in the longest interval, the sampled kind's ({longest} s)"
            )

    def interval(self, kind: str) -> float:
        try:
            return self.interval_s[kind]
        except KeyError:
            raise FeedError(f"collection: no interval for {kind!r}") from None


@dataclass(frozen=True)
class FeedSpec:
    """Everything about one feed that generic code needs (docs/adding-a-feed.md)."""

    name: str
    """The feed's id: topic, tables, metric label ``feed``; a lower-case SQL identifier."""
    title: str
    messages: tuple[type[schemas.Message], ...]
    """Its message kinds; each kind's tag is ``<name>.<something>``."""
    topic: topics.TopicSpec
    device_rollup: tuple[Aggregate, ...]
    """1-minute rollup per device (table ``rollup_<name>_1m``), from the raw rows."""
    unit_rollup: tuple[Aggregate, ...]
    """1-minute rollup per administrative unit, every level (``unit_rollup_<name>_1m``),
    from the device rollup ``r`` of the unit's devices (LEFT JOIN: ``r`` may be NULL)."""
    device_class: str = ""
    """The topology's device class that reports on this feed (default: the feed's name)."""
    renamed: Mapping[tuple[type[schemas.Message], str], str] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """(kind, field) -> raw column, where two kinds of the feed use one name differently."""
    heartbeat_timeout_ms: int = 15_000
    """A device of this class silent for longer is down (ioc.streams.state)."""
    incident_severity: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Incident kind (ioc.contract.tables.INCIDENT_*) -> severity, for this device class."""
    behaviour: str = ""
    """``module:Class`` of its simulator behaviour (an ``ioc.simulators.behaviour.DeviceSim``)."""
    tables_from_migrations: bool = False
    """Its tables are created by the versioned migrations (the built-in feeds); otherwise
    :func:`ioc.db.feeds.ensure_feed_tables` creates them from this declaration."""
    down_alert_for_s: int = 15
    """``for:`` of the generated ``FeedDeviceDown`` alert (:mod:`ioc.alerting.rules`), which a
    feed gets when its device class has no hand-written down alert; it pages with the
    severity of ``incident_severity["device-down"]``."""
    max_lateness_ms: int = schemas.MAX_PAST_MS
    """How far behind the wall clock an event may be and still be accepted (validation,
    :func:`ioc.contract.schemas.decode`); older events are dead-lettered as ``event_time``.
    A feed that arrives in batches after an outage (the portal via LGSP) raises it."""
    raw_retention_days: int | None = None
    """Days its raw rows are kept (``enforce_retention``); None: the worker's
    ``raw_retention_days`` (7). Must cover ``max_lateness_ms`` and any recomputation."""
    extra_ddl: tuple[str, ...] = ()
    """Feed-specific tables, views and functions, created by
    :func:`ioc.db.feeds.ensure_feed_tables` after the generated ones (idempotent statements)."""
    after_rollup: str = ""
    """SQL run once per rollup round after the feed's dirty minutes were recomputed, with
    ``$1`` the ``timestamptz[]`` of those minutes (e.g. refresh a daily KPI table)."""
    private_columns: tuple[str, ...] = ()
    """Raw-table columns holding personal or sensitive data (the SOC's addresses): the
    read-only (Grafana) role may select every other column of ``raw_<name>`` but not these
    (:func:`ioc.db.feeds.restrict_private_columns`); show them through an aggregate view."""
    collection: Collection | None = None
    """How ``ioc collect`` polls the real devices of this feed (None: no collector)."""

    @property
    def cls(self) -> str:
        return str(self.device_class or self.name)

    @property
    def raw_table(self) -> str:
        return f"raw_{self.name}"

    @property
    def device_rollup_table(self) -> str:
        return self.device_table("1m")

    @property
    def unit_rollup_table(self) -> str:
        return self.unit_table("1m")

    def device_table(self, tier: str) -> str:
        """The device rollup of a tier (``1m``, ``1h``, ``1d``): ``rollup_<name>_<tier>``."""
        return f"rollup_{self.name}_{tier}"

    def unit_table(self, tier: str) -> str:
        """The unit rollup of a tier: ``unit_rollup_<name>_<tier>``."""
        return f"unit_rollup_{self.name}_{tier}"

    def device_over_time(self) -> dict[str, str]:
        """Device rollup column -> how it combines over time (``Aggregate.over_time``, else
        :func:`infer_over_time`); FeedError names a column that says neither."""
        rules: dict[str, str] = {}
        for a in self.device_rollup:
            rule = a.over_time or infer_over_time(a.expr)
            if rule is None:
                raise FeedError(
                    f"feed {self.name!r}: device rollup column {a.name!r} ({a.expr}) does not "
                    f"say how it combines over time: declare over_time ({', '.join(OVER_TIME)})"
                )
            rules[a.name] = rule
        return rules

    def unit_over_time(self) -> dict[str, str]:
        """Unit rollup column -> how it combines over time, as :meth:`device_over_time`."""
        device = self.device_over_time()
        rules: dict[str, str] = {}
        for a in self.unit_rollup:
            rule = a.over_time or infer_over_time(a.expr, unit=True, device_rules=device)
            if rule is None:
                raise FeedError(
                    f"feed {self.name!r}: unit rollup column {a.name!r} ({a.expr}) does not "
                    f"say how it combines over time: declare over_time ({', '.join(OVER_TIME)})"
                )
            rules[a.name] = rule
        return rules

    def kinds(self) -> tuple[str, ...]:
        return tuple(str(t.__struct_config__.tag) for t in self.messages)

    def fleet_columns(self) -> tuple[str, str] | None:
        """The unit rollup's (devices, devices reporting) columns: the aggregates
        ``count(*)`` and ``count(r.device_id)`` (optionally in ``sat_int4``/``sat_int8``),
        as docs/adding-a-feed.md declares them; None when it lacks either."""

        def find(inner: str) -> str | None:
            wanted = {inner, f"sat_int4({inner})", f"sat_int8({inner})"}
            for a in self.unit_rollup:
                if re.sub(r"\s+", "", a.expr.lower()) in wanted:
                    return a.name
            return None

        devices, reporting = find("count(*)"), find("count(r.device_id)")
        return (devices, reporting) if devices and reporting else None


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_FEEDS: dict[str, FeedSpec] = {}
_BUILTIN: set[str] = set()


def specs() -> tuple[FeedSpec, ...]:
    """Every registered feed, built-in ones first, in registration order."""
    return tuple(_FEEDS.values())


def spec(feed: str) -> FeedSpec:
    try:
        return _FEEDS[feed]
    except KeyError:
        raise FeedError(f"unknown feed {feed!r} (registered: {', '.join(_FEEDS)})") from None


def names() -> tuple[str, ...]:
    return tuple(_FEEDS)


def device_classes() -> tuple[str, ...]:
    """The device classes a topology may contain: one per registered feed."""
    return tuple(dict.fromkeys(s.cls for s in _FEEDS.values()))


def domain_of(device_class: str) -> str:
    """The alert rules' ``domain`` label of a device class: netnode -> network, every other
    class is its own domain. The SQL function ``device_domain`` (migration 0007) mirrors it."""
    return "network" if device_class == "netnode" else device_class


def _check(new: FeedSpec) -> None:
    if not _NAME.match(new.name) or not _NAME.match(new.cls):
        raise FeedError(f"feed {new.name!r}: name and device class must be SQL identifiers")
    if new.name in _FEEDS:
        raise FeedError(f"feed {new.name!r} is registered already")
    if not new.messages or not new.device_rollup or not new.unit_rollup:
        raise FeedError(f"feed {new.name!r}: messages and both rollups are required")
    for a in (*new.device_rollup, *new.unit_rollup):
        if a.name in RESERVED_COLUMNS or a.type not in ROLLUP_TYPES:
            raise FeedError(
                f"feed {new.name!r}: rollup column {a.name!r} must not be one of "
                f"{', '.join(RESERVED_COLUMNS)} and its type must be one of "
                f"{', '.join(ROLLUP_TYPES)} (got {a.type!r})"
            )
    new.unit_over_time()  # every column says how the hourly and daily tiers combine it
    known = set(schemas.TYPE_OF_KIND)
    for kind in new.kinds():
        if not kind.startswith(f"{new.name}."):
            raise FeedError(f"feed {new.name!r}: kind {kind!r} must start with {new.name!r}.")
        if kind in known:
            raise FeedError(f"feed {new.name!r}: kind {kind!r} belongs to another feed")
    if new.collection is not None:
        for kind in new.collection.interval_s:
            if kind not in new.kinds():
                raise FeedError(f"feed {new.name!r}: collection names {kind!r}, not its kind")
    taken = {t.name for t in (*topics.FEED_TOPICS.values(), *topics.ALL_TOPICS)}
    if new.topic.name in taken:
        raise FeedError(f"feed {new.name!r}: topic {new.topic.name} is taken")


def register(new: FeedSpec, *, builtin: bool = False) -> FeedSpec:
    """Add a feed to the registry (and so to every derived table); returns it."""
    if not builtin:
        _check(new)
    _FEEDS[new.name] = new
    if builtin:
        _BUILTIN.add(new.name)
    _derive()
    return new


def unregister(name: str) -> None:
    """Remove a feed added by :func:`register` (tests); built-in feeds stay."""
    if name in _BUILTIN:
        raise FeedError(f"feed {name!r} is built in")
    if _FEEDS.pop(name, None) is not None:
        _derive()


@contextmanager
def registered(new: FeedSpec) -> Iterator[FeedSpec]:
    """The feed registered for the duration of a ``with`` block (tests)."""
    already = _FEEDS.get(new.name) is new
    if not already:
        register(new)
    try:
        yield new
    finally:
        if not already:
            unregister(new.name)


def load_extra_feeds(value: str | None = None) -> list[FeedSpec]:
    """Register the feeds named by ``value`` (default: ``$IOC_EXTRA_FEEDS``), each a
    ``module:attr`` that is a :class:`FeedSpec`; feeds registered already are skipped."""
    value = os.environ.get(EXTRA_FEEDS_ENV, "") if value is None else value
    loaded: list[FeedSpec] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        module_name, _, attr = item.partition(":")
        try:
            obj: Any = getattr(importlib.import_module(module_name), attr or "FEED")
        except (ImportError, AttributeError) as exc:
            raise FeedError(f"{EXTRA_FEEDS_ENV}: cannot load {item!r}: {exc}") from None
        if not isinstance(obj, FeedSpec):
            raise FeedError(
                f"{EXTRA_FEEDS_ENV}: {item!r} is a {type(obj).__name__}, not a FeedSpec"
            )
        if _FEEDS.get(obj.name) is not obj:
            register(obj)
        loaded.append(obj)
    return loaded


def _union(types: tuple[type[schemas.Message], ...]) -> Any:
    result: Any = types[0]
    for t in types[1:]:
        result = result | t
    return result


def _derive() -> None:
    """Bring every per-feed table of the contract in step with the registry (in place, so
    modules that imported the dicts see the change)."""
    all_specs = specs()

    def refill(target: dict[Any, Any], items: Mapping[Any, Any]) -> None:
        target.clear()
        target.update(items)

    refill(schemas.MESSAGE_TYPES, {f.name: f.messages for f in all_specs})
    refill(schemas.FEED_OF_KIND, {t: f.name for f in all_specs for t in f.messages})
    refill(
        schemas.KIND_OF_TYPE,
        {t: str(t.__struct_config__.tag) for f in all_specs for t in f.messages},
    )
    refill(schemas.TYPE_OF_KIND, {k: t for t, k in schemas.KIND_OF_TYPE.items()})
    refill(schemas.DEVICE_CLASS_OF_FEED, {f.name: f.cls for f in all_specs})
    refill(
        schemas._decoders,
        {f.name: msgspec.json.Decoder(_union(f.messages)) for f in all_specs},
    )
    schemas._any_decoder = msgspec.json.Decoder(
        _union(tuple(t for f in all_specs for t in f.messages))
    )
    refill(topics.FEED_TOPICS, {f.name: f.topic for f in all_specs})
    refill(tables.RAW, {f.name: f.raw_table for f in all_specs})
    refill(tables.ROLLUP_DEVICE_1M, {f.name: f.device_rollup_table for f in all_specs})
    refill(tables.ROLLUP_UNIT_1M, {f.name: f.unit_rollup_table for f in all_specs})
    refill(tables.ROLLUP_DEVICE_1H, {f.name: f.device_table("1h") for f in all_specs})
    refill(tables.ROLLUP_DEVICE_1D, {f.name: f.device_table("1d") for f in all_specs})
    refill(tables.ROLLUP_UNIT_1H, {f.name: f.unit_table("1h") for f in all_specs})
    refill(tables.ROLLUP_UNIT_1D, {f.name: f.unit_table("1d") for f in all_specs})
    refill(raw.RENAMED, {k: v for f in all_specs for k, v in f.renamed.items()})
    refill(raw.RAW_COLUMNS, {f.name: raw.columns_of(f.messages) for f in all_specs})
    refill(schemas.MAX_PAST_MS_OF_FEED, {f.name: f.max_lateness_ms for f in all_specs})
    refill(
        thresholds.HEARTBEAT_TIMEOUT_MS,
        {f.cls: f.heartbeat_timeout_ms for f in all_specs},
    )
    refill(
        thresholds.INCIDENT_SEVERITY,
        {(kind, f.cls): sev for f in all_specs for kind, sev in f.incident_severity.items()},
    )


def _register_builtins() -> None:
    from ioc.contract.builtin_feeds import BUILTIN_FEEDS

    for builtin in BUILTIN_FEEDS:
        register(builtin, builtin=True)


_register_builtins()
