"""The on-call roster: who is paged for an incident, now and at each escalation level.

A YAML file (``IOC_ONCALL_FILE``, or the shipped ``oncall.yaml``) names the people with their
contacts, the teams (one per domain and unit: a team covers the unit's whole subtree, and the
most specific unit wins, so a district team takes its district's incidents from the province
team), their shifts (weekdays and times in Vietnam time; a shift may run past midnight,
22:00-06:00, and belongs to the day it starts), the IOC duty manager's shifts, and the
escalation policy: level 1 pages at once, each further level after its ``after_minutes``
without an acknowledgement (:mod:`ioc.services.ops.escalation`).

Who a level pages is a list of targets: ``on_call`` (the team's people on shift), ``lead``
(the team lead), ``duty_manager`` (the IOC duty manager on shift) or a person's id. A level
that resolves to nobody (a gap in the shifts) falls back to the team lead, then to the duty
manager on shift, then to every duty manager: an incident is never paged to no one.

A bad file is refused whole with ``file:line: where: problem`` (:class:`Invalid`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ioc.contract import feeds
from ioc.services.channels import Contact
from ioc.services.ops.common import VN_TZ, Invalid, Lang, tr

if TYPE_CHECKING:
    from ioc.config import Settings
    from ioc.contract.topology import Topology

DEFAULT_FILE = Path(__file__).with_name("oncall.yaml")
"""The shipped example roster (Yen Bai), used when ``IOC_ONCALL_FILE`` is unset."""

ANY_DOMAIN = "*"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ON_CALL, LEAD, DUTY_MANAGER = "on_call", "lead", "duty_manager"
ROLES = (ON_CALL, LEAD, DUTY_MANAGER)

_DAY_MINUTES = 24 * 60
_WEEK_MINUTES = 7 * _DAY_MINUTES
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")

Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
"""Ids people and teams are referred to by: lower-case ASCII, digits, ``-_.``."""
Label = Annotated[str, Field(min_length=1, max_length=200)]
Optional = Annotated[str | None, Field(min_length=1, max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Model):
    """Someone who can be paged; the contact fields are :class:`Contact`'s."""

    id: Ident
    name: Label
    email: Optional = None
    phone: Optional = None
    zalo_user_id: Optional = None
    telegram_chat_id: Optional = None

    @model_validator(mode="after")
    def _reachable(self) -> Person:
        if not (self.email or self.phone or self.zalo_user_id or self.telegram_chat_id):
            raise ValueError(f"person {self.id!r} has no contact (email, phone, zalo, telegram)")
        return self

    def contact(self) -> Contact:
        return Contact(
            name=self.name,
            email=self.email,
            phone=self.phone,
            zalo_user_id=self.zalo_user_id,
            telegram_chat_id=self.telegram_chat_id,
        )


