"""``ioc deadletter``: arguments, source syntax, selection, collapsing and formatting (no Kafka)."""

from __future__ import annotations

import hashlib
import json

import pytest

from ioc.cli import build_parser, main
from ioc.contract import deadletter as dl
from ioc.streams import deadletter_cli as cli

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def letter(
    *,
    reason: str = "unknown_device",
    feed: str | None = "camera",
    topic: str = "ioc.camera.v1",
    partition: int = 1,
    offset: int = 10,
    key: bytes | None = b"cam-001",
    value: bytes | None = b'{"device_id":"cam-001"}',
    detail: str = "device cam-001 is not in the topology",
    now_ms: int = NOW,
) -> dl.DeadLetter:
    return dl.make(
        reason=reason,
        detail=detail,
        feed=feed,
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        kafka_timestamp_ms=now_ms - 5,
        now_ms=now_ms,
    )


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("ioc.camera.v1/3/1234", "ioc.camera.v1/3/1234"),
        ("t1a2b3c4d5.ioc.camera.v1/0/0", "t1a2b3c4d5.ioc.camera.v1/0/0"),
        (" ioc.netnode.v1/007/0010 ", "ioc.netnode.v1/7/10"),
        (f"x/{2**31 - 1}/{2**63 - 1}", f"x/{2**31 - 1}/{2**63 - 1}"),
    ],
)
def test_a_source_is_topic_partition_offset(text: str, source: str) -> None:
    assert cli.parse_source(text) == source


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ioc.camera.v1",
        "ioc.camera.v1/3",
        "ioc.camera.v1/3/",
        "ioc.camera.v1/-1/5",
        "ioc.camera.v1/3/x",
        "bad topic/3/5",
        "a/b/3/5",
        "/3/5",
        "ioc.camera.v1/3/5/",
    ],
)
def test_a_bad_source_is_a_one_line_usage_error(text: str) -> None:
    with pytest.raises(cli.UsageError) as info:
        cli.parse_source(text)
    assert "TOPIC/PARTITION/OFFSET" in str(info.value)
    assert "\n" not in str(info.value)


def test_list_arguments_parse() -> None:
    args = build_parser().parse_args(
        [
            "deadletter",
            "list",
            "--reason",
            "unknown_device",
            "--reason",
            "schema",
            "--feed",
            "camera",
            "--source",
            "ioc.camera.v1/1/10",
            "--limit",
            "5",
            "--json",
        ]
    )
    assert args.handler is cli.cmd_list
    assert (args.limit, args.json) == (5, True)
    selector = cli.Selector.from_args(args)
    assert selector.reasons == {"unknown_device", "schema"}
    assert selector.feeds == {"camera"}
    assert selector.sources == {"ioc.camera.v1/1/10"}


def test_defaults_and_the_other_actions_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["deadletter", "list"])
    assert (args.limit, args.json) == (cli.DEFAULT_LIMIT, False)
    assert cli.Selector.from_args(args).empty
    args = parser.parse_args(["deadletter", "show", "ioc.camera.v1/1/10"])
    assert (args.handler, args.source, args.json) == (cli.cmd_show, "ioc.camera.v1/1/10", False)
    args = parser.parse_args(
        ["deadletter", "redrive", "--source", "a/1/2", "--source", "b/3/4", "--dry-run"]
    )
    assert args.handler is cli.cmd_redrive
    assert (args.dry_run, args.yes) == (True, False)
    assert cli.Selector.from_args(args).sources == {"a/1/2", "b/3/4"}


