"""Page texts, the token bucket and the secret mask of the paging channels."""

from __future__ import annotations

import pytest

from ioc.services.channels import Page, RateLimited, TokenBucket, mask, render


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
