"""Paging channels: how a page reaches a person (webhook, e-mail, SMS, Zalo, Telegram).

The pager and the operations service's escalation both hand a :class:`Page` and the people to
tell (:class:`Contact`) to a :class:`Dispatcher`, built from ``IOC_PAGER_CHANNELS``. Each
channel has its own retry policy (attempts, exponential backoff, the server's Retry-After
honoured up to a cap) and its own token-bucket rate limit, because the gateways have their
own quotas and an outage must not be paged a thousand times. A channel's secrets (API keys,
tokens, passwords, header values) never appear in a log line or a delivery's detail: every
text that leaves a channel goes through its mask.

The HTTP channels follow each provider's documented API, so that the loopback servers of the
tests (``tests/support/fake_channels.py``) stand in for the real ones:

- ``sms``: eSMS.vn, ``POST {base_url}/MainService.svc/json/SendMultipleMessage_V4_post_json/``
  with ``ApiKey, SecretKey, Phone, Content, SmsType, Brandname``; ``CodeResult`` "100" is
  success, anything else an error;
- ``zalo``: Zalo Official Account API v3, ``POST {base_url}/v3.0/oa/message/cs`` with header
  ``access_token`` and ``{"recipient": {"user_id"}, "message": {"text"}}``; ``error`` 0 is
  success;
- ``telegram``: Bot API, ``POST {base_url}/bot{token}/sendMessage`` with ``chat_id, text``;
  ``ok`` true is success, 429 carries ``parameters.retry_after``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import logging
import smtplib
import time
import unicodedata
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from ioc.errors import IocError
from ioc.services.ops.common import Lang, tr

if TYPE_CHECKING:
    from ioc.config import Settings

log = logging.getLogger(__name__)

ENV = "IOC_PAGER_CHANNELS"


# --- what a person is told, and to whom ---


class Contact(BaseModel):
    """A person and where each channel reaches them (from the on-call roster)."""

    name: str
    email: str | None = None
    phone: str | None = None
    zalo_user_id: str | None = None
    telegram_chat_id: str | None = None


class Page(BaseModel):
    """What a person is told: rendered per channel in the page's language."""

    page_id: int | None
    status: Literal["firing", "resolved"]
    severity: str
    title: str
    body: str
    incident_id: int | None = None
    console_url: str | None = None
    lang: Lang = "vi"
    details: dict[str, Any] = {}
    """Extra fields for machine readers (the webhook's JSON: labels, annotations, incident)."""


class Delivery(BaseModel):
    channel: str
    recipient: str
    result: Literal["ok", "error", "skipped"]
    detail: str = ""


_SEVERITY_VI = {"critical": "nghiêm trọng", "warning": "cảnh báo", "info": "thông tin"}


def headline(page: Page, lang: Lang) -> str:
    """``[CẢNH BÁO · nghiêm trọng] title`` / ``[FIRING · critical] title``: a subject line."""
    state = (
        tr(lang, "CẢNH BÁO", "FIRING")
        if page.status == "firing"
        else tr(lang, "ĐÃ KHẮC PHỤC", "RESOLVED")
    )
    severity = _SEVERITY_VI.get(page.severity, page.severity) if lang == "vi" else page.severity
    return f"[{state} · {severity}] {page.title}" if severity else f"[{state}] {page.title}"


def render(page: Page, lang: Lang, limit: int | None = None) -> str:
    """The page as text: headline, body, then the incident and its console link. Over
    ``limit`` characters the body is shortened, never the incident line (the on-call needs it
    to act)."""
    tail = ""
    if page.incident_id is not None:
        tail = tr(lang, f"Sự cố #{page.incident_id}", f"Incident #{page.incident_id}")
        if page.console_url:
            tail += f": {page.console_url}"
    elif page.console_url:
        tail = page.console_url
    head = headline(page, lang)
    body = page.body.strip()
    parts = [head, body, tail]
    text = "\n".join(p for p in parts if p)
    if limit is None or len(text) <= limit:
        return text
    fixed = len(head) + len(tail) + 2
    room = limit - fixed - 1
    if room > 10:
        return "\n".join(p for p in (head, body[: room - 1] + "…", tail) if p)
    return text[: limit - 1] + "…"


def _strip_diacritics(text: str) -> str:
    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(
        c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
    ).replace("·", "-")


