"""Fuzzed bad input on every input topic, interleaved with valid orders, on a real worker.

Every malformed record must land in dead-letters (found by its topic, partition and offset)
with a reason, every valid order must still complete, and the worker must keep running. In
some rounds an order that breaks the handler (a test fault: the worker raises for every
message of orders marked ``BROKEN``) shares the valid order's partition: it must be
quarantined, and the valid order complete all the same.
FUZZ_EXAMPLES sets how many rounds hypothesis plays (`make fuzz` plays many, CI a few).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aggregates.messages import (
    CancelProcess,
    CartOpened,
    CompleteOrder,
    Message,
    OpenCart,
    OrderCompleted,
    PaymentSettled,
    ProductItem,
    ProductWasOutOfStock,
    SendPackage,
    SettlePayment,
    to_wire,
)
from streams.kafka.codec import external
from streams.settings import Settings
from tests.fuzz.strategies import INPUT_TOPICS, bad_record, wrong_topics
from tests.integration.flows import (
    cart_commands,
    get_process,
    place_order,
    stock,
    wait_terminal,
)
from tests.integration.harness import (
    Service,
    faust_worker,
    isolated_settings,
    misrouted_id,
    read_to_end,
    same_partition_id,
    send_as_a_default_client,
)

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
WEB_PORT = 16110
BROKEN = "fuzz-broken"
Position = tuple[str, int, int]


def sample(topic: str, order_id: str) -> Message:
    """A valid message for ``topic``, which the fuzzer then breaks."""
    item = ProductItem(product_id="p", quantity=1, unit_price=Decimal("1.00"))
    return {
        "carts.commands": OpenCart(cart_id=order_id, client_id="c"),
        "carts.events": CartOpened(cart_id=order_id, client_id="c"),
        "orders.commands": CompleteOrder(order_id=order_id),
        "orders.events": OrderCompleted(order_id=order_id),
        "payments.commands": SettlePayment(payment_id="p", order_id=order_id),
        "payments.events": PaymentSettled(payment_id="p", order_id=order_id),
        "shipments.commands": SendPackage(order_id=order_id, product_items=(item,)),
        "shipments.events": ProductWasOutOfStock(
            order_id=order_id, product_id="p", requested=1, available=0
        ),
        "processes.commands": CancelProcess(order_id=order_id, reason="r", requested_by="u"),
    }[topic]


def produce_at(
    settings: Settings, records: list[tuple[str, bytes | None, bytes]]
) -> list[Position]:
    """Produce (topic, key, value) records; return where each landed."""
    positions: list[Position] = []
    producer = Producer(settings.producer_config(**{"enable.idempotence": True}))

    def delivered(error: object, message: object) -> None:
        assert error is None, error
        positions.append((message.topic(), message.partition(), message.offset()))  # type: ignore[attr-defined]

    for topic, key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    return positions


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Service, str]]:
    from streams.settings import get_settings

    isolated, env = isolated_settings(get_settings())
    env |= {"ORDERFLOW_FAULT": "process_handler_error", "ORDERFLOW_FAULT_MATCH": BROKEN}
    worker = faust_worker("streams.process.worker", env, tmp_path_factory.mktemp("fuzz"), WEB_PORT)
    worker.start()
    sku = f"{env['APP_ID']}-sku"
    stock(isolated, {sku: 1_000_000})
    yield isolated, worker, sku
    worker.stop()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_bad_records_become_dead_letters_and_valid_orders_still_complete(
    system: tuple[Settings, Service, str], data: st.DataObject
) -> None:
    settings_, worker, sku = system
    order_id = f"fuzz-{uuid.uuid4().hex[:10]}"
    # Given bad records for some input topics, and one valid message on a topic not its own
    topics = data.draw(st.lists(st.sampled_from(INPUT_TOPICS), min_size=1, max_size=4))
    bad: list[tuple[str, bytes | None, bytes]] = []
    for topic in topics:
        envelope = external(sample(topic, order_id))
        _, key, value = data.draw(bad_record(to_wire(envelope), order_id.encode()))
        bad.append((settings_.topic(topic), key, value))
    misplaced = external(sample(data.draw(st.sampled_from(INPUT_TOPICS)), order_id))
    wire = json.dumps(to_wire(misplaced)).encode()
    elsewhere = data.draw(st.sampled_from(wrong_topics(misplaced.type)))
    bad.append((settings_.topic(elsewhere), order_id.encode(), wire))

    # When they arrive, interleaved with a valid order, sent by a client that partitions
    # with murmur2 or, misrouting every record, with librdkafka's default CRC32
    positions = produce_at(settings_, bad[: len(bad) // 2])
    if data.draw(st.booleans(), label="valid order from a CRC32 client"):
        valid = misrouted_id("valid", settings_.topic_partitions)
        send_as_a_default_client(
            settings_,
            settings_.topic("carts.commands"),
            cart_commands(valid, "card_ok", [(sku, 1)]),
        )
    else:
        valid = f"valid-{uuid.uuid4().hex[:10]}"
        place_order(settings_, valid, "card_ok", [(sku, 1)])
    broken = None
    if data.draw(st.booleans(), label="an order that breaks the handler, on that partition"):
        event("an order breaks the handler")
        broken = same_partition_id(
            f"{BROKEN}-{uuid.uuid4().hex[:10]}", valid, settings_.topic_partitions
        )
        place_order(settings_, broken, "card_ok", [(sku, 1)])
    positions += produce_at(settings_, bad[len(bad) // 2 :])

    # Then the valid order completes, every bad record is a dead letter, the worker runs on
    assert wait_terminal(WEB_PORT, valid, timeout=60)["state"] == "Completed", worker.tail()
    if broken is not None:
        quarantined = wait_quarantined(broken)
        assert quarantined["reason"].startswith("InjectedFault"), quarantined
    letters = wait_for_letters(settings_, set(positions))
    for position in positions:
        assert letters[position]["reason"], letters[position]
    assert worker.running(), worker.tail()


def wait_quarantined(order_id: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    process = None
    while time.monotonic() < deadline:
        process = get_process(WEB_PORT, order_id)
        if process is not None and process["quarantine"] is not None:
            return process["quarantine"]  # type: ignore[no-any-return]
        time.sleep(0.25)
    raise AssertionError(f"{order_id} not quarantined after 60 s: {process}")


def wait_for_letters(settings: Settings, wanted: set[Position]) -> dict[Position, dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    found: dict[Position, dict] = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        for _, value in read_to_end(settings, settings.topic("dead-letters")):
            letter = json.loads(value)
            source = letter["source"]
            found[(source["topic"], source["partition"], source["offset"])] = letter
        if wanted <= set(found):
            return found
        time.sleep(0.5)
    missing = wanted - set(found)
    raise AssertionError(f"{len(missing)} bad records never reached dead-letters: {missing}")
