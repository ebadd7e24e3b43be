"""A worker killed in the middle of a drain, before its first commit: its successor takes every
input in, whether it keeps the killed worker's RocksDB files or restores from the changelog.

- The agent (HOT_PATH=agent) answers every cart at least once. Before ``seek_streams``
  (streams/kafka/recovery.py) its successor began each partition past the records aiokafka
  had fetched before the recovery paused it, and never took ~2,400 carts per partition in.
- The loop (HOT_PATH=loop) answers every cart exactly once to a read_committed reader, with
  its process record: a batch's commands, records and input offsets commit together. Its
  changelog, written in transactions, ends in a commit marker that Faust's restore never
  receives (``active_remaining``); a successor keeping the files may find RocksDB behind the
  changelog, if the kill fell between a commit and the write.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.kafka import groups
from streams.settings import Settings
from tests.integration.flows import cart_finalized
from tests.integration.harness import (
    Service,
    faust_worker,
    isolated_settings,
    produce,
    read_to_end,
    unique,
    wire,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16160
CARTS = 20_000


@pytest.mark.parametrize(
    ("hot_path", "successor_files"),
    [("agent", "empty"), ("loop", "kept"), ("loop", "empty")],
)
def test_a_worker_killed_mid_drain_leaves_no_cart_unanswered(
    settings: Settings,
    services: list[Service],
    tmp_path: Path,
    hot_path: str,
    successor_files: str,
) -> None:
    # Given carts finalized on carts.events, and a worker draining them
    system, env = isolated_settings(settings)
    env |= {"WORKER_RUNS_MODULES": "false", "HOT_PATH": hot_path, "PROCESS_TIMEOUT_ALL_S": "3600"}
    prefix = unique("order")
    orders = [f"{prefix}-{i:05d}" for i in range(CARTS)]
    produce(system, system.topic("carts.events"), [wire(cart_finalized(o)) for o in orders])
    first = faust_worker("streams.process.worker", env, tmp_path / "first", WEB_PORT)
    services.append(first)
    first.start()
    answers = Answers(system)

    # When it is killed once a tenth of them is answered
    deadline = time.monotonic() + 120
    while answers.count() < CARTS // 10:
        assert time.monotonic() < deadline, f"the drain never got going:\n{first.tail()}"
    first.kill()
    at_kill = answers.count()
    assert at_kill < CARTS, "the drain ended before the kill: the window under test never opened"

    # And a successor takes over, with the killed worker's files or none
    files = tmp_path / ("first" if successor_files == "kept" else "successor")
    successor = faust_worker("streams.process.worker", env, files, WEB_PORT)
    services.append(successor)
    successor.start()
    deadline = time.monotonic() + 180
    while answers.count() < CARTS or len(answers.orders) < CARTS:
        assert time.monotonic() < deadline, (
            f"{len(answers.orders)}/{CARTS} carts answered:\n{successor.tail()}"
        )
    answers.close()

    # Then every cart has its InitOrder, and the loop's exactly one
    sent = Counter(key.decode() for key, _ in read_to_end(system, system.topic("orders.commands")))
    assert set(sent) == set(orders)
    if hot_path == "loop":
        twice = [o for o, n in sent.items() if n > 1]
        assert twice == [], f"{len(twice)} answered twice (killed at {at_kill})"
    # And every order has its process record in the changelog
    recorded = {key.decode() for key, _ in read_to_end(system, system.process_changelog_topic())}
    assert set(orders) <= recorded
    # And the group commits every input (the agent's commit follows its answers by seconds)
    deadline = time.monotonic() + 30
    while (lag := committed_lag(system)) > 0:
        assert time.monotonic() < deadline, f"{lag} inputs never committed"
        time.sleep(1)


class Answers:
    """The InitOrder commands on orders.commands as a read_committed reader sees them."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topic("orders.commands")
        self.consumer = Consumer(
            settings.confluent_config(
                **{
                    "group.id": unique("reader"),
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                }
            )
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.seen = 0
        self.orders: set[bytes] = set()

    def count(self) -> int:
        """The answers seen so far, after waiting up to 0.2 s for more."""
        for message in self.consumer.consume(5000, timeout=0.2):
            if message.error() is None:
                self.seen += 1
                self.orders.add(message.key() or b"")
        return self.seen

    def close(self) -> None:
        self.consumer.close()


def committed_lag(settings: Settings) -> int:
    """Records of carts.events past the process manager group's committed offsets."""
    topic = settings.topic("carts.events")
    consumer = Consumer(settings.confluent_config(**{"group.id": groups.process_manager(settings)}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        lag = 0
        for tp in committed:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()
