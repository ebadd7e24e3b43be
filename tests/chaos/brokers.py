"""The broker fault of a chaos run, as the conductor carries it out.

- ``SingleBroker``: the single broker of ``deploy/kafka/kafka.sh``, stopped and started again.
- ``ClusterNode``: on the cluster of ``deploy/kafka/cluster.sh``, the node that leads the most
  of the run's partitions (its topics, its Faust topics, the offsets and transaction logs) is
  killed with SIGKILL; ``cluster.sh start`` starts it again and leaves the others alone. While
  it is down, ``leaders_moved`` tells when no watched partition is led by it any more.

Every operation returns a process (``stop`` and ``start``) or answers at once, so that the
conductor's loop never waits on one.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Final

from confluent_kafka.admin import AdminClient

from streams.kafka.admin import ping
from tests.integration.harness import REPO

KAFKA: Final = REPO / "deploy" / "kafka" / "kafka.sh"
CLUSTER: Final = REPO / "deploy" / "kafka" / "cluster.sh"
INTERNAL: Final = ("__consumer_offsets", "__transaction_state")


def _script(script: Path, action: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(["bash", str(script), action], stdout=out, stderr=subprocess.STDOUT)


class SingleBroker:
    """``kafka.sh stop`` and ``start``: the whole of Kafka is down in between."""

    name = "broker"

    def __init__(self, config: dict[str, Any], run_dir: Path) -> None:
        self.config = config
        self.log = run_dir / "broker-ops.log"
        self.detail: dict[str, Any] = {}

    def stop(self) -> subprocess.Popen[bytes]:
        return _script(KAFKA, "stop", self.log)

    def start(self) -> subprocess.Popen[bytes]:
        return _script(KAFKA, "start", self.log)

    def restore(self) -> None:
        subprocess.run(["bash", str(KAFKA), "start"], check=False, capture_output=True)

    def answering(self) -> bool:
        return ping(self.config, timeout=1)

    def console_log(self) -> Path:
        data = Path(os.environ.get("DATA_DIR", REPO / ".data"))
        return data / "kafka" / "logs" / "console.log"


def leader_counts(metadata: Any, watched: tuple[str, ...]) -> Counter[int]:
    """Partitions led per broker id, over the topics whose names start with ``watched``."""
    return Counter(
        partition.leader
        for name, topic in metadata.topics.items()
        if name.startswith(watched)
        for partition in topic.partitions.values()
    )


def leading_most(counts: Counter[int], brokers: list[int]) -> int:
    """The broker leading the most partitions (the lowest id of a tie)."""
    return max(sorted(brokers), key=lambda b: counts.get(b, 0))


class ClusterNode:
    """SIGKILL the node leading the most watched partitions; ``cluster.sh start`` it again."""

    name = "node"

    def __init__(self, config: dict[str, Any], run_dir: Path, watched: tuple[str, ...]) -> None:
        self.config = config
        self.log = run_dir / "broker-ops.log"
        self.watched = (*watched, *INTERNAL)
        self.admin = AdminClient({**config, "socket.timeout.ms": 1000})
        metadata = self.admin.list_topics(timeout=10)
        self.brokers = sorted(metadata.brokers)
        self.victim: int | None = None
        self.detail: dict[str, Any] = {}

    def stop(self) -> subprocess.Popen[bytes]:
        counts = leader_counts(self.admin.list_topics(timeout=5), self.watched)
        self.victim = leading_most(counts, self.brokers)
        pid = subprocess.run(
            ["bash", str(CLUSTER), "pid", str(self.victim)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.detail = {
            "node": self.victim,
            "leaders": {str(b): counts.get(b, 0) for b in self.brokers},
            "partitions": sum(counts.values()),
        }
        os.kill(int(pid), signal.SIGKILL)
        self.name = f"node {self.victim}"
        return subprocess.Popen(["true"])

    def start(self) -> subprocess.Popen[bytes]:
        return _script(CLUSTER, "start", self.log)

    def restore(self) -> None:
        subprocess.run(["bash", str(CLUSTER), "start"], check=False, capture_output=True)

    def answering(self) -> bool:
        return ping(self.config, timeout=1, brokers=len(self.brokers))

    def leaders_moved(self) -> bool:
        """No watched partition is led by the killed node, nor leaderless."""
        try:
            metadata = self.admin.list_topics(timeout=1)
        except Exception:
            return False
        counts = leader_counts(metadata, self.watched)
        return counts.get(self.victim or 0, 0) == 0 and counts.get(-1, 0) == 0

    def console_log(self) -> Path:
        node = self.victim or 0
        cluster_dir = Path(os.environ.get("CLUSTER_DIR", REPO / ".data" / "cluster"))
        return cluster_dir / f"node-{node}" / "logs" / "console.log"