@pytest.mark.parametrize(
    "argv",
    [
        ["deadletter", "list", "--reason", "no_such_reason"],
        ["deadletter", "list", "--feed", "radio"],
        ["deadletter", "list", "--limit", "many"],
        ["deadletter", "show"],
        ["deadletter"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["deadletter", "show", "nonsense"], "bad source 'nonsense'"),
        (["deadletter", "list", "--source", "x/y/z"], "bad source 'x/y/z'"),
        (["deadletter", "redrive", "--source", "x/1"], "bad source 'x/1'"),
        (["deadletter", "redrive"], "--yes"),
        (["deadletter", "list", "--limit", "-1"], "--limit"),
    ],
)
def test_usage_errors_print_one_line_before_any_kafka_call(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The broker address is unreachable: these must fail on the arguments alone.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IOC_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ioc: error: ") and fragment in err
    assert err.count("\n") == 1


# --- selection and collapsing ------------------------------------------------------------------


def test_a_selector_needs_every_criterion() -> None:
    one = letter()
    assert cli.Selector()(one)
    assert cli.Selector(reasons=frozenset({"unknown_device", "schema"}))(one)
    assert not cli.Selector(reasons=frozenset({"schema"}))(one)
    assert cli.Selector(feeds=frozenset({"camera"}), sources=frozenset({one.source}))(one)
    assert not cli.Selector(feeds=frozenset({"camera"}), sources=frozenset({"x/1/1"}))(one)
    assert not cli.Selector(feeds=frozenset({"netnode"}))(one)
    assert cli.Selector(reasons=frozenset({"b", "a"})).describe() == "reason a, b"
    assert cli.Selector().describe() == "all"


def _feed(scan: cli.Scan, *letters: dl.DeadLetter, select: cli.Selector, slim: bool) -> None:
    for one in letters:
        cli._take(scan, one.source.encode(), dl.encode(one), select, slim)


def test_the_newest_dead_letter_of_a_source_stands() -> None:
    old = letter(reason="schema", now_ms=NOW)
    new = letter(reason="unknown_device", now_ms=NOW + 1000)
    other = letter(offset=11, reason="schema")
    scan = cli.Scan(topic="dlq")
    _feed(scan, old, other, new, select=cli.Selector(), slim=False)
    assert scan.records == 3
    assert scan.selected == {old.source: new, other.source: other}
    assert scan.reasons == {old.source: "unknown_device", other.source: "schema"}

    # selected by an older record only: the newer one decides, so it is not selected
    scan = cli.Scan(topic="dlq")
    _feed(scan, old, new, other, select=cli.Selector(reasons=frozenset({"schema"})), slim=True)
    assert list(scan.selected) == [other.source]
    assert scan.selected[other.source].value_b64 is None  # slim: no kept value
    assert scan.selected[other.source].key() == b"cam-001"


def test_tombstones_and_foreign_records_on_the_dead_letter_topic() -> None:
    one = letter()
    scan = cli.Scan(topic="dlq")
    _feed(scan, one, select=cli.Selector(), slim=False)
    cli._take(scan, one.source.encode(), None, cli.Selector(), False)  # deleted by its key
    cli._take(scan, b"x/1/2", b"not a dead letter", cli.Selector(), False)
    cli._take(scan, b"x/1/3", b'{"reason": 1}', cli.Selector(), False)
    assert scan.selected == {} and scan.reasons == {}
    assert (scan.records, scan.undecodable) == (4, 2)


# --- formatting ----------------------------------------------------------------------------------


def test_times_are_utc_iso() -> None:
    assert cli.utc_iso(NOW) == "2023-11-14T22:13:20.000Z"
    assert cli.utc_iso(NOW + 7, "seconds") == "2023-11-14T22:13:20Z"
    assert cli.utc_iso(None) == "-"
    assert cli.utc_iso(2**63 - 1) == f"{2**63 - 1} ms"


def test_hostile_text_is_escaped_for_the_terminal() -> None:
    assert cli.escape("plain text") == "plain text"
    assert cli.escape("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert cli.escape("a\nb\tc", keep="\n\t") == "a\nb\tc"
    assert cli.escape("a\u200bb") == "a\\u200bb"
    assert cli.shorten("one  two\nthree", 40) == "one two three"
    assert cli.shorten("x" * 100, 20) == "x" * 17 + "..."


def test_sizes_say_when_a_value_was_cut() -> None:
    assert cli.size_text(letter(value=b"12345")) == "5"
    assert cli.size_text(letter(value=b"x" * 70_000)) == "70000 cut"
    assert cli.size_text(letter(value=None)) == "none"


def test_the_table_aligns_columns_and_shortens_details() -> None:
    rows = [
        letter(detail="d" * 200),
        letter(topic="ioc.telehealth.v1", partition=0, offset=5, feed=None, value=None),
    ]
    lines = cli.table(rows)
    assert lines[0].split() == ["source", "reason", "feed", "when", "size", "detail"]
    assert lines[1].startswith("ioc.camera.v1/1/10 ")
    assert lines[1].endswith("d" * (cli.DETAIL_WIDTH - 3) + "...")
    assert " - " in lines[2] and " none " in lines[2]
    start = lines[0].index("reason")
    assert all(line[start - 2 : start] == "  " for line in lines)
    assert lines[1][start:].startswith("unknown_device")


def test_reason_counts_biggest_first() -> None:
    assert cli.reason_counts(["a", "b", "b", "c", "b", "a"]) == "b 3, a 2, c 1"


def test_a_json_listing_has_the_metadata_but_not_the_bytes() -> None:
    doc = cli.list_record(letter())
    assert json.loads(json.dumps(doc)) == doc
    assert "value_b64" not in doc and "key_b64" not in doc
    assert doc["source"] == "ioc.camera.v1/1/10"
    assert doc["key"] == "cam-001"
    assert doc["dead_lettered_at"] == "2023-11-14T22:13:20.000Z"
    assert doc["dead_lettered_at_ms"] == NOW
    assert doc["value_length"] == len(b'{"device_id":"cam-001"}')
    assert doc["value_truncated"] is False


def test_show_prints_a_text_value_as_text() -> None:
    text = "\n".join(cli.show_lines(letter(value=b'{"a":\n"\x1b"}')))
    assert "source         ioc.camera.v1/1/10" in text
    assert "reason         unknown_device" in text
    assert "key            'cam-001' (7 bytes)" in text
    assert "UTF-8 text" in text
    assert '{"a":\n"\\x1b"}' in text  # newlines kept, control characters escaped
    assert "CUT" not in text


def test_show_dumps_a_binary_value_in_hex() -> None:
    value = bytes(range(256)) * 2
    lines = cli.show_lines(letter(value=value, key=b"\xff\x00"), hex_bytes=32)
    text = "\n".join(lines)
    assert "key            0xff00 (2 bytes)" in text
    assert "not UTF-8: first 32 of 512 bytes" in text
    assert "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|" in text
    assert "00000010  10 11 12" in text
    assert lines[-1] == "... 480 more bytes"


def test_show_says_clearly_when_the_value_was_cut() -> None:
    value = b"y" * 70_000
    text = "\n".join(cli.show_lines(letter(value=value)))
    assert f"70000 bytes, sha256 {hashlib.sha256(value).hexdigest()}" in text
    assert f"CUT: only the first {dl.MAX_KEPT_VALUE_BYTES} of 70000 bytes" in text
    assert "cannot be re-driven" in text


def test_show_a_tombstone() -> None:
    text = "\n".join(cli.show_lines(letter(value=None, key=None)))
    assert "key            none" in text
    assert "none (a tombstone)" in text


def test_hexdump_pads_a_short_last_line() -> None:
    assert cli.hexdump(b"AB\n") == [f"00000000  41 42 0a{' ' * 39}  |AB.|"]


# --- re-driving -----------------------------------------------------------------------------------


def test_cut_values_cut_keys_and_tombstones_are_refused() -> None:
    assert cli.refusal(letter()) is None
    assert cli.refusal(letter(value=b"")) is None  # the original bytes, empty as they were
    assert cli.refusal(letter(key=None)) is None
    assert "tombstone" in (cli.refusal(letter(value=None)) or "")
    cut = cli.refusal(letter(value=b"z" * 70_000)) or ""
    assert (
        "value cut" in cut and "70000" in cut and hashlib.sha256(b"z" * 70_000).hexdigest() in cut
    )
    assert "key cut" in (cli.refusal(letter(key=b"k" * 5000)) or "")


def test_the_plan_keeps_source_order_and_checks_the_source_topic() -> None:
    letters = [
        letter(partition=2, offset=5),
        letter(partition=1, offset=20),
        letter(partition=1, offset=3),
        letter(topic="gone.v1", offset=1),
        letter(partition=9, offset=1),
        letter(partition=0, offset=1, value=None),
    ]
    outcomes = cli.plan(letters, {"ioc.camera.v1": 6})
    assert [o.letter.source for o in outcomes] == [
        "gone.v1/1/1",
        "ioc.camera.v1/0/1",
        "ioc.camera.v1/1/3",
        "ioc.camera.v1/1/20",
        "ioc.camera.v1/2/5",
        "ioc.camera.v1/9/1",
    ]
    refused = {o.letter.source: o.refused for o in outcomes if o.refused}
    assert set(refused) == {"gone.v1/1/1", "ioc.camera.v1/0/1", "ioc.camera.v1/9/1"}
    assert "does not exist" in (refused["gone.v1/1/1"] or "")
    assert "no partition 9" in (refused["ioc.camera.v1/9/1"] or "")
