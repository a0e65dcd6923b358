"""Settings -> Kafka client configuration: one function per client kind, nothing else does it.

:class:`~ioc.config.Settings` validates the Kafka fields (bootstrap servers, security
protocol, SASL mechanism, user and password, CA file); this module is the only place that
translates them into what a client library takes:

- librdkafka (confluent-kafka): :func:`librdkafka_consumer`, :func:`librdkafka_producer`,
  :func:`librdkafka_admin`, all built on :func:`librdkafka_common`;
- aiokafka (consumer, producer and admin client take the same connection arguments):
  :func:`aiokafka_common`, and :func:`aiokafka_producer` for a durable producer;
- Faust: :func:`faust_broker`, and :func:`faust_idempotent_producer`.

Every producer is idempotent with ``acks=all`` and never gives up on a message by itself
(docs/reliability.md, "Replicated Kafka"): librdkafka's ``message.timeout.ms`` is 0
(infinite), so while the brokers are away its queue fills and ``produce`` raises
``BufferError``, which the callers wait out (back-pressure); an idempotent aiokafka producer
never expires a batch and retries it until it is written, exactly once.

TLS (``SSL``, ``SASL_SSL``) contexts for the Python clients come from :func:`ssl_context`
only. The configurations are :class:`ClientConfig` dicts whose ``repr``/``str`` mask the
password, so printing or logging one never shows it.

Every librdkafka client also gets a :class:`LibrdkafkaLog` as its ``logger``: librdkafka's
own lines (``%3|...|FAIL|...`` and the like, printed to stderr otherwise) go through Python
logging (logger ``ioc.librdkafka``), and a line repeated while a broker is away is logged
once, then at most once per interval with the number of repeats.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ioc.config import Settings

LIBRDKAFKA_LOGGER = "ioc.librdkafka"
"""The logger librdkafka's own log lines go to (see :class:`LibrdkafkaLog`)."""

_MASK = "**********"
_SECRET_KEYS = frozenset({"sasl.password", "sasl_plain_password"})
_SSL_PROTOCOLS = ("SSL", "SASL_SSL")


class ClientConfig(dict[str, Any]):
    """A Kafka client's configuration: a plain dict whose repr and str mask secrets."""

    def __repr__(self) -> str:
        shown = {key: _MASK if key in _SECRET_KEYS else value for key, value in self.items()}
        return f"{type(self).__name__}({shown!r})"

    __str__ = __repr__


def _sasl(settings: Settings) -> tuple[str, str, str] | None:
    """(mechanism, username, password) for the SASL protocols; None for the others."""
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return None
    mechanism, user = settings.kafka_sasl_mechanism, settings.kafka_sasl_username
    # Settings refuses a SASL protocol without a mechanism or a user.
    assert mechanism is not None and user is not None
    return mechanism, user, sasl_password(settings)


def sasl_password(settings: Settings) -> str:
    """The SASL password: the settings', or the local stack's for its own users when the
    settings were loaded before ``ioc stack up`` generated it (PLAINTEXT off)."""
    if settings.kafka_sasl_password is not None:
        return settings.kafka_sasl_password.get_secret_value()
    user = settings.kafka_sasl_username or ""
    password = settings.stack_kafka_users().get(user)
    if password is None:
        from ioc.errors import ConfigError

        raise ConfigError(
            f"no password for Kafka user {user!r}: set IOC_KAFKA_SASL_PASSWORD, or run "
            "`ioc stack up` to generate the local stack's"
        )
    return password


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the ``SSL`` and ``SASL_SSL`` protocols (None for the others): the
    system's trust store, or only the CA file of ``IOC_KAFKA_SSL_CAFILE`` when it is set."""
    if settings.kafka_security_protocol not in _SSL_PROTOCOLS:
        return None
    cafile = settings.kafka_ssl_cafile
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