def _minutes(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


class Shift(_Model):
    """Weekdays and a time range in Vietnam time. ``end`` before ``start`` runs past
    midnight into the next day; ``end`` equal to ``start`` is a 24-hour shift; the shift
    belongs to the day it starts (a Sunday 22:00-06:00 shift ends on Monday morning)."""

    days: list[str] = Field(min_length=1)
    start: str
    end: str
    people: list[Ident] = Field(min_length=1)

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        """``[mon, tue]``, ``[mon-fri]``, ``daily``: expanded to day names in week order."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        out: set[int] = set()
        for item in items:
            text = str(item).strip().lower()
            if text in ("daily", "*"):
                out.update(range(7))
                continue
            first, _, last = text.partition("-")
            if first not in WEEKDAYS or (last and last not in WEEKDAYS):
                raise ValueError(
                    f"day {item!r} is not one of {', '.join(WEEKDAYS)}, a range like mon-fri, "
                    "or daily"
                )
            a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
            out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        return [WEEKDAYS[d] for d in sorted(out)]

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        text = str(value).strip() if isinstance(value, str | int) else value
        if not isinstance(text, str) or not _HHMM.match(text):
            raise ValueError(f"time {value!r} must be HH:MM (00:00 to 24:00), in quotes")
        return text

    @field_validator("people")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @property
    def duration_minutes(self) -> int:
        length = (_minutes(self.end) - _minutes(self.start)) % _DAY_MINUTES
        return length or _DAY_MINUTES

    def covers(self, at: dt.datetime) -> bool:
        """Whether the shift is on at ``at`` (an aware datetime; compared in Vietnam time)."""
        local = at.astimezone(VN_TZ)
        now = local.weekday() * _DAY_MINUTES + local.hour * 60 + local.minute
        for day in self.days:
            begin = WEEKDAYS.index(day) * _DAY_MINUTES + _minutes(self.start)
            if (now - begin) % _WEEK_MINUTES < self.duration_minutes:
                return True
        return False

    def label(self) -> str:
        return f"{','.join(self.days)} {self.start}-{self.end}"


class Level(_Model):
    """One escalation level: paged ``after_minutes`` after the incident opened, if it is
    still not acknowledged."""

    level: int = Field(ge=1, le=20)
    after_minutes: int = Field(ge=0, le=7 * 24 * 60)
    page: list[str] = Field(min_length=1)


def _check_policy(levels: Sequence[Level], where: str) -> None:
    for i, lvl in enumerate(levels, start=1):
        if lvl.level != i:
            raise ValueError(f"{where}: levels must be numbered 1, 2, 3... in order")
        if i == 1 and lvl.after_minutes != 0:
            raise ValueError(f"{where}: level 1 is the first page: after_minutes must be 0")
        if i > 1 and lvl.after_minutes <= levels[i - 2].after_minutes:
            raise ValueError(f"{where}: level {i} after_minutes must be later than level {i - 1}'s")


class Team(_Model):
    """Who answers for a domain (``*``: every domain) in a unit's subtree."""

    id: Ident
    name: Label
    domain: Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9_]{0,63})$")]
    unit: Annotated[str, Field(min_length=1, max_length=64)]
    lead: Ident | None = None
    shifts: list[Shift] = Field(default_factory=list)
    escalation: list[Level] | None = None
    """The team's own policy; unset: the roster's."""

    @field_validator("unit", mode="before")
    @classmethod
    def _unit_text(cls, value: Any) -> Any:
        # an unquoted district code (132) is read by YAML as a number
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Duty(_Model):
    """The IOC duty manager (trực ban): the last resort of every escalation."""

    name: Label = "Trực ban IOC"
    shifts: list[Shift] = Field(min_length=1)


class RosterDoc(_Model):
    """The roster file as written."""

    people: list[Person] = Field(min_length=1)
    teams: list[Team] = Field(min_length=1)
    duty_manager: Duty | None = None
    escalation: list[Level] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> RosterDoc:
        ids = [p.id for p in self.people]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"people: id(s) listed twice: {', '.join(dup)}")
        known = set(ids)
        team_ids = [t.id for t in self.teams]
        dup = sorted({i for i in team_ids if team_ids.count(i) > 1})
        if dup:
            raise ValueError(f"teams: id(s) listed twice: {', '.join(dup)}")
        seen: dict[tuple[str, str], str] = {}
        for team in self.teams:
            where = f"team {team.id!r}"
            other = seen.setdefault((team.domain, team.unit), team.id)
            if other != team.id:
                raise ValueError(
                    f"{where}: team {other!r} already covers domain {team.domain} "
                    f"in unit {team.unit}"
                )
            if team.lead is not None and team.lead not in known:
                raise ValueError(f"{where}: lead {team.lead!r} is not among people")
            for shift in team.shifts:
                _known_people(shift.people, known, f"{where}: shift {shift.label()}")
            if team.escalation is not None:
                _check_policy(team.escalation, f"{where}: escalation")
                _known_targets(team.escalation, known, f"{where}: escalation")
        if self.duty_manager is not None:
            for shift in self.duty_manager.shifts:
                _known_people(shift.people, known, f"duty_manager: shift {shift.label()}")
        _check_policy(self.escalation, "escalation")
        _known_targets(self.escalation, known, "escalation")
        return self


