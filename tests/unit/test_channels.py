"""Page texts, the token bucket and the secret mask of the paging channels."""

from __future__ import annotations

import logging
import socket
import time
from email.message import EmailMessage
from typing import ClassVar

import pytest

from ioc.services.channels import (
    Dispatcher,
    EmailConfig,
    Page,
    RateLimited,
    TokenBucket,
    WebhookConfig,
    mask,
    render,
)


def page(**update: object) -> Page:
    base = Page(
        page_id=3,
        status="firing",
        severity="warning",
        title="Camera Ngã tư Km5 mất tín hiệu",
        body="Không nhận được hình ảnh trong 5 phút",
        incident_id=9,
        console_url="https://ioc.example/console/incidents/9",
    )
    return base.model_copy(update=update)


def test_vietnamese_by_default_english_on_request() -> None:
    assert render(page(), "vi").splitlines() == [
        "[CẢNH BÁO · cảnh báo] Camera Ngã tư Km5 mất tín hiệu",
        "Không nhận được hình ảnh trong 5 phút",
        "Sự cố #9: https://ioc.example/console/incidents/9",
    ]
    assert render(page(status="resolved"), "en").splitlines()[0] == (
        "[RESOLVED · warning] Camera Ngã tư Km5 mất tín hiệu"
    )
    assert render(page(incident_id=None, console_url=None), "en").splitlines()[-1] == (
        "Không nhận được hình ảnh trong 5 phút"
    )


def test_a_long_page_keeps_its_incident_line() -> None:
    text = render(page(body="x" * 1000), "vi", limit=160)
    assert len(text) <= 160
    assert text.endswith("Sự cố #9: https://ioc.example/console/incidents/9")
    assert "…" in text


def test_token_bucket_reserves_in_order_and_refuses_past_its_queue() -> None:
    bucket = TokenBucket(rate_per_min=60, burst=2, max_wait=1.5)
    assert bucket.reserve() == 0 and bucket.reserve() == 0
    assert 0.9 < bucket.reserve() <= 1.0
    with pytest.raises(RateLimited, match="rate limit"):
        bucket.reserve()  # would wait 2 s


def test_mask_hides_secrets_and_their_url_encoding() -> None:
    token = "123456:AA-bot"
    text = f"POST https://api.telegram.org/bot{token}/sendMessage and bot123456%3AAA-bot"
    assert mask(text, [token]) == "POST https://api.telegram.org/bot***/sendMessage and bot***"
    assert mask("nothing", ["", "ab"]) == "nothing"  # trivial strings are not masked


def test_a_webhook_url_with_credentials_is_shown_and_logged_without_them() -> None:
    hook = WebhookConfig(
        type="webhook", url="https://alice:pa%24%24-w0rd@hooks.example:8443/p?k=q1"
    )
    shown = mask(hook.shown(hook.url), hook.secrets())
    assert shown == "https://hooks.example:8443/p"
    # an error text quoting the URL (or the decoded password) is masked too
    error = f"cannot reach {hook.url} as alice with pa$$-w0rd"
    masked = mask(error, hook.secrets())
    assert "pa%24%24-w0rd" not in masked and "pa$$-w0rd" not in masked and "q1" not in masked


async def test_a_webhook_with_credentials_leaves_no_password_in_logs_or_deliveries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    hook = WebhookConfig(
        type="webhook", url=f"http://bob:hunter2-SECRET@127.0.0.1:{closed}/hook", attempts=1
    )
    dispatcher = Dispatcher([hook])
    try:
        (delivery,) = await dispatcher.deliver(page(), [])
    finally:
        await dispatcher.close()
    assert delivery.result == "error"
    assert delivery.recipient == f"http://127.0.0.1:{closed}/hook"
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "hunter2-SECRET" not in logged + delivery.model_dump_json()


class SlowSmtp(EmailConfig):
    """An SMTP exchange that succeeds after longer than ``timeout_s``."""

    calls: ClassVar[list[str]] = []

    def _smtp(self, msg: EmailMessage) -> None:
        time.sleep(0.3)
        self.calls.append(str(msg["To"]))


async def test_a_slow_smtp_success_is_not_sent_twice() -> None:
    """smtplib's own timeout bounds the exchange: no outer timeout cancels the wait of a send
    that goes on in its thread (and would be retried: mail twice)."""
    channel = SlowSmtp(type="email", host="127.0.0.1", to=["ops@example.test"], timeout_s=0.1)
    dispatcher = Dispatcher([channel])
    try:
        (delivery,) = await dispatcher.deliver(page(), [])
    finally:
        await dispatcher.close()
    assert delivery.result == "ok"
    assert SlowSmtp.calls == ["ops@example.test"]
