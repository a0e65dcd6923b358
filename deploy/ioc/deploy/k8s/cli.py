"""``ioc deploy k8s``: write the Kubernetes manifests (:mod:`ioc.deploy.k8s.manifests`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ioc.config import Settings

DEFAULT_OUT = Path("deploy", "k8s", "manifests")


def cmd_deploy_k8s(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.deploy.k8s.manifests import Options, build

    defaults = Options()
    opts = Options(
        image=args.image or defaults.image,
        pg_image=args.pg_image or defaults.pg_image,
        scenario=args.scenario or defaults.scenario,
        topic_prefix=args.topic_prefix if args.topic_prefix is not None else "",
        province_topics=args.province_topics,
    )
    for path in build(Path(args.out), opts):
        print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    d = sub.add_parser("deploy", help="deployment files generated from the contract")
    dsub = d.add_subparsers(dest="deploy_command", required=True, metavar="TARGET")
    k = dsub.add_parser(
        "k8s", help="Kubernetes manifests (Strimzi, CloudNativePG, KEDA, Prometheus Operator)"
    )
    k.add_argument("--out", default=str(DEFAULT_OUT), help=f"folder (default {DEFAULT_OUT})")
    k.add_argument("--image", help="the product image (default ioc-monitoring:0.1.0)")
    k.add_argument("--pg-image", help="a CloudNativePG-compatible PostgreSQL + TimescaleDB image")
    k.add_argument("--scenario", help="IOC_SCENARIO of the processes (default: the settings')")
    k.add_argument("--topic-prefix", help="IOC_KAFKA_TOPIC_PREFIX (default none)")
    k.add_argument(
        "--province-topics",
        action="store_true",
        help="IOC_KAFKA_PROVINCE_TOPICS=true: a KafkaTopic per feed per province of the "
        "scenario and a KafkaUser per province (write on its own topics, quotas)",
    )
    k.set_defaults(handler=cmd_deploy_k8s)