# --- channel configuration (IOC_PAGER_CHANNELS) ---


class _Failure(Exception):
    """One attempt failed; ``retry`` says whether another attempt may succeed and ``after``
    how long the server asked us to wait."""

    def __init__(self, detail: str, *, retry: bool, after: float | None = None) -> None:
        super().__init__(detail)
        self.retry = retry
        self.after = after


def _retry_after(value: str | None) -> float | None:
    """An HTTP Retry-After: seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _http_failure(status: int, headers: Any, detail: str) -> _Failure:
    """429 and 5xx are worth another attempt (after Retry-After when given); other 4xx are
    not (bad key, unknown recipient: retrying only burns the quota)."""
    retry = status == 429 or status >= 500
    return _Failure(
        f"HTTP {status}{': ' + detail if detail else ''}",
        retry=retry,
        after=_retry_after(headers.get("Retry-After")) if retry else None,
    )


async def _read_json(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except (json.JSONDecodeError, ValueError, aiohttp.ContentTypeError):
        return None


class ChannelConfig(BaseModel):
    """What every channel has: a name, its retry policy and its rate limit. The subclasses
    add the provider's address and credentials and know how to send one message."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: ClassVar[str] = ""
    default_rate: ClassVar[float] = 60.0
    max_chars: ClassVar[int | None] = None

    type: str
    name: str | None = None
    lang: Lang | None = None
    """The language of this channel's pages; unset: the page's own (Vietnamese by default)."""
    attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(1.0, ge=0, le=60)
    """First wait between attempts; doubles each time, up to ``max_backoff_s``."""
    max_backoff_s: float = Field(30.0, ge=0, le=600)
    max_retry_after_s: float = Field(60.0, ge=0, le=3600)
    """A server asking to wait longer than this fails the delivery rather than hold it."""
    rate_per_min: float | None = Field(None, gt=0, le=100_000)
    """Messages per minute (token bucket); unset: the channel kind's default."""
    burst: int = Field(5, ge=1, le=1000)
    max_queue_s: float = Field(120.0, ge=0, le=3600)
    """A message that would wait longer than this for the rate limit fails instead."""
    timeout_s: float = Field(10.0, gt=0, le=120)

    self_timed: ClassVar[bool] = False
    """The channel applies ``timeout_s`` itself and its :meth:`send` is not wrapped in one:
    a send that runs in a thread cannot be cancelled, so an outer timeout would only stop the
    wait and a slow success would be retried (sent twice)."""

    @property
    def label(self) -> str:
        return self.name or self.type

    @property
    def rate(self) -> float:
        return self.rate_per_min or self.default_rate

    def secrets(self) -> list[str]:
        return []

    def addresses(self, recipients: list[Contact]) -> list[str]:
        """Whom to send to: the recipients this channel reaches, else its configured ones."""
        raise NotImplementedError

    async def send(self, http: aiohttp.ClientSession, page: Page, text: str, to: str) -> None:
        """One attempt; raises :class:`_Failure`."""
        raise NotImplementedError

    def shown(self, to: str) -> str:
        """The recipient as a delivery names it."""
        return to


def _http_url(value: str) -> str:
    if not str(value).startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return str(value).rstrip("/")


def _unique(items: list[str | None]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


class WebhookConfig(ChannelConfig):
    """A generic webhook: the page as JSON (with its text and recipients) to one URL."""

    kind = "webhook"
    type: Literal["webhook"]
    url: str
    headers: dict[str, str] = {}

    _check_url = field_validator("url")(_http_url)

    def secrets(self) -> list[str]:
        parts = urlsplit(self.url)
        userinfo = parts.netloc.rpartition("@")[0]
        password = userinfo.partition(":")[2]
        return [
            *self.headers.values(),
            *([parts.query] if parts.query else []),
            *([userinfo] if userinfo else []),
            *([password, unquote(password)] if password else []),
        ]

    def shown(self, to: str) -> str:
        """The URL without its credentials (``user:password@``), query and fragment."""
        parts = urlsplit(to)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=host, query="", fragment=""))

    def addresses(self, recipients: list[Contact]) -> list[str]:
        return [self.url]

    async def send(self, http: aiohttp.ClientSession, page: Page, text: str, to: str) -> None:
        payload = {
            **page.details,
            "id": page.page_id,
            "status": page.status,
            "severity": page.severity,
            "title": page.title,
            "body": page.body,
            "text": text,
            "incident_id": page.incident_id,
            "console_url": page.console_url,
            "lang": self.lang or page.lang,
        }
        async with http.post(to, json=payload, headers=self.headers) as resp:
            if resp.status >= 300:
                raise _http_failure(resp.status, resp.headers, "")


