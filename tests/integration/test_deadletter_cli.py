"""``ioc deadletter list | show | redrive`` against the real broker, in a private namespace."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ioc.cli import main
from ioc.config import Settings
from ioc.contract import deadletter as dl
from ioc.contract.topics import CAMERA, DEAD_LETTER, TELEHEALTH, TopicSpec
from ioc.kafka import ensure_topics
from ioc.kafka_clients import aiokafka_common
from ioc.streams.deadletter_cli import REDRIVE_HEADER
from tests.support.processes import ioc_command, ioc_env

NOW = 1_700_000_000_000

Record = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]
"""partition, key, value, headers"""


async def produce(settings: Settings, letters: list[dl.DeadLetter]) -> None:
    producer = AIOKafkaProducer(**aiokafka_common(settings), acks="all")
    await producer.start()
    try:
        for letter in letters:  # one at a time: a repeated key must stay newest last
            await producer.send_and_wait(
                settings.topic(DEAD_LETTER.name), dl.encode(letter), key=letter.source.encode()
            )
    finally:
        await producer.stop()


async def read_all(settings: Settings, spec: TopicSpec) -> list[Record]:
    """Every record of a topic, up to its end offsets now, by partition."""
    consumer = AIOKafkaConsumer(**aiokafka_common(settings), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(spec.name), p) for p in range(spec.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[Record] = []
        remaining = [tp for tp in tps if end[tp] > 0]
        while remaining:
            for messages in (await consumer.getmany(*remaining, timeout_ms=1000)).values():
                records += [(m.partition, m.key, m.value, list(m.headers)) for m in messages]
            remaining = [tp for tp in remaining if await consumer.position(tp) < end[tp]]
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: r[0])


def ioc(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``ioc ARGV`` in this process, in the namespace; exit status, stdout, stderr."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in settings.child_env().items():
            mp.setenv(name, value)
        rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def letter(
    reason: str, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
) -> dl.DeadLetter:
    return dl.make(
        reason=reason,
        detail=f"{reason} detail",
        feed="telehealth" if "telehealth" in topic else "camera",
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        kafka_timestamp_ms=NOW,
        now_ms=NOW + offset,
    )


def test_list_show_and_redrive(namespace: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    dlq = namespace.topic(DEAD_LETTER.name)
    camera = namespace.topic(CAMERA.name)
    telehealth = namespace.topic(TELEHEALTH.name)

    # No topic yet, then an empty one: both say so and succeed.
    rc, out, _ = ioc(namespace, capsys, "deadletter", "list")
    assert rc == 0 and f"{dlq} does not exist" in out
    asyncio.run(ensure_topics(namespace, [CAMERA, TELEHEALTH, DEAD_LETTER]))
    rc, out, _ = ioc(namespace, capsys, "deadletter", "list")
    assert (rc, out) == (0, f"no dead letters in {dlq}\n")

    device_1 = b'{"kind":"camera.status","device_id":"cam-new-1","seq":1}'
    device_2 = b'{"kind":"camera.status","device_id":"cam-new-2","seq":7}'
    big = b"x" * 70_000
    binary = b"\xff\xfe\x00 not text"
    asyncio.run(
        produce(
            namespace,
            [
                letter("schema", camera, 1, 10, b"cam-new-1", device_1),
                letter("unknown_device", camera, 2, 11, b"cam-new-2", device_2),
                letter("not_json", camera, 3, 12, b"cam-3", binary),
                letter("oversized", camera, 4, 13, b"cam-4", big),
                letter("tombstone", telehealth, 0, 5, b"th-1", None),
                # the batch replayed after a fix of the checks: same source, newer reason
                letter("unknown_device", camera, 1, 10, b"cam-new-1", device_1),
            ],
        )
    )

    # list: one row per source, the newest reason, a summary by reason
    rc, out, _ = ioc(namespace, capsys, "deadletter", "list")
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["source", "reason", "feed", "when", "size", "detail"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(rows) == {
        f"{camera}/1/10",
        f"{camera}/2/11",
        f"{camera}/3/12",
        f"{camera}/4/13",
        f"{telehealth}/0/5",
    }
    assert rows[f"{camera}/1/10"][1:4] == ["unknown_device", "camera", "2023-11-14T22:13:20Z"]
    assert rows[f"{camera}/4/13"][4:6] == ["70000", "cut"]
    assert rows[f"{telehealth}/0/5"][4] == "none"
    assert lines[-1].startswith("5 dead letters: unknown_device 2, ")
    assert "oversized 1" in lines[-1] and "(6 records read" in lines[-1]

    rc, out, _ = ioc(
        namespace, capsys, "deadletter", "list", "--reason", "unknown_device", "--json"
    )
    docs = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and {d["source"] for d in docs} == {f"{camera}/1/10", f"{camera}/2/11"}
    assert all(d["reason"] == "unknown_device" and "value_b64" not in d for d in docs)

    rc, out, _ = ioc(
        namespace, capsys, "deadletter", "list", "--feed", "telehealth", "--limit", "1"
    )
    assert rc == 0 and out.splitlines()[1].startswith(f"{telehealth}/0/5 ")
    rc, out, _ = ioc(namespace, capsys, "deadletter", "list", "--reason", "db_rejected")
    assert rc == 0 and "no dead letters match (reason db_rejected)" in out

    # show: text, hex, cut
    rc, out, _ = ioc(namespace, capsys, "deadletter", "show", f"{camera}/1/10")
    assert rc == 0 and "reason         unknown_device" in out and device_1.decode() in out
    rc, out, _ = ioc(namespace, capsys, "deadletter", "show", f"{camera}/3/12")
    assert rc == 0 and "00000000  ff fe 00 20 6e 6f 74" in out
    rc, out, _ = ioc(namespace, capsys, "deadletter", "show", f"{camera}/4/13")
    assert rc == 0 and f"70000 bytes, sha256 {hashlib.sha256(big).hexdigest()}" in out
    assert "CUT: only the first" in out
    rc, out, _ = ioc(namespace, capsys, "deadletter", "show", f"{camera}/4/13", "--json")
    assert rc == 0 and dl.decode(out.strip().encode()).value_truncated
    rc, _, err = ioc(namespace, capsys, "deadletter", "show", f"{camera}/4/99")
    assert rc == 2 and err == f"ioc: error: no dead letter for {camera}/4/99\n"

    # redrive: refused without a selector, nothing sent on a dry run
    rc, _, err = ioc(namespace, capsys, "deadletter", "redrive")
    assert rc == 2 and "--yes" in err
    rc, out, _ = ioc(namespace, capsys, "deadletter", "redrive", "--feed", "camera", "--dry-run")
    assert rc == 1 and out.count("would send ") == 3 and out.count("refused ") == 1
    assert asyncio.run(read_all(namespace, CAMERA)) == []

    rc, out, _ = ioc(
        namespace,
        capsys,
        "deadletter",
        "redrive",
        "--reason",
        "unknown_device",
        "--reason",
        "oversized",
        "--reason",
        "tombstone",
    )
    assert rc == 1, out
    assert f"redriven   {camera}/1/10 [unknown_device] -> {camera}/1/0:" in out
    assert f"redriven   {camera}/2/11 [unknown_device] -> {camera}/2/0:" in out
    assert f"refused    {camera}/4/13 [oversized]: value cut" in out
    assert f"refused    {telehealth}/0/5 [tombstone]: tombstone" in out
    assert "re-drove 2 of 4 dead letters" in out
    rc, out, _ = ioc(namespace, capsys, "deadletter", "redrive", "--source", f"{camera}/9/9")
    assert rc == 1 and out.startswith(f"not found  {camera}/9/9: no dead letter")

    # the original bytes, on the original partitions, nothing else
    assert asyncio.run(read_all(namespace, CAMERA)) == [
        (1, b"cam-new-1", device_1, [(REDRIVE_HEADER, f"{camera}/1/10".encode())]),
        (2, b"cam-new-2", device_2, [(REDRIVE_HEADER, f"{camera}/2/11".encode())]),
    ]
    assert asyncio.run(read_all(namespace, TELEHEALTH)) == []


def test_the_installed_command_names_an_unreachable_broker(namespace: Settings) -> None:
    env = ioc_env(namespace) | {"IOC_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = subprocess.run(
        ioc_command("deadletter", "list"), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.startswith("ioc: error: Kafka broker at 127.0.0.1:1 is unreachable")
    assert done.stderr.count("\n") == 1