# --- librdkafka (confluent-kafka) ------------------------------------------------------------
def librdkafka_common(settings: Settings) -> ClientConfig:
    """Connection and security properties every librdkafka client needs (no ``logger``: the
    client functions below add one each)."""
    conf = ClientConfig(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "security.protocol": settings.kafka_security_protocol.lower(),
        }
    )
    sasl = _sasl(settings)
    if sasl is not None:
        conf["sasl.mechanisms"], conf["sasl.username"], conf["sasl.password"] = sasl
    if settings.kafka_security_protocol in _SSL_PROTOCOLS and settings.kafka_ssl_cafile:
        conf["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    return conf


def _librdkafka_client(
    settings: Settings, client_id: str, overrides: dict[str, Any]
) -> ClientConfig:
    conf = librdkafka_common(settings)
    conf["client.id"] = client_id
    conf["logger"] = LibrdkafkaLog()
    conf.update(overrides)
    return conf


def librdkafka_consumer(
    settings: Settings, group: str, client_id: str, **overrides: Any
) -> ClientConfig:
    """A ``confluent_kafka.Consumer``'s configuration; ``overrides`` are librdkafka properties
    (dotted names, so pass them as ``**{"enable.auto.commit": False}``).

    Its log lines are served by ``poll``/``consume``, on the thread that calls them."""
    return _librdkafka_client(settings, client_id, {"group.id": group, **overrides})


LIBRDKAFKA_PRODUCER_DURABILITY: dict[str, Any] = {
    "enable.idempotence": True,  # retries neither duplicate nor reorder
    "acks": "all",  # written to min.insync.replicas replicas before the ack
    # 0 = infinite: a message is never failed for taking long (default 300 s, after which
    # librdkafka drops it with a delivery error); an outage turns into back-pressure.
    "message.timeout.ms": 0,
}


def librdkafka_producer(
    settings: Settings, client_id: str = "ioc", **overrides: Any
) -> ClientConfig:
    """A ``confluent_kafka.Producer``'s configuration: idempotent, ``acks=all`` and no
    message timeout (:data:`LIBRDKAFKA_PRODUCER_DURABILITY`) unless ``overrides`` (as for the
    consumer) say otherwise. Its log lines are served by ``poll``/``flush``."""
    return _librdkafka_client(settings, client_id, {**LIBRDKAFKA_PRODUCER_DURABILITY, **overrides})


def librdkafka_admin(settings: Settings, client_id: str = "ioc-admin") -> ClientConfig:
    """A ``confluent_kafka.admin.AdminClient``'s configuration.

    Its log lines are only served by ``AdminClient.poll``: a short-lived admin client that
    reports failures by raising, and is never polled, neither logs nor prints them."""
    return _librdkafka_client(settings, client_id, {})


# --- aiokafka and Faust ------------------------------------------------------------------------
def aiokafka_common(settings: Settings) -> ClientConfig:
    """Connection and security keyword arguments of every aiokafka client (consumer, producer
    and admin client take the same ones): ``AIOKafkaConsumer(**aiokafka_common(s), ...)``."""
    kwargs = ClientConfig(
        {
            "bootstrap_servers": settings.bootstrap_servers,
            "security_protocol": settings.kafka_security_protocol,
        }
    )
    sasl = _sasl(settings)
    if sasl is not None:
        mechanism, user, password = sasl
        kwargs.update(
            sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password
        )
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def aiokafka_producer(settings: Settings, **overrides: Any) -> ClientConfig:
    """``AIOKafkaProducer`` keyword arguments: idempotent with ``acks=all``. An idempotent
    aiokafka producer never expires a batch (``request_timeout_ms`` bounds one request, not
    the message): it retries until the write is acknowledged, without duplicates."""
    return ClientConfig(
        {**aiokafka_common(settings), "acks": "all", "enable_idempotence": True, **overrides}
    )


def faust_idempotent_producer() -> None:
    """Make Faust's Kafka producer idempotent with ``acks=all`` (Faust only does so inside
    transactions): its batches then never expire and a retry writes no duplicate. Faust
    picks the producer class from its transport, so this sets it there, once per process."""
    from faust.transport.drivers import aiokafka as driver

    if getattr(driver.Transport.Producer, "idempotent", False):
        return

    class IdempotentProducer(driver.Producer):
        idempotent = True

        def _settings_extra(self) -> Mapping[str, Any]:
            return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    driver.Transport.Producer = IdempotentProducer


def faust_broker(settings: Settings) -> dict[str, Any]:
    """``faust.App`` keyword arguments: ``broker`` (one URL per bootstrap server) and, for
    the secured protocols, ``broker_credentials`` (whose repr shows no password)."""
    kwargs: dict[str, Any] = {
        "broker": [f"kafka://{hp}" for hp in settings.bootstrap_servers.split(",")],
    }
    sasl = _sasl(settings)
    context = ssl_context(settings)
    if sasl is not None:
        import faust

        mechanism, user, password = sasl
        kwargs["broker_credentials"] = faust.SASLCredentials(
            username=user, password=password, mechanism=mechanism, ssl_context=context
        )
    elif context is not None:  # SSL: Faust takes the bare context as its credentials
        kwargs["broker_credentials"] = context
    return kwargs


# --- librdkafka's own log lines ----------------------------------------------------------------
_SYSLOG_TO_LOGGING = (
    logging.ERROR,  # 0 emerg \  librdkafka uses these for a client's fatal errors, which
    logging.ERROR,  # 1 alert  | the application also sees as an exception or error event:
    logging.ERROR,  # 2 crit  /  an error of one client, not of the process (not CRITICAL)
    logging.ERROR,  # 3 err      e.g. FAIL: a broker connection failed
    logging.WARNING,  # 4 warning
    logging.INFO,  # 5 notice
    logging.INFO,  # 6 info     e.g. BGQUEUE at close
    logging.DEBUG,  # 7 debug    only with the `debug` property
)


def logging_level(level: int) -> int:
    """The logging level of a librdkafka line of syslog ``level`` (0-7).

    confluent-kafka hands its ``logger`` a Python level instead (its own table: 0-2
    CRITICAL, 3 ERROR, 4 WARNING, 5-6 INFO, 7 DEBUG); those (10 and up) are kept, except
    CRITICAL, which becomes ERROR as above."""
    if 0 <= level < len(_SYSLOG_TO_LOGGING):
        return _SYSLOG_TO_LOGGING[level]
    return min(level, logging.ERROR)


# Parts of a librdkafka line that change between otherwise identical repeats.
_VARYING = re.compile(r"\d+ms\b|, \d+ identical error\(s\) suppressed")


@dataclass
class _Seen:
    """The last logged line of a (client, facility, text) and the repeats since."""

    logged_at: float
    level: int
    text: str
    repeats: int = 0


@dataclass
class _Line:
    facility: str
    client: str
    level: int
    text: str
    repeats: int = 0
    """Identical lines not logged, over the last ``seconds``."""
    seconds: float = 0.0


class LibrdkafkaLog:
    """confluent-kafka's ``logger``: librdkafka's lines into a :class:`logging.Logger`.

    confluent-kafka calls ``log(level, "%s [%s] %s", facility, client_name, text)``; the
    line is logged with the level of :func:`logging_level`, and with the facility and client
    in the record (``rdkafka_facility``, ``rdkafka_client``). A line with the client,
    facility and text of one logged less than ``every_s`` ago (a broker that is away fails
    a connection again and again) is only counted: the next one after ``every_s`` is logged
    with the count. A count left when the repeats stop is logged with the client's next line
    after ``every_s``, or by :meth:`flush`.

    Thread-safe: a consumer serves its lines on the thread that calls ``consume``.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger or logging.getLogger(LIBRDKAFKA_LOGGER)
        self.every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], _Seen] = {}
        self._swept = clock()

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        """The call confluent-kafka makes for each line."""
        if len(args) != 3 or kwargs:  # not confluent-kafka's call: pass it on as it is
            self.logger.log(logging_level(level), msg, *args, **kwargs)
            return
        facility, client, text = (str(a) for a in args)
        level = logging_level(level)
        now = self._clock()
        out: list[_Line] = []
        with self._lock:
            key = (client, facility, _VARYING.sub("#", text))
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = _Seen(now, level, text)
                out.append(_Line(facility, client, level, text))
            elif now - seen.logged_at >= self.every_s:
                out.append(_Line(facility, client, level, text, seen.repeats, now - seen.logged_at))
                seen.logged_at, seen.level, seen.text, seen.repeats = now, level, text, 0
            else:
                seen.repeats += 1
                seen.level, seen.text = max(seen.level, level), text
            if now - self._swept >= self.every_s:
                out += self._sweep(now, force=False)
        for line in out:
            self._emit(line)

    def flush(self) -> None:
        """Log the counts of repeats not reported yet (e.g. when the client is closed)."""
        with self._lock:
            out = self._sweep(self._clock(), force=True)
        for line in out:
            self._emit(line)

    def _sweep(self, now: float, *, force: bool) -> list[_Line]:
        """The counts whose interval is over (every count with ``force``); forgets the lines
        that stayed quiet for an interval."""
        self._swept = now
        out = []
        for key, seen in list(self._seen.items()):
            if not force and now - seen.logged_at < self.every_s:
                continue
            if seen.repeats:
                client, facility, _ = key
                out.append(
                    _Line(
                        facility, client, seen.level, seen.text, seen.repeats, now - seen.logged_at
                    )
                )
                seen.logged_at, seen.repeats = now, 0
            else:
                del self._seen[key]
        return out

    def _emit(self, line: _Line) -> None:
        extra = {"rdkafka_facility": line.facility, "rdkafka_client": line.client}
        if line.repeats:
            self.logger.log(
                line.level,
                "%s [%s] %s (%d more like it in the last %.0f s)",
                line.facility,
                line.client,
                line.text,
                line.repeats,
                line.seconds,
                extra=extra,
            )
        else:
            self.logger.log(
                line.level, "%s [%s] %s", line.facility, line.client, line.text, extra=extra
            )