def _known_people(people: Iterable[str], known: set[str], where: str) -> None:
    for pid in people:
        if pid not in known:
            raise ValueError(f"{where}: {pid!r} is not among people")


def _known_targets(levels: Iterable[Level], known: set[str], where: str) -> None:
    for lvl in levels:
        for target in lvl.page:
            if target not in ROLES and target not in known:
                raise ValueError(
                    f"{where}: level {lvl.level}: {target!r} is neither a person's id nor "
                    f"one of {', '.join(ROLES)}"
                )


class OnCallLevel(BaseModel):
    """Who one escalation level pages, resolved at a moment."""

    level: int
    after_minutes: int
    people: list[Contact]
    team: str | None = None
    """The team's id (None: no team covers the domain and unit)."""
    fallback: bool = False
    """True when the level's own targets were nobody and a fallback was paged instead."""


class Roster:
    """A validated roster and where it came from (for the errors that name the file)."""

    def __init__(self, doc: RosterDoc, source: str) -> None:
        self.doc = doc
        self.source = source
        self.people = {p.id: p for p in doc.people}

    def check(self, topology: Topology) -> None:
        """Every team's unit is in ``topology`` and its domain is a known one."""
        domains = {feeds.domain_of(c) for c in feeds.device_classes()}
        for team in self.doc.teams:
            if team.unit not in topology.units:
                raise Invalid(
                    f"{self.source}: team {team.id!r}: unit {team.unit!r} is not in scenario "
                    f"{topology.name}"
                )
            if team.domain != ANY_DOMAIN and team.domain not in domains:
                raise Invalid(
                    f"{self.source}: team {team.id!r}: unknown domain {team.domain!r} "
                    f"(known: {', '.join(sorted(domains))} or *)"
                )

    def team_for(self, topology: Topology, domain: str, unit_code: str) -> Team | None:
        """The team of the nearest unit at or above ``unit_code`` that covers ``domain``
        (its own domain before ``*`` at the same unit)."""
        if unit_code not in topology.units:
            raise Invalid(f"unit {unit_code!r} is not in scenario {topology.name}")
        by_key = {(t.domain, t.unit): t for t in self.doc.teams}
        for code in topology.ancestors(unit_code):
            team = by_key.get((domain, code)) or by_key.get((ANY_DOMAIN, code))
            if team is not None:
                return team
        return None

    def _on_shift(self, shifts: Iterable[Shift], at: dt.datetime) -> list[str]:
        return list(dict.fromkeys(p for s in shifts if s.covers(at) for p in s.people))

    def _duty(self, at: dt.datetime) -> list[str]:
        if self.doc.duty_manager is None:
            return []
        return self._on_shift(self.doc.duty_manager.shifts, at)

    def _all_duty(self) -> list[str]:
        if self.doc.duty_manager is None:
            return []
        return list(dict.fromkeys(p for s in self.doc.duty_manager.shifts for p in s.people))

    def levels_for(self, team: Team | None, at: dt.datetime) -> list[OnCallLevel]:
        """The escalation levels of ``team`` (None: the roster's, with only the duty
        manager and named people) resolved at ``at``."""
        if at.tzinfo is None:
            raise Invalid("the on-call time must carry a time zone")
        policy = team.escalation if team is not None and team.escalation else self.doc.escalation
        out: list[OnCallLevel] = []
        for lvl in policy:
            ids: list[str] = []
            for target in lvl.page:
                if target == ON_CALL:
                    ids += self._on_shift(team.shifts, at) if team is not None else []
                elif target == LEAD:
                    ids += [team.lead] if team is not None and team.lead else []
                elif target == DUTY_MANAGER:
                    ids += self._duty(at)
                else:
                    ids.append(target)
            fallback = not ids
            if not ids and team is not None and team.lead:
                ids = [team.lead]
            if not ids:
                ids = self._duty(at) or self._all_duty()
            out.append(
                OnCallLevel(
                    level=lvl.level,
                    after_minutes=lvl.after_minutes,
                    people=[self.people[i].contact() for i in dict.fromkeys(ids)],
                    team=team.id if team is not None else None,
                    fallback=fallback and bool(ids),
                )
            )
        return out

    def on_call(
        self, topology: Topology, domain: str, unit_code: str, at: dt.datetime
    ) -> list[OnCallLevel]:
        """Who is paged at each level for an incident of ``domain`` in ``unit_code`` at
        ``at``: level 1 first."""
        return self.levels_for(self.team_for(topology, domain, unit_code), at)


