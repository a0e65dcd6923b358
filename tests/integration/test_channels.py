"""Paging channels against loopback servers implementing the providers' documented HTTP APIs
(eSMS.vn, Zalo OA v3, Telegram Bot API): delivery, retries, 429, rate limits, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from ioc.services.channels import (
    ChannelConfig,
    Contact,
    Delivery,
    Dispatcher,
    Page,
    parse_channels,
)
from tests.support import fake_channels as fake

SMS_KEY = "esms-api-key-SECRET1"
SMS_SECRET = "esms-secret-key-SECRET2"
ZALO_TOKEN = "zalo-access-token-SECRET3"
BOT_TOKEN = "123456:bot-token-SECRET4"
SECRETS = (SMS_KEY, SMS_SECRET, ZALO_TOKEN, BOT_TOKEN)

PAGE = Page(
    page_id=1,
    status="firing",
    severity="critical",
    title="Nút mạng Yên Bình mất kết nối",
    body="12 thiết bị phía sau không liên lạc được",
    incident_id=42,
    console_url="http://console.example/console/incidents/42",
)
ALICE = Contact(
    name="Nguyễn Văn An",
    phone="+84 912 345 678",
    zalo_user_id="zalo-an",
    telegram_chat_id="1001",
    email="an@example.vn",
)


@dataclass
class Gateways:
    sms: fake.FakeGateway
    zalo: fake.FakeGateway
    telegram: fake.FakeGateway
    webhook: fake.FakeGateway


@pytest.fixture
async def gateways() -> AsyncIterator[Gateways]:
    gws = Gateways(
        await fake.esms(SMS_KEY, SMS_SECRET),
        await fake.zalo(ZALO_TOKEN),
        await fake.telegram(BOT_TOKEN),
        await fake.webhook(),
    )
    yield gws
    for gw in (gws.sms, gws.zalo, gws.telegram, gws.webhook):
        await gw.close()


FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05}


def config(gws: Gateways, **overrides: dict[str, Any]) -> list[ChannelConfig]:
    """All four HTTP channels at the fakes; ``overrides`` by kind."""
    items: list[dict[str, Any]] = [
        {
            "type": "sms",
            "base_url": gws.sms.base_url,
            "api_key": SMS_KEY,
            "secret_key": SMS_SECRET,
            "brandname": "IOC-YENBAI",
            **FAST,
        },
        {"type": "zalo", "base_url": gws.zalo.base_url, "access_token": ZALO_TOKEN, **FAST},
        {"type": "telegram", "base_url": gws.telegram.base_url, "token": BOT_TOKEN, **FAST},
        {"type": "webhook", "url": f"{gws.webhook.base_url}/hook?key=hooksecret", **FAST},
    ]
    chosen = [{**item, **overrides.get(item["type"], {})} for item in items]
    return parse_channels(json.dumps([c for c in chosen if "skip" not in c]))


def by_channel(deliveries: list[Delivery]) -> dict[str, Delivery]:
    return {d.channel: d for d in deliveries}


async def test_each_channel_delivers_the_page_in_vietnamese(gateways: Gateways) -> None:
    dispatcher = Dispatcher(config(gateways))
    try:
        deliveries = by_channel(await dispatcher.deliver(PAGE, [ALICE]))
    finally:
        await dispatcher.close()
    assert {k: d.result for k, d in deliveries.items()} == dict.fromkeys(
        ("sms", "zalo", "telegram", "webhook"), "ok"
    )
    sms = gateways.sms.messages[0]
    assert sms["Phone"] == "84912345678" and sms["Brandname"] == "IOC-YENBAI"
    assert sms["SmsType"] == "2" and sms["IsUnicode"] == "1"
    zalo = gateways.zalo.messages[0]
    assert zalo["recipient"] == {"user_id": "zalo-an"}
    tg = gateways.telegram.messages[0]
    assert tg["chat_id"] == "1001"
    for text in (sms["Content"], zalo["message"]["text"], tg["text"]):
        assert text.startswith("[CẢNH BÁO · nghiêm trọng] Nút mạng Yên Bình mất kết nối")
        assert "Sự cố #42: http://console.example/console/incidents/42" in text
    hook = gateways.webhook.messages[0]
    assert hook["incident_id"] == 42 and hook["status"] == "firing"
    assert "Sự cố #42" in hook["text"]
    assert deliveries["webhook"].recipient.endswith("/hook")  # the query (a secret) not shown


async def test_english_on_request_and_configured_recipients(gateways: Gateways) -> None:
    channels = config(
        gateways,
        telegram={"chat_ids": [-100200, "300"], "lang": "en"},
        zalo={"user_ids": ["z1"]},
        sms={"skip": True},
    )
    dispatcher = Dispatcher(channels)
    try:
        resolved = PAGE.model_copy(update={"status": "resolved", "lang": "en"})
        deliveries = await dispatcher.deliver(resolved, [])
    finally:
        await dispatcher.close()
    assert all(d.result == "ok" for d in deliveries), deliveries
    assert [m["chat_id"] for m in gateways.telegram.messages] == ["-100200", "300"]
    assert gateways.telegram.messages[0]["text"].startswith(
        "[RESOLVED · critical] Nút mạng Yên Bình mất kết nối"
    )
    assert "Incident #42: http://console.example" in gateways.telegram.messages[0]["text"]
    assert gateways.zalo.messages[0]["recipient"]["user_id"] == "z1"
    # no recipient and nothing configured: skipped, not an error
    dispatcher = Dispatcher(config(gateways))
    try:
        sms = [d for d in await dispatcher.deliver(PAGE, []) if d.channel == "sms"]
    finally:
        await dispatcher.close()
    assert [d.result for d in sms] == ["skipped"]


async def test_retries_5xx_with_backoff_and_gives_up_after_its_attempts(
    gateways: Gateways,
) -> None:
    gateways.sms.fail(2, status=503)
    gateways.zalo.fail(2, status=500)
    gateways.telegram.fail(2, status=502)
    gateways.webhook.fail(5, status=500)
    dispatcher = Dispatcher(config(gateways, webhook={"attempts": 2}))
    try:
        deliveries = by_channel(await dispatcher.deliver(PAGE, [ALICE]))
    finally:
        await dispatcher.close()
    assert deliveries["sms"].result == "ok" and gateways.sms.requests == 3
    assert deliveries["zalo"].result == "ok" and gateways.zalo.requests == 3
    assert deliveries["telegram"].result == "ok" and gateways.telegram.requests == 3
    assert deliveries["webhook"].result == "error" and gateways.webhook.requests == 2
    assert "HTTP 500" in deliveries["webhook"].detail


async def test_provider_errors_are_not_retried(gateways: Gateways) -> None:
    gateways.zalo.fail(1, code=-213)  # the user does not follow the OA
    channels = config(
        gateways,
        sms={"secret_key": "wrong-secret"},
        telegram={"token": "999:wrong"},
        webhook={"skip": True},
    )
    dispatcher = Dispatcher(channels)
    try:
        deliveries = by_channel(await dispatcher.deliver(PAGE, [ALICE]))
    finally:
        await dispatcher.close()
    assert deliveries["sms"].result == "error" and "CodeResult 101" in deliveries["sms"].detail
    assert deliveries["zalo"].result == "error" and "Zalo error -213" in deliveries["zalo"].detail
    assert deliveries["telegram"].result == "error"
    assert "Telegram 401" in deliveries["telegram"].detail
    assert (gateways.sms.requests, gateways.zalo.requests, gateways.telegram.requests) == (1, 1, 1)
    assert "wrong-secret" not in deliveries["sms"].detail
    assert "999:wrong" not in deliveries["telegram"].detail


async def test_429_waits_as_asked(gateways: Gateways) -> None:
    gateways.telegram.fail(1, status=429, retry_after=1)
    gateways.sms.fail(1, status=429, retry_after=1)  # HTTP Retry-After header
    dispatcher = Dispatcher(config(gateways, zalo={"skip": True}, webhook={"skip": True}))
    started = time.monotonic()
    try:
        deliveries = by_channel(await dispatcher.deliver(PAGE, [ALICE]))
    finally:
        await dispatcher.close()
    assert deliveries["telegram"].result == "ok" and deliveries["sms"].result == "ok"
    assert time.monotonic() - started >= 0.95  # not the 0.01 s backoff
    assert gateways.telegram.requests == 2 and gateways.sms.requests == 2


async def test_429_asking_too_long_fails_instead_of_holding_the_page(
    gateways: Gateways,
) -> None:
    gateways.telegram.fail(1, status=429, retry_after=600)
    dispatcher = Dispatcher(
        config(
            gateways,
            telegram={"max_retry_after_s": 5},
            sms={"skip": True},
            zalo={"skip": True},
            webhook={"skip": True},
        )
    )
    started = time.monotonic()
    try:
        [delivery] = await dispatcher.deliver(PAGE, [ALICE])
    finally:
        await dispatcher.close()
    assert delivery.result == "error" and "over the cap" in delivery.detail
    assert time.monotonic() - started < 5


async def test_rate_limit_spaces_messages_and_refuses_beyond_the_queue(
    gateways: Gateways,
) -> None:
    people = [Contact(name=f"p{i}", telegram_chat_id=str(i)) for i in range(5)]
    only_telegram = {"sms": {"skip": True}, "zalo": {"skip": True}, "webhook": {"skip": True}}
    dispatcher = Dispatcher(
        config(gateways, telegram={"rate_per_min": 600, "burst": 2}, **only_telegram)
    )
    try:
        deliveries = await dispatcher.deliver(PAGE, people)
    finally:
        await dispatcher.close()
    assert [d.result for d in deliveries] == ["ok"] * 5
    arrivals = gateways.telegram.arrivals
    assert arrivals[1] - arrivals[0] < 0.08  # the burst
    assert arrivals[4] - arrivals[0] >= 0.25  # then 10 a second
    dispatcher = Dispatcher(
        config(
            gateways,
            telegram={"rate_per_min": 6, "burst": 2, "max_queue_s": 0},
            **only_telegram,
        )
    )
    try:
        deliveries = await dispatcher.deliver(PAGE, people)
    finally:
        await dispatcher.close()
    assert [d.result for d in deliveries] == ["ok", "ok", "error", "error", "error"]
    assert "rate limit" in deliveries[2].detail


async def test_no_secret_in_logs_or_deliveries(
    gateways: Gateways, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    gateways.zalo.fail(3, status=500)
    gateways.sms.fail(1, code="99")
    channels = config(
        gateways,
        telegram={"base_url": f"http://127.0.0.1:{closed}", "attempts": 2},
        webhook={"headers": {"Authorization": "Bearer hook-SECRET5"}},
    )
    dispatcher = Dispatcher(channels)
    try:
        deliveries = await dispatcher.deliver(PAGE, [ALICE])
        await asyncio.sleep(0)
    finally:
        await dispatcher.close()
    assert {d.channel: d.result for d in deliveries} == {
        "sms": "error",
        "zalo": "error",
        "telegram": "error",
        "webhook": "ok",
    }
    ours = [r for r in caplog.records if r.name != "aiohttp.access"]  # not the fakes' log
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in ours)
    text = logged + " ".join(d.model_dump_json() for d in deliveries)
    assert "not sent via telegram" in logged
    for secret in (*SECRETS, "hook-SECRET5", "hooksecret"):
        assert secret not in text
        assert secret.replace(":", "%3A") not in text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{", r"IOC_PAGER_CHANNELS is not valid JSON"),
        ('{"type": "sms"}', r"IOC_PAGER_CHANNELS must be a JSON list"),
        ('[{"type": "pigeon"}]', r"IOC_PAGER_CHANNELS\[0\]\.type: must be one of webhook"),
        ('[{"type": "webhook", "url": "ftp://x"}]', r"IOC_PAGER_CHANNELS\[0\]\.url: must be"),
        ('[{"type": "email", "to": []}]', r"IOC_PAGER_CHANNELS\[0\]\.host: Field required"),
        (
            '[{"type": "webhook", "url": "http://x"}, {"type": "telegram"}]',
            r"IOC_PAGER_CHANNELS\[1\]\.token: Field required",
        ),
        (
            '[{"type": "zalo", "access_token": "t0ken-xyz", "user_id": "u"}]',
            r"IOC_PAGER_CHANNELS\[0\]\.user_id: Extra inputs are not permitted",
        ),
        (
            '[{"type": "sms", "api_key": "k3y-xyz", "secret_key": "s", "phones": ["abc"]}]',
            r"IOC_PAGER_CHANNELS\[0\]\.phones: phone numbers are digits",
        ),
        (
            '[{"type": "telegram", "token": "t0ken-xyz", "attempts": 0}]',
            r"IOC_PAGER_CHANNELS\[0\]\.attempts: Input should be greater than or equal to 1",
        ),
        (
            '[{"type": "telegram", "token": "a"}, {"type": "telegram", "token": "b"}]',
            r"two channels are named 'telegram'",
        ),
    ],
)
def test_bad_configuration_is_one_line_naming_the_item_and_field(text: str, error: str) -> None:
    from ioc.errors import IocError

    with pytest.raises(IocError, match=error) as info:
        parse_channels(text)
    message = str(info.value)
    assert "\n" not in message
    assert "t0ken-xyz" not in message and "k3y-xyz" not in message


def test_the_old_format_still_parses() -> None:
    channels = parse_channels(
        '[{"type": "webhook", "url": "https://x", "headers": {"X-A": "1"}},'
        ' {"type": "email", "host": "smtp", "port": 2525, "from": "ioc@x", "to": ["a@b"],'
        ' "starttls": true, "username": "u", "password": "p4ss"}]'
    )
    assert [c.type for c in channels] == ["webhook", "email"]
    assert "p4ss" not in repr(channels)
