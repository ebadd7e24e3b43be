"""A worker on the agent (HOT_PATH=agent) commits an input's offset, and sends the input's
commands, only once what the input changed is durable in Kafka. (The loop commits all three
in one transaction: tests/integration/test_kill_mid_drain.py.)

Found by chaos:
- a worker killed a few seconds after it took in a `PackageWasSent` had already committed the
  event's offset, but its table's changelog record was still queued inside the worker. The new
  owner restored the process without the event and never saw the event again;
- a worker killed after its `SendPackage` went out, but before the changelog record of the
  state that sent it did, left the new owner with the process one state behind its commands.
  A timeout there cancelled the order and refunded its payment while the package shipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.settings import Settings
from tests.integration.flows import cart_finalized
from tests.integration.harness import (
    Service,
    faust_worker,
    isolated_settings,
    produce,
    read_all,
    read_to_end,
    scrape,
    total,
    unique,
    wire,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16091
CHANGELOG_DELAY_S = 12
COMMIT_WAIT_S = 8  # longer than Faust's commit interval (2.8 s), shorter than the delay


def test_a_worker_killed_before_its_table_write_reached_kafka_has_committed_and_sent_nothing(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a worker whose changelog records reach its producer 12 s late
    system, env = isolated_settings(settings)
    env |= {"WORKER_RUNS_MODULES": "false", "HOT_PATH": "agent"}
    fault = {"ORDERFLOW_FAULT": "changelog_publish_delay", "ORDERFLOW_FAULT_DELAY_S": "12"}
    worker = faust_worker("streams.process.worker", env | fault, tmp_path / "first", WEB_PORT)
    services.append(worker)
    worker.start()

    # When a cart is finalized and the worker has taken it in
    order_id = unique("order")
    key, value = wire(cart_finalized(order_id))
    message_id = json.loads(value)["message_id"]
    produce(system, system.topic("carts.events"), [(key, value)])
    deadline = time.monotonic() + 60
    while total(scrape(WEB_PORT), "messages_total", outcome="applied") < 1:
        assert time.monotonic() < deadline, f"the cart was never taken in:\n{worker.tail()}"
        time.sleep(0.5)
    committed = wait_committed(system, COMMIT_WAIT_S)

    # ... and the worker is killed before the delayed changelog record was sent
    worker.kill()

    assert not applied_in_changelog(system, order_id, message_id), (
        "the changelog record arrived before the kill: the window under test was never open"
    )

    # Then the input's offset was not committed
    assert not committed, (
        "the input's offset was committed, but its process record never reached Kafka"
    )
    # And no command went out ahead of the record of the state that decided it
    assert not read_to_end(system, system.topic("orders.commands")), (
        "InitOrder was sent, but the process record that sent it never reached Kafka"
    )

    # And a new owner (no local state) ends with the cart taken in
    successor = faust_worker("streams.process.worker", env, tmp_path / "successor", WEB_PORT)
    services.append(successor)
    successor.start()
    deadline = time.monotonic() + 60
    while not applied_in_changelog(system, order_id, message_id):
        assert time.monotonic() < deadline, f"the cart was lost:\n{successor.tail()}"
        time.sleep(1)
    # And its InitOrder sent
    assert read_all(system, system.topic("orders.commands"), 1), "InitOrder was never sent"


def wait_committed(settings: Settings, within_s: float) -> bool:
    """Whether the worker's group commits any offset of `carts.events` within ``within_s``."""
    topic = settings.topic("carts.events")
    consumer = Consumer(settings.confluent_config(**{"group.id": settings.faust_app_id()}))
    try:
        partitions = [
            TopicPartition(topic, p) for p in consumer.list_topics(topic).topics[topic].partitions
        ]
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if any(tp.offset > 0 for tp in consumer.committed(partitions, timeout=10)):
                return True
            time.sleep(0.5)
        return False
    finally:
        consumer.close()


def applied_in_changelog(settings: Settings, order_id: str, message_id: str) -> bool:
    records = read_to_end(settings, settings.process_changelog_topic())
    return any(
        key == order_id.encode() and message_id in json.loads(value)["applied"]
        for key, value in records
        if value is not None
    )
