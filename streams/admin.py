"""Kafka administration with confluent-kafka's AdminClient: readiness and contract topics.

python -m streams.admin ping [--bootstrap HOST:PORT]   exit 0 once a metadata request succeeds
python -m streams.admin topics                         create the contract topics (idempotent)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from streams.settings import Settings, get_settings
from streams.topics import contract_topics


def ping(config: dict[str, Any], timeout: float = 2.0, brokers: int = 1) -> bool:
    """True when the cluster answers a metadata request listing at least ``brokers`` brokers."""
    admin = AdminClient({**config, "socket.timeout.ms": int(timeout * 1000)})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return len(metadata.brokers) >= brokers


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing contract topics; return the names created. Existing ones must match."""
    admin = AdminClient(settings.confluent_config())
    existing = admin.list_topics(timeout=10).topics
    wanted = {settings.topic(spec.name): spec for spec in contract_topics()}
    mismatched = [
        f"{name} has {len(existing[name].partitions)} partitions, expected "
        f"{settings.topic_partitions}"
        for name in wanted
        if name in existing and len(existing[name].partitions) != settings.topic_partitions
    ]
    if mismatched:
        raise RuntimeError("topics are not co-partitioned: " + "; ".join(mismatched))
    new = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config=spec.config,
        )
        for name, spec in wanted.items()
        if name not in existing
    ]
    _align_configs(admin, {name: spec.config for name, spec in wanted.items() if name in existing})
    if not new:
        return []
    for future in admin.create_topics(new, operation_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return [topic.topic for topic in new]


def _align_configs(admin: AdminClient, configs: dict[str, dict[str, str]]) -> None:
    """Set the contract's configs on topics that already exist (retention may have changed)."""
    if not configs:
        return
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in config.items()
            ],
        )
        for name, config in configs.items()
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.admin")
    sub = parser.add_subparsers(dest="command", required=True)
    ping_cmd = sub.add_parser("ping")
    ping_cmd.add_argument("--bootstrap")
    ping_cmd.add_argument("--brokers", type=int, default=1)
    sub.add_parser("topics")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "ping":
        config = settings.confluent_config()
        if args.bootstrap:
            config["bootstrap.servers"] = args.bootstrap
        return 0 if ping(config, brokers=args.brokers) else 1
    created = ensure_topics(settings)
    total = len(contract_topics())
    print(f"topics: {len(created)} created, {total - len(created)} already there", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
