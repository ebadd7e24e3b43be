"""Records from clients that partition keys with CRC32 (kcat, a default confluent-kafka
producer) are forwarded to the partition their key hashes to, and decided there."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
import zlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from aggregates.messages import AddProduct, CancelProcess, FinalizeCart, OpenCart
from streams.kafka.routing import owner_of
from streams.settings import Settings
from tests.integration.flows import get_process, place_order, wait_terminal
from tests.integration.harness import (
    Service,
    envelopes,
    faust_worker,
    isolated_settings,
    misrouted_id,
    module_runner,
    read_to_end,
    send_as_a_default_client,
    unique,
    wire,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16095


def eventually(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.3)


def event_types(settings: Settings, topic: str, order_id: str) -> list[str]:
    return [e.type for e in envelopes(read_to_end(settings, topic)) if e.correlation_id == order_id]


def partitions_holding(settings: Settings, topic: str, key: bytes) -> set[int]:
    consumer = Consumer(settings.confluent_config(**{"group.id": unique("reader")}))
    try:
        found = set()
        for partition in range(settings.topic_partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                consumer.assign([TopicPartition(topic, partition, low)])
                for message in consumer.consume(high - low, timeout=10):
                    if message.error() is None and message.key() == key:
                        found.add(partition)
        return found
    finally:
        consumer.close()


def test_a_cancel_from_a_default_partitioner_client_cancels_the_process(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a worker and an order stalled in AwaitingPayment (the gateway never answers)
    system, env = isolated_settings(settings)
    env |= {"PROCESS_TIMEOUTS": json.dumps({"AwaitingPayment": 600})}
    worker = faust_worker("streams.process.worker", env, tmp_path / "worker", WEB_PORT)
    services.append(worker)
    worker.start()
    order_id = misrouted_id("order", system.topic_partitions)
    place_order(system, order_id, "card_no_response", [("sku-1", 1)])
    eventually(
        lambda: (get_process(WEB_PORT, order_id) or {}).get("state") == "AwaitingPayment",
        "the process awaiting its payment",
    )

    # When an operator cancels it with a default confluent-kafka producer
    cancel = CancelProcess(order_id=order_id, reason="customer called", requested_by="ops-1")
    send_as_a_default_client(system, system.topic("processes.commands"), [wire(cancel)])

    # Then the cancel reaches the process: cancelled by hand, not timed out later
    process = wait_terminal(WEB_PORT, order_id)
    assert process["state"] == "Cancelled"
    assert process["cancellation_reason"] == "ManualCancellation"
    # And the forward is counted
    with urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}/metrics", timeout=15) as response:
        metrics = response.read().decode()
    topic = system.topic("processes.commands")
    assert f'misrouted_forwarded_total{{topic="{topic}"}} 1.0' in metrics


def test_a_cart_from_a_default_partitioner_client_survives_a_restart_of_its_module(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given the carts module, and a client that opened a cart and added a product with a
    # default confluent-kafka producer
    system, env = isolated_settings(settings)
    carts = module_runner(env, tmp_path, "carts")
    services.append(carts)
    carts.start()
    cart_id = misrouted_id("cart", system.topic_partitions)
    commands = system.topic("carts.commands")
    add = AddProduct(cart_id=cart_id, product_id="p", quantity=1, unit_price=Decimal("2.50"))
    send_as_a_default_client(
        system, commands, [wire(OpenCart(cart_id=cart_id, client_id="c")), wire(add)]
    )
    events = system.topic("carts.events")
    eventually(lambda: len(event_types(system, events, cart_id)) == 2, "the cart's two events")

    # When the module restarts (it rebuilds its carts from their events partitions)
    carts.stop()
    carts.start()

    # And the client finalizes the cart the same way
    send_as_a_default_client(system, commands, [wire(FinalizeCart(cart_id=cart_id))])

    # Then the module found the cart and finalized it
    eventually(
        lambda: (
            "CartFinalized" in event_types(system, events, cart_id)
            or "CommandRejected" in event_types(system, events, cart_id)
        ),
        "an answer to FinalizeCart",
    )
    assert event_types(system, events, cart_id) == ["CartOpened", "ProductAdded", "CartFinalized"]


def test_a_command_sent_with_kcat_is_forwarded_and_decided(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is missing: `make test` installs it (deploy/kcat.sh)"
    # Given the carts module
    system, env = isolated_settings(settings)
    carts = module_runner(env, tmp_path, "carts")
    services.append(carts)
    carts.start()

    # When a client opens a cart with kcat and its default partitioner
    cart_id = misrouted_id("cart", system.topic_partitions)
    key, value = wire(OpenCart(cart_id=cart_id, client_id="c"))
    commands = system.topic("carts.commands")
    subprocess.run(
        [kcat, "-P", "-b", system.kafka_bootstrap_servers, "-t", commands, "-k", key.decode()],
        input=value,
        check=True,
        timeout=30,
    )

    # Then the cart is opened, and the command is on its CRC32 partition and, forwarded, on
    # the partition its key hashes to
    events = system.topic("carts.events")
    eventually(lambda: event_types(system, events, cart_id) == ["CartOpened"], "CartOpened")
    owner = owner_of(key, system.topic_partitions)
    crc32 = zlib.crc32(key) % system.topic_partitions
    assert partitions_holding(system, commands, key) == {crc32, owner}
    assert partitions_holding(system, events, key) == {owner}