# --- loading -----------------------------------------------------------------------------


class _LineDict(dict[str, Any]):
    line = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict(loader.construct_pairs(node))
    out.line = node.start_mark.line + 1
    return out


def _scalar_with_colon(tag: str) -> Any:
    """YAML 1.1 reads 22:00 as the number 1320 (base 60): keep such a scalar as text."""
    base = _Loader.yaml_constructors[tag]

    def construct(loader: _Loader, node: yaml.ScalarNode) -> Any:
        if ":" in str(node.value):
            return loader.construct_scalar(node)
        return base(loader, node)

    return construct


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor("tag:yaml.org,2002:int", _scalar_with_colon("tag:yaml.org,2002:int"))
_Loader.add_constructor("tag:yaml.org,2002:float", _scalar_with_colon("tag:yaml.org,2002:float"))


def _where(doc: Any, loc: tuple[int | str, ...]) -> tuple[int, str]:
    """The line of the deepest mapping on the error's path, and the path as text."""
    line, node, parts = getattr(doc, "line", 0), doc, []
    for key in loc:
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        line = getattr(node, "line", line)
    return line, "".join(parts).lstrip(".")


_NAMED = re.compile(r"^Value error, (?:(team) '([^']*)'|(escalation|duty_manager|people|teams):)")


def _loc_of(doc: dict[str, Any], message: str) -> tuple[int | str, ...]:
    """Where a whole-roster check points: the team it names, or the section."""
    m = _NAMED.match(message)
    if m is None:
        return ()
    if m.group(1):
        teams = doc.get("teams")
        for i, team in enumerate(teams if isinstance(teams, list) else []):
            if isinstance(team, dict) and team.get("id") == m.group(2):
                return ("teams", i)
        return ()
    section = m.group(3)
    return (section, 0) if isinstance(doc.get(section), list) else (section,)


