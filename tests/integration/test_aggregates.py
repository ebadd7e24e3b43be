"""Event-sourced command handlers on the real broker: commands in, events out, in order, once."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from aggregates.messages import AddProduct, FinalizeCart, OpenCart, ProductItem
from streams.faults import PROCESSOR_HANG_BEFORE_OFFSETS
from streams.kafka import groups
from streams.kafka.routing import owner_of
from streams.observability.liveness import EXIT_STALLED
from streams.settings import Settings
from tests.integration.harness import (
    Service,
    envelopes,
    isolated_settings,
    module_runner,
    produce,
    produce_raw,
    read_all,
    read_to_end,
    same_partition_id,
    unique,
    wire,
)
from tests.integration.malformed import malformed_records

pytestmark = pytest.mark.integration


def test_a_carts_commands_produce_its_events_in_order_and_a_duplicate_appends_once(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given the cart module running on its own topics
    isolated, env = isolated_settings(settings)
    runner = module_runner(env, tmp_path, only="carts")
    services.append(runner)
    runner.start()
    cart_id = unique("cart")
    add = wire(
        AddProduct(cart_id=cart_id, product_id="sku-1", quantity=2, unit_price=Decimal("9.99"))
    )

    # When a client opens a cart, adds a product twice over (one redelivered) and finalizes
    produce(
        isolated,
        isolated.topic("carts.commands"),
        [
            wire(OpenCart(cart_id=cart_id, client_id="client-1")),
            add,
            add,
            wire(FinalizeCart(cart_id=cart_id, payment_method="card_declined")),
        ],
    )

    # Then the events follow the commands, and the duplicated AddProduct appended once
    events = envelopes(read_all(isolated, isolated.topic("carts.events"), expected=4, timeout=30))
    assert [e.type for e in events] == ["CartOpened", "ProductAdded", "CartFinalized"], (
        runner.tail()
    )
    finalized = events[-1].data
    assert finalized.product_items == (  # type: ignore[union-attr]
        ProductItem(product_id="sku-1", quantity=2, unit_price=Decimal("9.99")),
    )
    assert finalized.total_price == Decimal("19.98")  # type: ignore[union-attr]
    assert all(e.correlation_id == cart_id for e in events)
    assert events[1].causation_id == json.loads(add[1])["message_id"]


def test_a_refused_command_becomes_a_command_rejected_event(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a finalized cart
    isolated, env = isolated_settings(settings)
    runner = module_runner(env, tmp_path, only="carts")
    services.append(runner)
    runner.start()
    cart_id = unique("cart")
    late_add = wire(
        AddProduct(cart_id=cart_id, product_id="p", quantity=1, unit_price=Decimal("1"))
    )
    produce(
        isolated,
        isolated.topic("carts.commands"),
        [
            wire(OpenCart(cart_id=cart_id, client_id="c")),
            wire(AddProduct(cart_id=cart_id, product_id="p", quantity=1, unit_price=Decimal("1"))),
            wire(FinalizeCart(cart_id=cart_id)),
            # When a product is added after finalization
            late_add,
        ],
    )

    # Then a CommandRejected names the command and the reason
    events = envelopes(read_all(isolated, isolated.topic("carts.events"), expected=4, timeout=30))
    rejected = events[-1].data
    assert rejected.type == "CommandRejected", runner.tail()
    assert rejected.command_type == "AddProduct"  # type: ignore[union-attr]
    assert rejected.command_message_id == json.loads(late_add[1])["message_id"]  # type: ignore[union-attr]
    assert "finalized" in rejected.reason  # type: ignore[union-attr]


def test_state_survives_a_restart_because_it_is_folded_from_the_events_topic(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a cart opened and filled by one incarnation of the module, which is then killed
    isolated, env = isolated_settings(settings)
    runner = module_runner(env, tmp_path, only="carts")
    services.append(runner)
    runner.start()
    cart_id = unique("cart")
    add = wire(AddProduct(cart_id=cart_id, product_id="p", quantity=3, unit_price=Decimal("2.50")))
    commands = isolated.topic("carts.commands")
    produce(isolated, commands, [wire(OpenCart(cart_id=cart_id, client_id="c")), add])
    assert len(read_all(isolated, isolated.topic("carts.events"), expected=2, timeout=30)) == 2
    runner.kill()

    # When a new incarnation receives the same AddProduct again, then FinalizeCart
    runner.start()
    produce(isolated, commands, [add, wire(FinalizeCart(cart_id=cart_id))])

    # Then it decided against the folded state: the duplicate was skipped, the total is right
    events = envelopes(read_all(isolated, isolated.topic("carts.events"), expected=4, timeout=30))
    assert [e.type for e in events] == ["CartOpened", "ProductAdded", "CartFinalized"], (
        runner.tail()
    )
    assert events[-1].data.total_price == Decimal("7.50")  # type: ignore[union-attr]


def test_every_kind_of_malformed_command_lands_in_dead_letters_and_valid_ones_continue(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given the cart module running
    isolated, env = isolated_settings(settings)
    runner = module_runner(env, tmp_path, only="carts")
    services.append(runner)
    runner.start()
    cart_id = unique("cart")
    bad = malformed_records(cart_id)
    commands = isolated.topic("carts.commands")

    # When every kind of malformed record arrives, followed by a valid command
    produce_raw(isolated, commands, [(key, value) for _, key, value in bad])
    produce(isolated, commands, [wire(OpenCart(cart_id=cart_id, client_id="c"))])

    # Then each is a dead letter with its reason, its source and its raw key and value
    letters = [
        json.loads(value)
        for _, value in read_all(isolated, isolated.topic("dead-letters"), len(bad), timeout=30)
    ]
    assert len(letters) == len(bad), runner.tail()
    for reason, key, value in bad:
        letter = next(
            letter
            for letter in letters
            if letter["key_base64"] == _b64(key) and letter["value_base64"] == _b64(value)
        )
        assert reason in letter["reason"], letter["reason"]
        assert letter["source"]["topic"] == commands
        assert letter["source"]["offset"] >= 0
    # and the valid command after them was processed
    events = envelopes(read_all(isolated, isolated.topic("carts.events"), expected=1, timeout=30))
    assert [e.type for e in events] == ["CartOpened"]


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def test_a_module_loop_stuck_in_a_client_call_ends_the_process_and_a_restart_decides_once(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given the cart module with a 31 s watchdog, whose transaction will hang before its offsets
    # are sent, as librdkafka's send_offsets_to_transaction can after a broker restart
    isolated, env = isolated_settings(settings)
    env |= {"STALL_EXIT_AFTER_S": "31"}
    stuck = module_runner(
        {**env, "ORDERFLOW_FAULT": PROCESSOR_HANG_BEFORE_OFFSETS}, tmp_path, only="carts"
    )
    services.append(stuck)
    stuck.start()
    cart_id = unique("cart")

    # When a command arrives
    produce(
        isolated,
        isolated.topic("carts.commands"),
        [wire(OpenCart(cart_id=cart_id, client_id="c"))],
    )

    # Then the watchdog ends the process with its own exit code
    assert stuck.process is not None
    assert stuck.process.wait(timeout=120) == EXIT_STALLED, stuck.tail()
    assert "module loop stalled" in stuck.tail()

    # When the module starts again without the fault
    runner = module_runner(env, tmp_path, only="carts")
    services.append(runner)
    runner.start()

    # Then the command was decided, once
    events = envelopes(read_all(isolated, isolated.topic("carts.events"), expected=1, timeout=30))
    assert [e.type for e in events] == ["CartOpened"], runner.tail()
    assert len(read_to_end(isolated, isolated.topic("carts.events"))) == 1


def test_the_shared_loop_starts_where_the_modules_own_group_stopped(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a cart command that the cart module's own group (one loop per module, before they
    # shared one) had consumed: its committed offset is past it
    isolated, env = isolated_settings(settings)
    commands = isolated.topic("carts.commands")
    handled = unique("cart")
    produce(isolated, commands, [wire(OpenCart(cart_id=handled, client_id="c"))])
    partition = owner_of(handled.encode(), isolated.topic_partitions)
    old = Consumer(isolated.confluent_config(**{"group.id": groups.module(isolated, "carts")}))
    try:
        old.commit(offsets=[TopicPartition(commands, partition, 1)], asynchronous=False)
    finally:
        old.close()

    # When the shared loop starts and a new cart on the same partition arrives
    runner = module_runner(env, tmp_path, only="carts")
    services.append(runner)
    runner.start()
    new = same_partition_id("cart", handled, isolated.topic_partitions)
    produce(isolated, commands, [wire(OpenCart(cart_id=new, client_id="c"))])

    # Then only the new cart is decided: the loop's group took the old group's offset
    events = envelopes(read_all(isolated, isolated.topic("carts.events"), expected=1, timeout=30))
    assert [(e.type, e.correlation_id) for e in events] == [("CartOpened", new)]
    assert "offsets adopted from the previous groups" in runner.tail(200)