class EmailConfig(ChannelConfig):
    """E-mail over SMTP: to the recipients' addresses, else the configured ``to``."""

    kind = "email"
    default_rate = 30.0
    self_timed = True  # smtplib's socket timeout (``timeout_s``) bounds each SMTP exchange
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    sender: str = Field("ioc-pager@localhost", alias="from")
    to: list[str] = []
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None

    def secrets(self) -> list[str]:
        return [self.password.get_secret_value()] if self.password else []

    def addresses(self, recipients: list[Contact]) -> list[str]:
        chosen = _unique([c.email for c in recipients]) or list(self.to)
        return [", ".join(chosen)] if chosen else []

    async def send(self, http: aiohttp.ClientSession, page: Page, text: str, to: str) -> None:
        lang = self.lang or page.lang
        msg = EmailMessage()
        msg["Subject"] = headline(page, lang)
        msg["From"] = self.sender
        msg["To"] = to
        runbook = page.details.get("annotations", {}).get("runbook_url")
        extra = f"\n\nRunbook: {runbook}" if runbook else ""
        labels = page.details.get("labels")
        if labels:
            extra += f"\nLabels: {json.dumps(labels, ensure_ascii=False)}"
        msg.set_content(text + extra + "\n")
        try:
            await asyncio.to_thread(self._smtp, msg)
        except smtplib.SMTPResponseException as exc:  # 4xx: try again later; 5xx: refused
            raise _Failure(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", retry=400 <= exc.smtp_code < 500
            ) from None
        except smtplib.SMTPRecipientsRefused:
            raise _Failure("SMTP: recipients refused", retry=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _Failure(f"SMTP: {exc}", retry=True) from None

    def _smtp(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password.get_secret_value() if self.password else "")
            smtp.send_message(msg)


class SmsConfig(ChannelConfig):
    """SMS through eSMS.vn's JSON API (brandname SMS, the usual gateway here)."""

    kind = "sms"
    default_rate = 30.0
    max_chars = 459  # three concatenated segments
    type: Literal["sms"]
    base_url: str = "https://rest.esms.vn"
    api_key: SecretStr
    secret_key: SecretStr
    brandname: str = ""
    sms_type: int = Field(2, ge=1, le=30)
    """eSMS SmsType: 2 = customer-care brandname (needs ``brandname``), 8 = fixed number."""
    unicode: bool = True
    """Send Vietnamese with its diacritics (``IsUnicode``); false: plain letters, cheaper."""
    phones: list[str] = []

    _check_url = field_validator("base_url")(_http_url)

    @field_validator("phones")
    @classmethod
    def _phones(cls, value: list[str]) -> list[str]:
        for phone in value:
            if not _normal_phone(phone):
                raise ValueError("phone numbers are digits, optionally with a leading +")
        return [_normal_phone(p) for p in value]

    def secrets(self) -> list[str]:
        return [self.api_key.get_secret_value(), self.secret_key.get_secret_value()]

    def addresses(self, recipients: list[Contact]) -> list[str]:
        return _unique([_normal_phone(c.phone or "") for c in recipients]) or list(self.phones)

    async def send(self, http: aiohttp.ClientSession, page: Page, text: str, to: str) -> None:
        body: dict[str, Any] = {
            "ApiKey": self.api_key.get_secret_value(),
            "SecretKey": self.secret_key.get_secret_value(),
            "Phone": to,
            "Content": text if self.unicode else _strip_diacritics(text),
            "SmsType": str(self.sms_type),
            "Brandname": self.brandname,
        }
        if self.unicode:
            body["IsUnicode"] = "1"
        url = f"{self.base_url}/MainService.svc/json/SendMultipleMessage_V4_post_json/"
        async with http.post(url, json=body) as resp:
            answer = await _read_json(resp)
            if resp.status >= 300:
                raise _http_failure(resp.status, resp.headers, "")
        if not isinstance(answer, dict):
            raise _Failure("eSMS answered no JSON object", retry=True)
        code = str(answer.get("CodeResult", ""))
        if code != "100":
            raise _Failure(
                f"eSMS CodeResult {code or '?'}: {answer.get('ErrorMessage', '')}".rstrip(": "),
                retry=False,
            )


def _normal_phone(phone: str) -> str:
    digits = phone.replace(" ", "").replace("-", "").replace(".", "")
    bare = digits.removeprefix("+")
    return bare if bare.isdigit() and 8 <= len(bare) <= 15 else ""


class ZaloConfig(ChannelConfig):
    """A Zalo Official Account consultation message (OA API v3) to users following the OA."""

    kind = "zalo"
    max_chars = 2000
    type: Literal["zalo"]
    base_url: str = "https://openapi.zalo.me"
    access_token: SecretStr
    user_ids: list[str] = []

    _check_url = field_validator("base_url")(_http_url)

    def secrets(self) -> list[str]:
        return [self.access_token.get_secret_value()]

    def addresses(self, recipients: list[Contact]) -> list[str]:
        return _unique([c.zalo_user_id for c in recipients]) or list(self.user_ids)

    async def send(self, http: aiohttp.ClientSession, page: Page, text: str, to: str) -> None:
        async with http.post(
            f"{self.base_url}/v3.0/oa/message/cs",
            json={"recipient": {"user_id": to}, "message": {"text": text}},
            headers={"access_token": self.access_token.get_secret_value()},
        ) as resp:
            answer = await _read_json(resp)
            if resp.status >= 300:
                raise _http_failure(resp.status, resp.headers, "")
        if not isinstance(answer, dict):
            raise _Failure("Zalo answered no JSON object", retry=True)
        if answer.get("error") != 0:
            raise _Failure(
                f"Zalo error {answer.get('error')}: {answer.get('message', '')}", retry=False
            )


class TelegramConfig(ChannelConfig):
    """A Telegram bot's message (Bot API ``sendMessage``) to chats that started the bot."""

    kind = "telegram"
    default_rate = 20.0  # Telegram: about 20 messages a minute to one group
    max_chars = 4096
    type: Literal["telegram"]
    base_url: str = "https://api.telegram.org"
    token: SecretStr
    chat_ids: list[str] = []

    _check_url = field_validator("base_url")(_http_url)

    @field_validator("chat_ids", mode="before")
    @classmethod
    def _chat_ids(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value

    def secrets(self) -> list[str]:
        return [self.token.get_secret_value()]

    def addresses(self, recipients: list[Contact]) -> list[str]:
        return _unique([c.telegram_chat_id for c in recipients]) or list(self.chat_ids)

    async def send(self, http: aiohttp.ClientSession, page: Page, text: str, to: str) -> None:
        url = f"{self.base_url}/bot{self.token.get_secret_value()}/sendMessage"
        async with http.post(url, json={"chat_id": to, "text": text}) as resp:
            answer = await _read_json(resp)
            status = resp.status
            header_after = _retry_after(resp.headers.get("Retry-After"))
        if isinstance(answer, dict) and answer.get("ok") is True:
            return
        described = answer if isinstance(answer, dict) else {}
        code = described.get("error_code", status)
        detail = f"Telegram {code}: {described.get('description', f'HTTP {status}')}"
        if status == 429 or code == 429:
            params = described.get("parameters") or {}
            after = params.get("retry_after") if isinstance(params, dict) else None
            raise _Failure(
                detail,
                retry=True,
                after=float(after) if isinstance(after, int | float) else header_after,
            )
        raise _Failure(detail, retry=status >= 500)


KINDS: dict[str, type[ChannelConfig]] = {
    c.kind: c for c in (WebhookConfig, EmailConfig, SmsConfig, ZaloConfig, TelegramConfig)
}


def parse_channels(text: str) -> list[ChannelConfig]:
    """``IOC_PAGER_CHANNELS``: a JSON list of channels. Errors are one line naming the item
    and the field (``IOC_PAGER_CHANNELS[1].token: Field required``), never a secret's value."""
    try:
        items = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise IocError(f"{ENV} is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise IocError(f"{ENV} must be a JSON list of channels")
    channels: list[ChannelConfig] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise IocError(f"{ENV}[{i}]: a channel is a JSON object")
        model = KINDS.get(str(item.get("type")))
        if model is None:
            raise IocError(f"{ENV}[{i}].type: must be one of {', '.join(KINDS)}")
        try:
            channels.append(model.model_validate(item))
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False)
            first = errors[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise IocError(f"{ENV}[{i}].{where}: {message}{more}") from None
    names = [c.label for c in channels]
    for name in names:
        if names.count(name) > 1:
            raise IocError(f"{ENV}: two channels are named {name!r}; give each a 'name'")
    return channels


# --- sending ---


class RateLimited(Exception):
    pass


class TokenBucket:
    """``rate_per_min`` messages a minute, ``burst`` at once. A message over the limit waits
    for its token (reserved, so waiters keep their order) unless that is over ``max_wait``."""

    def __init__(self, rate_per_min: float, burst: int, max_wait: float) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self.max_wait = max_wait
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it. Raises :class:`RateLimited`."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        wait = max(0.0, (1.0 - self.tokens) / self.rate)
        if wait > self.max_wait:
            raise RateLimited(f"rate limit: {self.rate * 60:g}/min, queue full ({wait:.0f} s)")
        self.tokens -= 1.0
        return wait

    async def take(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


def mask(text: str, secrets: list[str]) -> str:
    """``text`` with every secret (and its URL-encoded form) replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
            text = text.replace(quote(secret), "***")
    return text


class Dispatcher:
    """Sends pages through the configured channels, each with its retries and rate limit;
    the channels run side by side, one channel's recipients one after another."""

    def __init__(self, channels: list[ChannelConfig]) -> None:
        self.channels = list(channels)
        self.buckets = [TokenBucket(c.rate, c.burst, c.max_queue_s) for c in self.channels]
        self._http: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Dispatcher:
        return cls(parse_channels(settings.pager_channels))

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def deliver(self, page: Page, recipients: list[Contact]) -> list[Delivery]:
        results = await asyncio.gather(
            *(self._channel(i, page, recipients) for i in range(len(self.channels)))
        )
        return [d for per_channel in results for d in per_channel]

    async def _channel(self, i: int, page: Page, recipients: list[Contact]) -> list[Delivery]:
        channel = self.channels[i]
        addresses = channel.addresses(recipients)
        if not addresses:
            return [
                Delivery(
                    channel=channel.label, recipient="-", result="skipped", detail="no recipient"
                )
            ]
        text = render(page, channel.lang or page.lang, channel.max_chars)
        return [await self._one(i, page, text, to) for to in addresses]

    async def _one(self, i: int, page: Page, text: str, to: str) -> Delivery:
        channel = self.channels[i]
        secrets = channel.secrets()
        shown = mask(channel.shown(to), secrets)
        try:
            await self.buckets[i].take()
        except RateLimited as exc:
            log.warning(
                "page %s not sent via %s to %s: %s", page.page_id, channel.label, shown, exc
            )
            return Delivery(channel=channel.label, recipient=shown, result="error", detail=str(exc))
        detail = ""
        for attempt in range(1, channel.attempts + 1):
            try:
                if channel.self_timed:
                    await channel.send(self._session(), page, text, to)
                else:
                    async with asyncio.timeout(channel.timeout_s):
                        await channel.send(self._session(), page, text, to)
                log.info("page %s sent via %s to %s", page.page_id, channel.label, shown)
                return Delivery(channel=channel.label, recipient=shown, result="ok")
            except _Failure as exc:
                failure = exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failure = _Failure(f"{type(exc).__name__}: {exc}".rstrip(": "), retry=True)
            except Exception as exc:  # a channel's bug must not stop the other channels
                failure = _Failure(f"{type(exc).__name__}: {exc}", retry=False)
            detail = mask(str(failure), secrets)
            if not failure.retry or attempt == channel.attempts:
                break
            wait = min(channel.max_backoff_s, channel.backoff_s * 2 ** (attempt - 1))
            if failure.after is not None:
                if failure.after > channel.max_retry_after_s:
                    detail += f" (asked to wait {failure.after:.0f} s, over the cap)"
                    break
                wait = failure.after
            log.info(
                "page %s via %s to %s: attempt %d failed (%s); retry in %.1f s",
                page.page_id,
                channel.label,
                shown,
                attempt,
                detail,
                wait,
            )
            await asyncio.sleep(wait)
        log.warning("page %s not sent via %s to %s: %s", page.page_id, channel.label, shown, detail)
        return Delivery(channel=channel.label, recipient=shown, result="error", detail=detail)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