def parse_roster(text: str, source: str) -> Roster:
    """A roster from YAML text; :class:`Invalid` with ``source:line: where: problem``."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise Invalid(f"{source}:{at} not valid YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise Invalid(f"{source}: a roster is a mapping (people, teams, escalation...)")
    try:
        parsed = RosterDoc.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        line, path = _where(doc, tuple(err["loc"]) or _loc_of(doc, str(err["msg"])))
        message = str(err["msg"]).removeprefix("Value error, ")
        where = f" {path}:" if path and err["loc"] else ""
        raise Invalid(f"{source}:{line}:{where} {message}") from None
    return Roster(parsed, source)


def load_roster(settings: Settings) -> Roster:
    """``settings.oncall_file``, or the shipped example roster when unset."""
    path = settings.oncall_file or DEFAULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"{path}: cannot read the on-call roster: {exc}") from None
    return parse_roster(text, str(path))


# --- text for `ioc oncall show` ----------------------------------------------------------


_DOMAIN_NAMES: dict[str, tuple[str, str]] = {
    "network": ("Mạng", "Network"),
    "camera": ("Camera", "Camera"),
    "telehealth": ("Y tế từ xa", "Telehealth"),
    ANY_DOMAIN: ("Mọi lĩnh vực", "All domains"),
}


def _domain_name(domain: str, lang: Lang) -> str:
    vi, en = _DOMAIN_NAMES.get(domain, (domain, domain))
    return tr(lang, vi, en)


def _person_line(c: Contact) -> str:
    ways = [
        w
        for w in (
            c.phone,
            c.email,
            f"zalo {c.zalo_user_id}" if c.zalo_user_id else None,
            f"telegram {c.telegram_chat_id}" if c.telegram_chat_id else None,
        )
        if w
    ]
    return f"{c.name} ({', '.join(ways)})" if ways else c.name


def _levels_text(levels: list[OnCallLevel], lang: Lang) -> list[str]:
    lines = []
    for lvl in levels:
        when = (
            tr(lang, "ngay", "at once")
            if lvl.after_minutes == 0
            else tr(lang, f"sau {lvl.after_minutes} phút", f"after {lvl.after_minutes} min")
        )
        who = "; ".join(_person_line(p) for p in lvl.people) or tr(lang, "không ai", "nobody")
        note = tr(lang, " [thay thế]", " [fallback]") if lvl.fallback else ""
        lines.append(f"  {tr(lang, 'Cấp', 'Level')} {lvl.level} ({when}): {who}{note}")
    return lines


def format_on_call(
    roster: Roster,
    topology: Topology,
    *,
    domain: str | None = None,
    unit: str | None = None,
    at: dt.datetime | None = None,
    lang: Lang = "vi",
) -> str:
    """What ``ioc oncall show`` prints. With a unit: who answers there for each domain (or
    ``domain``). Without: every team (of ``domain``), paged as for its own unit."""
    at = (at or dt.datetime.now(dt.UTC)).astimezone(VN_TZ)
    stamp = at.strftime("%Y-%m-%d %H:%M")
    lines = [tr(lang, f"Trực lúc {stamp} (giờ Việt Nam)", f"On call at {stamp} (Vietnam time)")]
    if unit is not None:
        if unit not in topology.units:
            raise Invalid(f"unit {unit!r} is not in scenario {topology.name}")
        domains = (
            [domain] if domain else sorted({feeds.domain_of(c) for c in feeds.device_classes()})
        )
        for d in domains:
            team = roster.team_for(topology, d, unit)
            who = f"{team.name} [{team.id}]" if team else tr(lang, "chưa có tổ", "no team")
            lines.append(f"{_domain_name(d, lang)} — {topology.units[unit].name} ({unit}): {who}")
            lines += _levels_text(roster.levels_for(team, at), lang)
        return "\n".join(lines)
    teams = [t for t in roster.doc.teams if domain is None or t.domain in (domain, ANY_DOMAIN)]
    if not teams:
        lines.append(tr(lang, f"Không có tổ trực cho {domain}", f"No team covers {domain}"))
    for team in teams:
        place = topology.units[team.unit].name if team.unit in topology.units else team.unit
        lines.append(
            f"{_domain_name(team.domain, lang)} — {place} ({team.unit}): {team.name} [{team.id}]"
        )
        lines += _levels_text(roster.levels_for(team, at), lang)
    return "\n".join(lines)


def parse_at(text: str) -> dt.datetime:
    """An ISO time; without an offset it is Vietnam time."""
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"--at {text!r} is not an ISO time such as 2026-11-26T22:30") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=VN_TZ)


def cmd_oncall(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.contract.topology import load_scenario

    if args.file:
        settings = settings.model_copy(update={"oncall_file": Path(args.file)})
    try:
        roster = load_roster(settings)
        topology = load_scenario(args.scenario or settings.scenario)
        roster.check(topology)
        at = parse_at(args.at) if args.at else None
        print(
            format_on_call(
                roster, topology, domain=args.domain, unit=args.unit, at=at, lang=args.lang
            )
        )
    except Invalid as exc:
        raise SystemExit(f"ioc oncall: {exc}") from None
    return 0


def register_oncall(sub: Any) -> None:
    """``ioc oncall show``: reads the roster file itself (no service needed)."""
    p = sub.add_parser("oncall", help="who is on call and the escalation levels")
    p.add_argument("action", choices=["show"])
    p.add_argument("--domain", help="network, camera, telehealth... (default: all)")
    p.add_argument("--unit", help="unit code: who answers there (default: every team)")
    p.add_argument("--at", help="ISO time, Vietnam time without an offset (default: now)")
    p.add_argument("--lang", choices=["vi", "en"], default="vi")
    p.add_argument("--file", help="roster YAML (default IOC_ONCALL_FILE or the shipped one)")
    p.add_argument("--scenario", help="topology (default IOC_SCENARIO)")
    p.set_defaults(handler=cmd_oncall)
