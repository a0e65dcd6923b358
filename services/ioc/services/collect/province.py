"""``ioc collect --province CODE``: a collector at one province's edge, writing only that
province's topics as that province's own Kafka user (docs/collectors.md, "One province's
collector"; docs/scaling.md, "Kafka topic layout for many provinces").

With per-province topics on (``IOC_KAFKA_PROVINCE_TOPICS``) a province's user,
``ioc-p-<code>``, may write ``ioc.p.<code>.*`` and nothing else: no shared feed topic, no
fault log, no other province's topics. The ACL matches topics, not keys, so what keeps a
province's collector to its own devices is checked here, before it polls anything: every
device it would poll must be under the province (the workers would dead-letter the others
as ``wrong_province`` anyway, but only after they were polled and sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ioc.config import ENV_PREFIX, Settings
from ioc.contract.access import ADMIN_USER, province_user
from ioc.contract.feeds import Feed
from ioc.contract.topology import Topology
from ioc.errors import ConfigError
from ioc.services.collect.targets import TargetError

SOME: int = 5
"""Device ids named in a refusal, at most."""


def polled_devices(topology: Topology, protocols: Sequence[str], traps: bool) -> list[str]:
    """Every device with an inventory address that a collector with ``protocols`` (and a trap
    port when ``traps``) would poll in some shard: the network nodes, the HTTP-polled stations
    and bridges, the cameras. Shards are left out on purpose: every shard of a province's
    collectors must accept or refuse the same inventory."""
    from ioc.services.collect import httppoll

    ids: list[str] = []
    if traps or {"icmp", "snmp"} & set(protocols):
        ids += [d.id for d in topology.devices_of(Feed.NETNODE) if d.attributes.get("address")]
    if "http" in protocols:
        ids += [d for d, _feed, attrs in httppoll.polled(topology) if attrs.get("address")]
    if "rtsp" in protocols:
        ids += [d.id for d in topology.devices_of(Feed.CAMERA) if d.attributes.get("address")]
    return sorted(set(ids))


def check(settings: Settings, topology: Topology, province: str, devices: Iterable[str]) -> None:
    """Refuse, in one line, a province's collector that cannot work: per-province topics off
    (its topics would not exist), a code that is not one of the scenario's provinces, or a
    device to poll that is under another province (its user could not write that province's
    topic, and the workers would refuse the device on this one)."""
    if not settings.kafka_province_topics:
        raise ConfigError(
            f"--province {province} needs per-province topics: set "
            f"{ENV_PREFIX}KAFKA_PROVINCE_TOPICS=true (docs/scaling.md)"
        )
    provinces = topology.top_units()
    if province not in provinces:
        raise TargetError(
            f"--province {province}: not a province of {topology.name} (its provinces: "
            f"{', '.join(provinces[:10])}{' ...' if len(provinces) > 10 else ''})"
        )
    foreign = [d for d in devices if topology.province_of(d) != province]
    if foreign:
        named = ", ".join(f"{d} ({topology.province_of(d)})" for d in foreign[:SOME])
        raise TargetError(
            f"--province {province}: {len(foreign)} devices to poll are under another province: "
            f"{named}{' ...' if len(foreign) > SOME else ''}; give this collector its "
            "province's inventory (docs/collectors.md)"
        )


def kafka_settings(settings: Settings, province: str) -> Settings:
    """``settings`` logged in as the province's user, ``ioc-p-<code>``: as given when the
    deployment names that user (``IOC_KAFKA_SASL_USERNAME``, with its password), else with
    the local stack's password for it instead of the admin's. Over a listener without SASL
    (the local stack's PLAINTEXT development listener) there is no user to log in as, and
    no ACL either: unchanged, as :meth:`Settings.for_kafka_service` does."""
    user = province_user(province)
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return settings
    given = settings.kafka_sasl_username
    if given == user:
        return settings
    wrong_user = given not in (None, ADMIN_USER)
    password = settings.kafka_sasl_password
    stack_admin = settings.stack_kafka_users().get(ADMIN_USER)
    if wrong_user or (password is not None and password.get_secret_value() != stack_admin):
        # another user, or the admin of a cluster that is not the local stack
        raise ConfigError(
            f"--province {province} writes as Kafka user {user}, not {given}: set "
            f"{ENV_PREFIX}KAFKA_SASL_USERNAME={user} and {ENV_PREFIX}KAFKA_SASL_PASSWORD"
        )
    return settings.for_kafka_province(province)
