"""ioc.kafka_clients: Settings -> each Kafka client's configuration, for every security
protocol, and librdkafka's own log lines through Python logging (no broker needed)."""

from __future__ import annotations

import logging
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any, Literal

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from ioc.config import Settings
from ioc.kafka_clients import (
    LIBRDKAFKA_LOGGER,
    LIBRDKAFKA_PRODUCER_DURABILITY,
    ClientConfig,
    LibrdkafkaLog,
    aiokafka_common,
    faust_broker,
    librdkafka_admin,
    librdkafka_common,
    librdkafka_consumer,
    librdkafka_producer,
    logging_level,
    ssl_context,
)

BOOTSTRAP = "127.0.0.1:1,127.0.0.1:2"  # nothing listens: clients are made, never connected
PASSWORD = "s3cret-pw-7f2a"
SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
PROTOCOLS: list[SecurityProtocol] = ["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]


@pytest.fixture(scope="module")
def cafile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA certificate (``openssl req``; the ``cryptography`` package is not a
    dependency of the project)."""
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(folder / "ca.key"),
            "-out",
            str(folder / "ca.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=ioc-test-ca",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return folder / "ca.pem"


def make(
    protocol: SecurityProtocol, cafile: Path | None = None, tmp: Path | None = None
) -> Settings:
    """Every Kafka field explicit (nothing from the environment), credentials set even for
    the protocols that must not use them."""
    return Settings(
        stack_dir=tmp or Path("/nonexistent/ioc-stack"),
        kafka_bootstrap_servers=BOOTSTRAP,
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ioc",
        kafka_sasl_password=SecretStr(PASSWORD),
        kafka_ssl_cafile=cafile,
        kafka_topic_prefix="",
    )


@pytest.fixture(params=PROTOCOLS)
def settings(request: pytest.FixtureRequest, cafile: Path) -> Settings:
    return make(request.param, cafile)


def sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def all_configs(settings: Settings) -> dict[str, Any]:
    return {
        "librdkafka_common": librdkafka_common(settings),
        "librdkafka_consumer": librdkafka_consumer(settings, "group-1", "client-1"),
        "librdkafka_producer": librdkafka_producer(settings),
        "librdkafka_admin": librdkafka_admin(settings),
        "aiokafka_common": aiokafka_common(settings),
        "faust_broker": faust_broker(settings),
    }


# --- librdkafka --------------------------------------------------------------------------------
def test_librdkafka_common_per_protocol(settings: Settings, cafile: Path) -> None:
    expected: dict[str, Any] = {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": settings.kafka_security_protocol.lower(),
    }
    if sasl(settings):
        expected |= {
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "ioc",
            "sasl.password": PASSWORD,
        }
    if tls(settings):
        expected["ssl.ca.location"] = str(cafile)
    assert librdkafka_common(settings) == expected


def test_librdkafka_clients_add_their_identity_and_a_logger(settings: Settings) -> None:
    common = librdkafka_common(settings)

    consumer = librdkafka_consumer(settings, "group-1", "client-1", **{"enable.auto.commit": False})
    assert isinstance(consumer.pop("logger"), LibrdkafkaLog)
    assert consumer == common | {
        "group.id": "group-1",
        "client.id": "client-1",
        "enable.auto.commit": False,
    }

    producer = librdkafka_producer(settings, "sim", **{"linger.ms": 20, "acks": "all"})
    assert isinstance(producer.pop("logger"), LibrdkafkaLog)
    assert producer == common | LIBRDKAFKA_PRODUCER_DURABILITY | {
        "client.id": "sim",
        "linger.ms": 20,
    }
    assert librdkafka_producer(settings)["client.id"] == "ioc"

    admin = librdkafka_admin(settings)
    assert isinstance(admin.pop("logger"), LibrdkafkaLog)
    assert admin == common | {"client.id": "ioc-admin"}


def test_each_librdkafka_client_gets_its_own_log() -> None:
    settings = make("PLAINTEXT")
    assert librdkafka_producer(settings)["logger"] is not librdkafka_producer(settings)["logger"]


def test_overrides_win_over_the_defaults() -> None:
    conf = librdkafka_consumer(make("PLAINTEXT"), "g", "c", **{"client.id": "other"})
    assert conf["client.id"] == "other"


def test_librdkafka_accepts_the_configurations(settings: Settings) -> None:
    """librdkafka itself validates every property (and loads the CA file) at creation."""
    consumer = Consumer(librdkafka_consumer(settings, "group-1", "client-1"))
    consumer.close()
    Producer(librdkafka_producer(settings)).flush(0)
    AdminClient(librdkafka_admin(settings)).poll(0)


# --- aiokafka and Faust ------------------------------------------------------------------------
def test_aiokafka_common_per_protocol(settings: Settings) -> None:
    kwargs = dict(aiokafka_common(settings))
    context = kwargs.pop("ssl_context", None)
    expected: dict[str, Any] = {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": settings.kafka_security_protocol,
    }
    if sasl(settings):
        expected |= {
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "ioc",
            "sasl_plain_password": PASSWORD,
        }
    assert kwargs == expected
    assert (context is not None) == tls(settings)
    if context is not None:
        assert_trusts_only_the_ca(context)


async def test_aiokafka_clients_accept_the_arguments(settings: Settings) -> None:
    """aiokafka checks them in its constructors (SASL_SSL without a context is refused)."""
    producer = AIOKafkaProducer(**aiokafka_common(settings), acks="all")
    await producer.stop()
    consumer = AIOKafkaConsumer(**aiokafka_common(settings), group_id=None)
    await consumer.stop()
    admin = AIOKafkaAdminClient(**aiokafka_common(settings))
    await admin.close()


def test_faust_broker_per_protocol(settings: Settings) -> None:
    kwargs = faust_broker(settings)
    assert kwargs["broker"] == ["kafka://127.0.0.1:1", "kafka://127.0.0.1:2"]
    credentials = kwargs.get("broker_credentials")
    if settings.kafka_security_protocol == "PLAINTEXT":
        assert credentials is None
    elif sasl(settings):
        assert isinstance(credentials, faust.SASLCredentials)
        assert (credentials.username, credentials.password) == ("ioc", PASSWORD)
        assert credentials.mechanism.value == "SCRAM-SHA-512"
        assert credentials.protocol.value == settings.kafka_security_protocol
        assert (credentials.ssl_context is not None) == tls(settings)
        if credentials.ssl_context is not None:
            assert_trusts_only_the_ca(credentials.ssl_context)
    else:  # SSL: the bare context
        assert isinstance(credentials, ssl.SSLContext)
        assert_trusts_only_the_ca(credentials)
    app = faust.App("ioc-test-kafka-clients", **kwargs, autodiscover=False)
    assert [str(url) for url in app.conf.broker] == kwargs["broker"]


# --- TLS -----------------------------------------------------------------------------------------
def assert_trusts_only_the_ca(context: ssl.SSLContext) -> None:
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    subjects = [subject(cert) for cert in context.get_ca_certs()]
    assert subjects == [{"commonName": "ioc-test-ca"}]


def subject(cert: dict[str, Any]) -> dict[str, str]:
    """A certificate's subject as ``get_ca_certs`` gives it: a tuple of relative distinguished
    names, each a tuple of (attribute, value) pairs."""
    rdns: tuple[tuple[tuple[str, str], ...], ...] = cert["subject"]
    return dict(rdn[0] for rdn in rdns)


def test_ssl_context_only_for_the_tls_protocols(settings: Settings) -> None:
    context = ssl_context(settings)
    assert (context is not None) == tls(settings)


def test_ssl_context_without_a_ca_file_trusts_the_system_store() -> None:
    context = ssl_context(make("SASL_SSL"))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert "ssl.ca.location" not in librdkafka_common(make("SASL_SSL"))


# --- secrets -------------------------------------------------------------------------------------
def test_the_password_is_present_only_where_needed(settings: Settings) -> None:
    for name, conf in all_configs(settings).items():
        if name == "faust_broker":
            credentials = conf.get("broker_credentials")
            present = getattr(credentials, "password", None) == PASSWORD
        else:
            present = PASSWORD in conf.values()
        assert present == sasl(settings), name


def test_the_password_never_shows_in_repr_or_str(settings: Settings) -> None:
    for name, conf in all_configs(settings).items():
        objects = [repr(value) for value in conf.values() if value != PASSWORD]
        for text in (repr(conf), str(conf), f"{conf}", *objects):
            assert PASSWORD not in text, name
    if sasl(settings):
        assert "**********" in repr(librdkafka_common(settings))
        assert "**********" in str(aiokafka_common(settings))


def test_client_config_is_a_plain_dict_to_the_clients() -> None:
    conf = librdkafka_common(make("SASL_PLAINTEXT"))
    assert isinstance(conf, ClientConfig)
    assert dict(conf)["sasl.password"] == PASSWORD
    assert {**conf}["sasl.password"] == PASSWORD


# --- librdkafka's log lines -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("syslog", "level"),
    [
        (0, logging.ERROR),
        (1, logging.ERROR),
        (2, logging.ERROR),
        (3, logging.ERROR),
        (4, logging.WARNING),
        (5, logging.INFO),
        (6, logging.INFO),
        (7, logging.DEBUG),
    ],
)
def test_syslog_levels_map_to_logging_levels(syslog: int, level: int) -> None:
    assert logging_level(syslog) == level


@pytest.mark.parametrize(
    ("given", "level"),
    [
        (logging.CRITICAL, logging.ERROR),  # confluent-kafka's 0-2
        (logging.ERROR, logging.ERROR),
        (logging.WARNING, logging.WARNING),
        (logging.INFO, logging.INFO),
        (logging.DEBUG, logging.DEBUG),
    ],
)
def test_confluent_kafka_python_levels_are_kept_but_critical(given: int, level: int) -> None:
    assert logging_level(given) == level


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


FAIL = (
    "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 "
    "failed: Connection refused (after {ms}ms in state CONNECT)"
)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LIBRDKAFKA_LOGGER)
    return caplog


def rdkafka_log(clock: Clock, every_s: float = 30.0) -> LibrdkafkaLog:
    return LibrdkafkaLog(every_s=every_s, clock=clock)


def extra(record: logging.LogRecord, name: str) -> Any:
    """A field the logging call passed in ``extra=`` (an attribute the record's type lacks)."""
    return record.__dict__[name]


def line(log: LibrdkafkaLog, level: int, facility: str, text: str, client: str = "c#p-1") -> None:
    """The call confluent-kafka makes."""
    log.log(level, "%s [%s] %s", facility, client, text)


def test_a_line_is_logged_with_its_level_facility_and_client(
    captured: pytest.LogCaptureFixture,
) -> None:
    log = rdkafka_log(Clock())
    line(log, logging.CRITICAL, "FATAL", "fatal idempotence error")
    line(log, logging.WARNING, "CONFWARN", "property ignored")
    line(log, logging.INFO, "BGQUEUE", "Purging 2 unserved events")
    assert [(r.name, r.levelno, r.getMessage()) for r in captured.records] == [
        (LIBRDKAFKA_LOGGER, logging.ERROR, "FATAL [c#p-1] fatal idempotence error"),
        (LIBRDKAFKA_LOGGER, logging.WARNING, "CONFWARN [c#p-1] property ignored"),
        (LIBRDKAFKA_LOGGER, logging.INFO, "BGQUEUE [c#p-1] Purging 2 unserved events"),
    ]
    record = captured.records[0]
    assert (extra(record, "rdkafka_facility"), extra(record, "rdkafka_client")) == (
        "FATAL",
        "c#p-1",
    )


def test_a_broker_away_for_two_minutes_logs_five_lines(
    captured: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = rdkafka_log(clock)
    for i in range(2400):  # a FAIL line every 50 ms for 120 s
        clock.now = 1000 + i / 20
        line(log, logging.ERROR, "FAIL", FAIL.format(ms=i % 3))
    log.flush()
    counts = [" (599 more like it in the last 30 s)"] * 4
    assert [r.getMessage() for r in captured.records] == [
        f"FAIL [c#p-1] {FAIL.format(ms=i % 3)}{count}"
        for i, count in zip([0, 600, 1200, 1800, 2399], ["", *counts], strict=True)
    ]


def test_rate_limit_counts(captured: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = rdkafka_log(clock)
    line(log, logging.ERROR, "FAIL", FAIL.format(ms=0))  # logged
    for _ in range(99):  # within the interval: counted
        clock.now += 0.1
        line(log, logging.ERROR, "FAIL", FAIL.format(ms=3))
    assert len(captured.records) == 1
    clock.now = 1030.0
    line(log, logging.ERROR, "FAIL", FAIL.format(ms=1))  # interval over: logged with count
    assert [r.getMessage() for r in captured.records] == [
        f"FAIL [c#p-1] {FAIL.format(ms=0)}",
        f"FAIL [c#p-1] {FAIL.format(ms=1)} (99 more like it in the last 30 s)",
    ]
    assert all(r.levelno == logging.ERROR for r in captured.records)


def test_other_facilities_clients_and_texts_are_not_held_back(
    captured: pytest.LogCaptureFixture,
) -> None:
    log = rdkafka_log(Clock())
    line(log, logging.ERROR, "FAIL", "broker 1 down")
    line(log, logging.ERROR, "FAIL", "broker 2 down")
    line(log, logging.ERROR, "ERROR", "broker 1 down")
    line(log, logging.ERROR, "FAIL", "broker 1 down", client="c#consumer-2")
    line(log, logging.ERROR, "FAIL", "broker 1 down")  # the only repeat
    assert len(captured.records) == 4


def test_a_count_left_when_the_repeats_stop_is_logged_later(
    captured: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = rdkafka_log(clock)
    line(log, logging.ERROR, "FAIL", "broker down")
    clock.now += 1
    line(log, logging.ERROR, "FAIL", "broker down")
    line(log, logging.ERROR, "FAIL", "broker down")
    clock.now += 40  # the broker is back: no more FAIL lines; the next line of the client
    line(log, logging.INFO, "CLOSE", "closing")
    assert [r.getMessage() for r in captured.records] == [
        "FAIL [c#p-1] broker down",
        "CLOSE [c#p-1] closing",
        "FAIL [c#p-1] broker down (2 more like it in the last 41 s)",
    ]


def test_flush_logs_the_counts_not_reported_yet(captured: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = rdkafka_log(clock)
    for _ in range(5):
        line(log, logging.WARNING, "REQTMOUT", "request timed out")
        clock.now += 1
    log.flush()
    log.flush()  # nothing left
    assert [(r.levelno, r.getMessage()) for r in captured.records] == [
        (logging.WARNING, "REQTMOUT [c#p-1] request timed out"),
        (logging.WARNING, "REQTMOUT [c#p-1] request timed out (4 more like it in the last 5 s)"),
    ]


def test_lines_gone_quiet_are_forgotten(captured: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = rdkafka_log(clock)
    for i in range(100):
        line(log, logging.ERROR, "FAIL", f"broker {i} down")
    clock.now += 31
    line(log, logging.INFO, "X", "y")  # sweeps
    assert len(log._seen) == 1
    clock.now += 1
    line(log, logging.ERROR, "FAIL", "broker 1 down")  # again: logged at once
    assert captured.records[-1].getMessage() == "FAIL [c#p-1] broker 1 down"


def test_other_calls_pass_through(captured: pytest.LogCaptureFixture) -> None:
    log = rdkafka_log(Clock())
    log.log(logging.WARNING, "plain %s", "message")
    assert [(r.levelno, r.getMessage()) for r in captured.records] == [
        (logging.WARNING, "plain message")
    ]


def test_librdkafka_lines_go_through_logging_not_stderr(
    captured: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A real producer pointed at a closed port: its FAIL lines arrive as log records (once
    per interval), and nothing is printed to stderr, password or otherwise."""
    settings = make("SASL_PLAINTEXT")
    conf = librdkafka_producer(settings, "ioc", **{"reconnect.backoff.ms": 10})
    producer = Producer(conf)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not captured.records:
        producer.poll(0.1)
    producer.poll(0.5)  # more failures meanwhile: counted, not logged
    conf["logger"].flush()
    failures = [r for r in captured.records if extra(r, "rdkafka_facility") == "FAIL"]
    assert failures, "no librdkafka line reached logging"
    assert failures[0].levelno == logging.ERROR
    assert "Connection refused" in failures[0].getMessage()
    assert len(failures) <= 4  # one per broker, then their counts
    err = capfd.readouterr().err
    assert "|FAIL|" not in err
    assert PASSWORD not in err + captured.text
