"""Kafka administration with confluent-kafka's AdminClient: readiness, access, contract topics.

python -m streams.kafka.admin ping [--bootstrap HOST:PORT] [--brokers N]
                                exit 0 once a metadata request lists N brokers (1)
python -m streams.kafka.admin check exit 0 when the configured credentials are accepted (one line
                                and exit 2 when refused)
python -m streams.kafka.admin topics create the contract topics and the process table's changelog
                                (idempotent), replicated as the cluster's size asks
                                (streams.kafka.topics.durability)
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from streams.kafka.topics import contract_topics, durability
from streams.settings import Settings, get_settings

# librdkafka's codes for a refused handshake: credentials, certificates, mechanism.
ACCESS_ERRORS = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)


class KafkaAccessError(Exception):
    """The brokers answered but refused these credentials (or this TLS setup)."""


def cluster_size(metadata: Any) -> int:
    """The brokers of the cluster: those in the metadata, or the copies of its offsets topic
    when there are more (the metadata leaves out a broker that is down, not gone)."""
    offsets = metadata.topics.get("__consumer_offsets")
    copies = (
        max((len(p.replicas) for p in offsets.partitions.values()), default=0) if offsets else 0
    )
    return max(len(metadata.brokers), copies)


def check_access(settings: Settings, wait: float | None = None, say: Any = None) -> int:
    """The cluster's size, once a metadata request succeeds with the configured security.

    Credentials or certificates the brokers refuse raise ``KafkaAccessError`` at once, with
    librdkafka's reason: every client would otherwise retry them for ever. Brokers that do not
    answer are waited for (``wait`` seconds, for ever when None), as the workers always did;
    ``say`` is called with a line every 30 s meanwhile.
    """
    refused: list[KafkaError] = []
    try:
        admin = AdminClient(
            settings.confluent_config(
                error_cb=lambda e: refused.append(e) if e.code() in ACCESS_ERRORS else None,
                # The refusal comes through error_cb; its log line is librdkafka's, repeated.
                log_level=0,
            )
        )
    except KafkaException as error:  # a key its password does not open, a missing file
        raise KafkaAccessError(f"cannot set up a client: {error.args[0].str()}") from None
    started = last_said = time.monotonic()
    while True:
        try:
            return cluster_size(admin.list_topics(timeout=2))
        except KafkaException as error:
            admin.poll(0)  # serves error_cb
            if refused or error.args[0].code() in ACCESS_ERRORS:
                reason = (refused or [error.args[0]])[0].str()
                raise KafkaAccessError(
                    f"{settings.kafka_bootstrap_servers} refused "
                    f"{settings.security_protocol} access: {reason}"
                ) from None
        now = time.monotonic()
        if wait is not None and now - started > wait:
            raise TimeoutError(f"no Kafka broker answered at {settings.kafka_bootstrap_servers}")
        if say and now - last_said > 30:
            say(f"waiting for Kafka at {settings.kafka_bootstrap_servers}")
            last_said = now


def ping(config: dict[str, Any], timeout: float = 2.0, brokers: int = 1) -> bool:
    """True when the cluster answers a metadata request listing at least ``brokers`` brokers."""
    admin = AdminClient({**config, "socket.timeout.ms": int(timeout * 1000)})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return len(metadata.brokers) >= brokers


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing contract topics and the process table's changelog; return the names
    created. Existing ones must match."""
    admin = AdminClient(settings.confluent_config())
    metadata = admin.list_topics(timeout=10)
    existing = metadata.topics
    durable = durability(cluster_size(metadata), settings.topic_replication_factor)
    wanted = {
        settings.topic(spec.name): {**spec.config, **durable.config} for spec in contract_topics()
    }
    # The process table's changelog too, as Faust declares it: were the workers to create it
    # as they start, their consumers could ask brokers that do not know it yet (on a cluster,
    # the metadata reaches each broker in its own time) and take its partitions for empty:
    # Faust's "changelog topic has 0 partitions" and ConsistencyError (highwater -1).
    # The stateless saga (COORDINATION=saga) has no table.
    if settings.coordination == "process":
        changelog = {"cleanup.policy": "compact", **durable.config}
        wanted[settings.process_changelog_topic()] = changelog
    mismatched = [
        f"{name} has {len(existing[name].partitions)} partitions, expected "
        f"{settings.topic_partitions}"
        for name in wanted
        if name in existing and len(existing[name].partitions) != settings.topic_partitions
    ]
    if mismatched:
        raise RuntimeError("topics are not co-partitioned: " + "; ".join(mismatched))
    under = [
        f"{name} has {replicas} replicas, expected {durable.replication_factor}"
        for name in wanted
        if name in existing and (replicas := _replicas(existing[name])) < durable.replication_factor
    ]
    if under:
        raise RuntimeError("topics are under-replicated for this cluster: " + "; ".join(under))
    new = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=durable.replication_factor,
            config=config,
        )
        for name, config in wanted.items()
        if name not in existing
    ]
    _align_configs(admin, {name: config for name, config in wanted.items() if name in existing})
    if not new:
        return []
    for future in admin.create_topics(new, operation_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return [topic.topic for topic in new]


def _replicas(topic: Any) -> int:
    return min(len(partition.replicas) for partition in topic.partitions.values())


def replication_factor(settings: Settings) -> int:
    """The replication factor of new topics (Faust's too) on the configured cluster."""
    if settings.topic_replication_factor:
        return settings.topic_replication_factor
    brokers = cluster_size(AdminClient(settings.confluent_config()).list_topics(timeout=10))
    return durability(brokers).replication_factor


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
    parser = argparse.ArgumentParser(prog="python -m streams.kafka.admin")
    sub = parser.add_subparsers(dest="command", required=True)
    ping_cmd = sub.add_parser("ping")
    ping_cmd.add_argument("--bootstrap")
    ping_cmd.add_argument("--brokers", type=int, default=1)
    sub.add_parser("topics")
    sub.add_parser("check")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "ping":
        config = settings.confluent_config()
        if args.bootstrap:
            config["bootstrap.servers"] = args.bootstrap
        return 0 if ping(config, brokers=args.brokers) else 1
    try:
        brokers = check_access(settings, wait=30)
    except (KafkaAccessError, TimeoutError) as error:
        print(f"kafka: {error}", file=sys.stderr)
        return 2
    if args.command == "check":
        print(f"kafka: {brokers} brokers at {settings.kafka_bootstrap_servers}", file=sys.stderr)
        return 0
    created = ensure_topics(settings)
    # and the process table's changelog
    total = len(contract_topics()) + (settings.coordination == "process")
    print(f"topics: {len(created)} created, {total - len(created)} already there", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
