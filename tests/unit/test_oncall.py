"""The on-call roster: shifts in Vietnam time across midnight, the most specific unit wins,
``*`` teams, fallbacks, and bad files refused with the file and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ioc.config import Settings
from ioc.contract.topology import Topology, load_scenario
from ioc.services.ops.common import VN_TZ, Invalid
from ioc.services.ops.oncall import (
    DEFAULT_FILE,
    Roster,
    Shift,
    format_on_call,
    load_roster,
    parse_at,
    parse_roster,
)

ROSTER = """
people:
  - {id: an, name: Nguyễn Văn An, phone: "+84900000001"}
  - {id: binh, name: Trần Thị Bình, email: binh@example.test}
  - {id: cuong, name: Lê Văn Cường, zalo_user_id: "123"}
  - {id: dung, name: Phạm Thị Dung, telegram_chat_id: "456"}
  - {id: em, name: Hoàng Văn Em, phone: "+84900000005"}
teams:
  - id: net-province
    name: Tổ mạng tỉnh
    domain: network
    unit: 99
    lead: an
    shifts:
      - {days: mon-fri, start: "08:00", end: "17:00", people: [binh]}
      - {days: [fri], start: 22:00, end: 06:00, people: [cuong]}
  - id: net-district
    name: Tổ mạng huyện
    domain: network
    unit: "992"
    lead: dung
    shifts:
      - {days: daily, start: "07:00", end: "07:00", people: [dung]}
  - id: all-province
    name: Tổ tổng hợp
    domain: "*"
    unit: "99"
    shifts:
      - {days: daily, start: "00:00", end: "24:00", people: [em]}
duty_manager:
  shifts:
    - {days: daily, start: "06:00", end: "18:00", people: [em]}
escalation:
  - {level: 1, after_minutes: 0, page: [on_call]}
  - {level: 2, after_minutes: 15, page: [on_call, lead]}
  - {level: 3, after_minutes: 30, page: [duty_manager]}
"""


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_scenario("demo")


@pytest.fixture(scope="module")
def roster() -> Roster:
    return parse_roster(ROSTER, "roster.yaml")


def vn(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=VN_TZ)


def team_id(roster: Roster, topology: Topology, domain: str, unit: str) -> str | None:
    team = roster.team_for(topology, domain, unit)
    return team.id if team is not None else None


def names(
    roster: Roster, topology: Topology, domain: str, unit: str, at: dt.datetime
) -> list[list[str]]:
    return [[p.name for p in lvl.people] for lvl in roster.on_call(topology, domain, unit, at)]


def test_an_overnight_shift_belongs_to_the_day_it_starts_in_vietnam_time() -> None:
    shift = Shift(days=["fri"], start="22:00", end="06:00", people=["x"])
    assert shift.covers(vn("2026-11-27T22:00"))  # Friday night
    assert shift.covers(vn("2026-11-28T05:59"))  # Saturday morning, still Friday's shift
    assert not shift.covers(vn("2026-11-28T06:00"))
    assert not shift.covers(vn("2026-11-27T05:00"))  # Friday morning: Thursday's, not on
    assert not shift.covers(vn("2026-11-28T22:30"))  # Saturday night
    # the same moment given in UTC: 2026-11-27 15:30 UTC is Friday 22:30 in Vietnam
    assert shift.covers(dt.datetime(2026, 11, 27, 15, 30, tzinfo=dt.UTC))
    assert not shift.covers(dt.datetime(2026, 11, 27, 14, 30, tzinfo=dt.UTC))
    sunday = Shift(days=["sun"], start="20:00", end="02:00", people=["x"])
    assert sunday.covers(vn("2026-11-30T01:00"))  # Monday 01:00: across the week's end too


def test_shift_days_ranges_and_whole_days() -> None:
    assert Shift(days=["fri-mon"], start="00:00", end="24:00", people=["x"]).days == [
        "mon",
        "fri",
        "sat",
        "sun",
    ]
    day = Shift(days="daily", start="07:00", end="07:00", people=["x"])
    assert day.duration_minutes == 24 * 60
    assert day.covers(vn("2026-11-26T06:59")) and day.covers(vn("2026-11-26T07:00"))


def test_the_most_specific_unit_wins(roster: Roster, demo: Topology) -> None:
    friday_night = vn("2026-11-27T23:00")
    # a commune of district 992: the district's team, not the province's
    assert team_id(roster, demo, "network", "992-001") == "net-district"
    # level 3 (the duty manager, off shift at night) falls back to the team lead
    assert names(roster, demo, "network", "992-001", friday_night) == [["Phạm Thị Dung"]] * 3
    # district 991 has no team of its own: the province's, whose Friday night shift is on
    levels = roster.on_call(demo, "network", "991-002", friday_night)
    assert [lvl.team for lvl in levels] == ["net-province"] * 3
    assert [[p.name for p in lvl.people] for lvl in levels[:2]] == [
        ["Lê Văn Cường"],
        ["Lê Văn Cường", "Nguyễn Văn An"],
    ]
    assert levels[1].people[1].phone == "+84900000001"
    assert [lvl.after_minutes for lvl in levels] == [0, 15, 30]


def test_a_star_team_covers_the_domains_without_a_team(roster: Roster, demo: Topology) -> None:
    at = vn("2026-11-26T10:00")  # Thursday
    assert team_id(roster, demo, "camera", "991-001") == "all-province"
    assert names(roster, demo, "camera", "991-001", at)[0] == ["Hoàng Văn Em"]
    # the network team of the same unit is preferred over the * team
    assert team_id(roster, demo, "network", "99") == "net-province"
    assert names(roster, demo, "network", "99", at)[0] == ["Trần Thị Bình"]


def test_a_level_that_finds_nobody_falls_back(roster: Roster, demo: Topology) -> None:
    saturday_noon = vn("2026-11-28T12:00")  # the province network team has no shift on
    levels = roster.on_call(demo, "network", "991", saturday_noon)
    assert [p.name for p in levels[0].people] == ["Nguyễn Văn An"]  # the lead
    assert levels[0].fallback and not levels[1].fallback
    midnight = vn("2026-11-28T00:30")  # Friday's overnight shift is on; duty manager is not
    duty = roster.on_call(demo, "network", "991", midnight)[2]
    assert [p.name for p in duty.people] == ["Nguyễn Văn An"] and duty.fallback


def test_unknown_unit_is_refused(roster: Roster, demo: Topology) -> None:
    with pytest.raises(Invalid, match="unit '404' is not in scenario demo"):
        roster.on_call(demo, "network", "404", vn("2026-11-26T10:00"))


def test_check_names_the_file_and_the_unit(demo: Topology) -> None:
    roster = parse_roster(ROSTER.replace('unit: "992"', 'unit: "993"'), "/etc/ioc/oncall.yaml")
    with pytest.raises(Invalid, match=r"/etc/ioc/oncall.yaml: team 'net-district': unit '993'"):
        roster.check(demo)
    parse_roster(ROSTER, "ok.yaml").check(demo)
    bad_domain = parse_roster(
        ROSTER.replace('domain: network\n    unit: "992"', 'domain: water\n    unit: "992"'),
        "r.yaml",
    )
    with pytest.raises(Invalid, match="unknown domain 'water'"):
        bad_domain.check(demo)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'start: "08:00"',
            'start: "8h"',
            r"roster.yaml:\d+: teams\[0\]\.shifts\[0\]\.start: .*HH:MM",
        ),
        ("days: mon-fri", "days: [mon-fry]", r"teams\[0\]\.shifts\[0\]\.days: .*'mon-fry'"),
        ("lead: an", "lead: nobody", "team 'net-province': lead 'nobody' is not among people"),
        ("people: [cuong]", "people: [ghost]", "'ghost' is not among people"),
        (
            "after_minutes: 15",
            "after_minutes: 45",
            "level 3 after_minutes must be later than level 2",
        ),
        ("{level: 1, after_minutes: 0", "{level: 1, after_minutes: 5", "level 1 is the first page"),
        ("page: [duty_manager]", "page: [boss]", "'boss' is neither a person's id"),
        ("id: cuong, name", "id: cuong, nick: x, name", r"people\[2\]\.nick: Extra inputs"),
        (
            '{id: em, name: Hoàng Văn Em, phone: "+84900000005"}',
            "{id: em, name: Em}",
            "person 'em' has no contact",
        ),
        (
            'unit: "992"',
            'unit: "99"',
            "team 'net-province' already covers domain network in unit 99",
        ),
        ("escalation:\n  - {level: 1", "escalation:\n  - {level: 2", "numbered 1, 2, 3"),
        ("teams:", "teams: [\n", r"roster.yaml:\d+: not valid YAML"),
    ],
)
def test_bad_rosters_name_file_line_and_field(old: str, new: str, expected: str) -> None:
    assert old in ROSTER
    with pytest.raises(Invalid, match=expected) as info:
        parse_roster(ROSTER.replace(old, new, 1), "roster.yaml")
    assert str(info.value).startswith("roster.yaml:")


def test_the_error_line_points_into_the_file() -> None:
    text = ROSTER.replace('start: "08:00"', 'start: "25:00"')
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "25:00" in row)
    with pytest.raises(Invalid, match=rf"^roster.yaml:{line}: "):
        parse_roster(text, "roster.yaml")


def test_load_roster_reads_the_setting_or_the_shipped_file(tmp_path: Path) -> None:
    shipped = load_roster(Settings())
    assert shipped.source == str(DEFAULT_FILE)
    shipped.check(load_scenario("yen-bai-2022"))  # its units exist in the default scenario
    own = tmp_path / "oncall.yaml"
    own.write_text(ROSTER, encoding="utf-8")
    assert load_roster(Settings(oncall_file=own)).source == str(own)
    with pytest.raises(Invalid, match=r"missing.yaml: cannot read"):
        load_roster(Settings(oncall_file=tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("people: 1\n", encoding="utf-8")
    with pytest.raises(Invalid, match=rf"^{bad}:1: people: "):
        load_roster(Settings(oncall_file=bad))


def test_shipped_roster_most_specific_unit_in_yen_bai() -> None:
    roster = load_roster(Settings())
    yen_bai = load_scenario("yen-bai-2022")
    weekday = vn("2026-11-26T10:00")
    assert team_id(roster, yen_bai, "network", "140-002") == "mang-van-chan"
    assert team_id(roster, yen_bai, "network", "132-001") == "mang-tinh"
    levels = roster.on_call(yen_bai, "telehealth", "132", weekday)
    assert [lvl.after_minutes for lvl in levels] == [0, 5, 15]
    assert all(lvl.people for lvl in levels)


def test_format_on_call_in_both_languages(roster: Roster, demo: Topology) -> None:
    at = parse_at("2026-11-27T23:00")
    assert at.tzinfo is VN_TZ
    text = format_on_call(roster, demo, unit="991-002", domain="network", at=at)
    assert text.splitlines() == [
        "Trực lúc 2026-11-27 23:00 (giờ Việt Nam)",
        "Mạng — Phường Quang Cát (991-002): Tổ mạng tỉnh [net-province]",
        "  Cấp 1 (ngay): Lê Văn Cường (zalo 123)",
        "  Cấp 2 (sau 15 phút): Lê Văn Cường (zalo 123); Nguyễn Văn An (+84900000001)",
        "  Cấp 3 (sau 30 phút): Nguyễn Văn An (+84900000001) [thay thế]",
    ]
    english = format_on_call(roster, demo, at=at, lang="en")
    assert "On call at 2026-11-27 23:00 (Vietnam time)" in english
    assert "All domains — Demo (99): Tổ tổng hợp [all-province]" in english
    assert "Network — Demo District (992): Tổ mạng huyện [net-district]" in english
    with pytest.raises(Invalid, match="unit 'x'"):
        format_on_call(roster, demo, unit="x")
    with pytest.raises(Invalid, match="not an ISO time"):
        parse_at("tomorrow")


def test_a_whole_roster_error_points_at_the_team_it_names() -> None:
    text = ROSTER.replace("lead: dung", "lead: nobody")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "id: net-district" in row)
    with pytest.raises(Invalid, match=rf"^roster.yaml:{line}: team 'net-district': lead"):
        parse_roster(text, "roster.yaml")
