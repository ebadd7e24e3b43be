"""The shipment module on the real broker and the real PostgreSQL.

Each test gets its own topic prefix (and so its own topics, consumer group and outbox rows)
and its own SKUs and order ids; the database is shared and migrated once.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage

from aggregates.messages import (
    CancelShipment,
    CommandRejected,
    Envelope,
    PackageWasSent,
    ProductItem,
    ProductWasOutOfStock,
    SendPackage,
    ShipmentCancellationRejected,
    ShipmentCancelled,
    deterministic_id,
    to_wire,
)
from streams.cli.main import cli
from streams.kafka.codec import DeadLetter, decode, encode
from streams.kafka.consuming import Consumed
from streams.kafka.routing import owner_of
from streams.modules.shipment import store
from streams.modules.shipment.decisions import Outcome
from streams.modules.shipment.handler import ShipmentHandler
from streams.modules.shipment.outbox import OutboxRelay
from streams.postgres.migrate import migrate
from streams.settings import Settings
from tests.integration.harness import REPO, create_topics, read_all, unique

pytestmark = pytest.mark.integration

OCCURRED_AT = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
EVENT_TYPES = frozenset(
    {
        "PackageWasSent",
        "ProductWasOutOfStock",
        "ShipmentCancelled",
        "ShipmentCancellationRejected",
        "CommandRejected",
    }
)


@dataclass
class Shipments:
    """One test's world: its settings (unique topics and group) and a name tag for its rows."""

    settings: Settings
    tag: str

    def sku(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def order(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.database_url, autocommit=True)

    def set_stock(self, **levels: int) -> None:
        with self.db() as conn:
            for name, quantity in levels.items():
                store.set_stock(conn, self.sku(name), quantity)

    def stock(self, *names: str) -> dict[str, int]:
        with self.db() as conn:
            levels = store.stock_levels(conn, [self.sku(n) for n in names])
        return {name: levels.get(self.sku(name), 0) for name in names}

    def outbox(self) -> list[tuple[str, bytes, bool]]:
        """(message_id, value, published) of this test's outbox rows, in id order."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT message_id, value, published_at IS NOT NULL FROM outbox"
                " WHERE topic LIKE %s ORDER BY id",
                (self.settings.topic_prefix + "%",),
            ).fetchall()
        return [(m, bytes(v), p) for m, v, p in rows]

    def packages(self, order_id: str) -> list[tuple[str, Any]]:
        with self.db() as conn:
            rows = conn.execute(
                "SELECT package_id, items FROM packages WHERE order_id = %s", (order_id,)
            ).fetchall()
        return [(p, items) for p, items in rows]

    def cancellations(self, order_id: str) -> list[tuple[str, str]]:
        """(reason, message_id) of the order's recorded shipment cancellations."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT reason, message_id FROM shipment_cancellations WHERE order_id = %s",
                (order_id,),
            ).fetchall()
        return [(str(r), str(m)) for r, m in rows]

    def command(self, order: str, items: dict[str, int]) -> Envelope:
        """A SendPackage envelope for this test's ``order`` with ``items`` (sku name -> units)."""
        order_id = self.order(order)
        return Envelope.wrap(
            SendPackage(
                order_id=order_id,
                product_items=tuple(
                    ProductItem(product_id=self.sku(n), quantity=q, unit_price=Decimal("9.99"))
                    for n, q in items.items()
                ),
            ),
            message_id=unique("cmd"),
            occurred_at=OCCURRED_AT,
            correlation_id=order_id,
            causation_id=None,
        )

    def cancel(self, order: str, reason: str = "TimedOut") -> Envelope:
        """A CancelShipment envelope for this test's ``order``, with a fresh message id."""
        order_id = self.order(order)
        return Envelope.wrap(
            CancelShipment(order_id=order_id, reason=reason),
            message_id=unique("cancel"),
            occurred_at=OCCURRED_AT,
            correlation_id=order_id,
            causation_id=None,
        )

    def record(self, command: Envelope, offset: int = 0) -> Consumed:
        """The record as the handler's consumer gives it: on the partition its key owns."""
        key = command.correlation_id.encode()
        partition = owner_of(key, self.settings.topic_partitions)
        return Consumed(self.topic("shipments.commands"), partition, offset, key, encode(command))

    def events(self, expected: int, timeout: float = 60.0) -> list[Envelope]:
        records = read_all(self.settings, self.topic("shipments.events"), expected, timeout)
        return [decode(key, value, EVENT_TYPES) for key, value in records]


@pytest.fixture(scope="module")
def migrated(settings: Settings) -> Settings:
    migrate(settings.database_url)
    return settings


@pytest.fixture
def shipments(migrated: Settings) -> Iterator[Shipments]:
    tag = unique("ship")
    settings = migrated.model_copy(update={"topic_prefix": f"{tag}.", "app_id": tag})
    create_topics(
        settings,
        *(settings.topic(n) for n in ("shipments.commands", "shipments.events", "dead-letters")),
    )
    yield Shipments(settings, tag)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM outbox WHERE topic LIKE %s", (f"{tag}.%",))
        conn.execute("DELETE FROM packages WHERE order_id LIKE %s", (f"{tag}-%",))
        conn.execute("DELETE FROM shipment_cancellations WHERE order_id LIKE %s", (f"{tag}-%",))
        conn.execute("DELETE FROM inventory WHERE sku LIKE %s", (f"{tag}-%",))


@contextmanager
def running(settings: Settings, idle_interval: float = 0.05) -> Iterator[None]:
    """The handler and the relay, in threads of this process and wired as the runner wires
    them, until the block ends."""
    stop = threading.Event()
    relay = OutboxRelay(settings, idle_interval=idle_interval)
    handler = ShipmentHandler(settings, poll_timeout=0.2, on_commit=relay.wake)
    threads = [
        threading.Thread(target=handler.run, args=(stop,)),
        threading.Thread(target=relay.run, args=(stop,)),
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Any]:
    """Produce in order and return each record's (partition, offset)."""
    producer = Producer(settings.producer_config(**{"enable.idempotence": True}))
    placed: list[Any] = [None] * len(records)

    def delivered(i: int) -> Callable[[KafkaError | None, KafkaMessage], None]:
        def report(error: KafkaError | None, message: KafkaMessage) -> None:
            assert error is None, error
            placed[i] = (message.partition(), message.offset())

        return report

    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, on_delivery=delivered(i))
    assert producer.flush(30) == 0
    return placed


@dataclass
class ShipmentProcess:
    """``python -m streams.modules.shipment run ...`` as a real subprocess."""

    settings: Settings
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, fault: str | None = None) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TOPIC_PREFIX": self.settings.topic_prefix,
            "APP_ID": self.settings.app_id,
            "DATABASE_URL": self.settings.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
        }
        env.pop("ORDERFLOW_FAULT", None)
        if fault:
            env["ORDERFLOW_FAULT"] = fault
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.modules.shipment", "run", *args],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[ShipmentProcess]]:
    started: list[ShipmentProcess] = []
    yield started
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.process.kill()
            process.process.wait()


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


# Happy path


def test_a_package_with_enough_stock_is_sent_and_the_stock_decremented(
    shipments: Shipments, processes: list[ShipmentProcess], tmp_path: Path
) -> None:
    # Given 5 units of a product, set with `orderflow stock set`, and the module running as `run`
    result = CliRunner().invoke(cli, ["stock", "set", shipments.sku("mug"), "5"])
    assert result.exit_code == 0, result.output
    assert f"{shipments.sku('mug')}: 5" in result.output
    module = ShipmentProcess(shipments.settings, tmp_path / "run.log")
    processes.append(module)
    module.start()

    # When a SendPackage for 2 of them arrives
    command = shipments.command("order-1", {"mug": 2})
    produce(
        shipments.settings,
        shipments.topic("shipments.commands"),
        [(command.correlation_id.encode(), encode(command))],
    )

    # Then PackageWasSent is published, keyed by the order, with ids derived from the command
    [event] = shipments.events(expected=1)
    package_id = deterministic_id(command.message_id, "package")
    assert event.data == PackageWasSent(
        package_id=package_id,
        order_id=shipments.order("order-1"),
        product_items=command.data.product_items,  # type: ignore[union-attr]
    )
    assert event.message_id == deterministic_id(command.message_id, "PackageWasSent")
    assert (event.correlation_id, event.causation_id) == (
        command.correlation_id,
        command.message_id,
    )
    # stamped when the handler decided it, not with the command's time (codec.answer)
    assert event.occurred_at > command.occurred_at
    # And the stock went down by 2, and the package is stored
    assert shipments.stock("mug") == {"mug": 3}
    assert [p for p, _ in shipments.packages(shipments.order("order-1"))] == [package_id]
    eventually(lambda: all(published for *_, published in shipments.outbox()))
    # And the module stops cleanly on SIGTERM
    assert module.stop() == 0, module.tail()


# All or nothing


def test_out_of_stock_is_all_or_nothing(shipments: Shipments) -> None:
    # Given plenty of cups but only 1 saucer
    shipments.set_stock(cup=10, saucer=1)
    command = shipments.command("order-1", {"cup": 2, "saucer": 3})

    # When a package of 2 cups and 3 saucers is asked for
    with running(shipments.settings):
        produce(
            shipments.settings,
            shipments.topic("shipments.commands"),
            [(command.correlation_id.encode(), encode(command))],
        )
        [event] = shipments.events(expected=1)

    # Then ProductWasOutOfStock names the saucer with what was requested and available
    assert event.data == ProductWasOutOfStock(
        order_id=shipments.order("order-1"),
        product_id=shipments.sku("saucer"),
        requested=3,
        available=1,
    )
    assert event.message_id == deterministic_id(command.message_id, "ProductWasOutOfStock")
    # And neither product's stock changed, and no package exists
    assert shipments.stock("cup", "saucer") == {"cup": 10, "saucer": 1}
    assert shipments.packages(shipments.order("order-1")) == []


def test_a_product_with_no_stock_row_is_out_of_stock_with_zero_available(
    shipments: Shipments,
) -> None:
    # Given no stock row for the product
    handler = ShipmentHandler(shipments.settings)
    # When a package asks for it
    [outcome] = handler.process_batch([shipments.record(shipments.command("o", {"ghost": 1}))])
    handler.close()
    # Then it is out of stock with 0 available, and still no stock row exists
    assert outcome.event is not None
    assert outcome.event.data == ProductWasOutOfStock(
        order_id=shipments.order("o"), product_id=shipments.sku("ghost"), requested=1, available=0
    )
    with shipments.db() as conn:
        assert store.stock_levels(conn, [shipments.sku("ghost")]) == {}


# Idempotence


def test_a_duplicated_send_package_changes_nothing_the_second_time(shipments: Shipments) -> None:
    # Given 5 units and a handler
    shipments.set_stock(lamp=5)
    handler = ShipmentHandler(shipments.settings)
    command = shipments.command("order-1", {"lamp": 2})

    # When the same command arrives twice in one batch, and once more in a redelivered batch
    first = handler.process_batch([shipments.record(command, 0), shipments.record(command, 1)])
    again = handler.process_batch([shipments.record(command, 0)])
    handler.close()

    # Then only the first one did anything
    assert [o.result for o in [*first, *again]] == ["sent", "duplicate", "duplicate"]
    assert shipments.stock("lamp") == {"lamp": 3}
    assert len(shipments.packages(shipments.order("order-1"))) == 1
    assert [m for m, *_ in shipments.outbox()] == [
        deterministic_id(command.message_id, "PackageWasSent")
    ]


def test_a_second_send_package_for_an_order_with_a_package_is_rejected(
    shipments: Shipments,
) -> None:
    # Given an order whose package was sent
    shipments.set_stock(lamp=5)
    handler = ShipmentHandler(shipments.settings)
    handler.process_batch([shipments.record(shipments.command("order-1", {"lamp": 2}))])

    # When another SendPackage (a different message id) arrives for the same order
    other = shipments.command("order-1", {"lamp": 1})
    [outcome] = handler.process_batch([shipments.record(other, 1)])
    handler.close()

    # Then it is rejected and the stock is untouched by it
    assert outcome.result == "rejected"
    assert outcome.event is not None and isinstance(outcome.event.data, CommandRejected)
    assert outcome.event.data.command_message_id == other.message_id
    assert shipments.stock("lamp") == {"lamp": 3}
    assert len(shipments.packages(shipments.order("order-1"))) == 1


# Cancelling a shipment: the module decides whether the goods went out


def test_a_cancel_before_the_package_cancels_the_shipment_and_refuses_a_later_package(
    shipments: Shipments,
) -> None:
    # Given stock, and a CancelShipment that reaches the module before any SendPackage
    shipments.set_stock(lamp=5)
    handler = ShipmentHandler(shipments.settings)
    cancel = shipments.cancel("order-1", reason="TimedOut")

    # When it is processed, and the order's SendPackage comes after it
    [cancelled] = handler.process_batch([shipments.record(cancel, 0)])
    send = shipments.command("order-1", {"lamp": 2})
    [refused] = handler.process_batch([shipments.record(send, 1)])
    handler.close()

    # Then the shipment is cancelled, with an id derived from the command
    order_id = shipments.order("order-1")
    assert cancelled.result == "cancelled"
    assert cancelled.event is not None
    assert cancelled.event.data == ShipmentCancelled(order_id=order_id, reason="TimedOut")
    assert cancelled.event.message_id == deterministic_id(cancel.message_id, "ShipmentCancelled")
    assert cancelled.event.causation_id == cancel.message_id
    # And the later SendPackage is refused with CommandRejected, never shipped
    assert refused.result == "rejected"
    assert refused.event is not None
    assert refused.event.data == CommandRejected(
        command_type="SendPackage",
        command_message_id=send.message_id,
        reason=f"the shipment of order {order_id} was cancelled (TimedOut)",
        order_id=order_id,
    )
    assert shipments.stock("lamp") == {"lamp": 5}
    assert shipments.packages(order_id) == []
    assert shipments.cancellations(order_id) == [("TimedOut", cancel.message_id)]


def test_a_cancel_after_the_package_was_sent_is_rejected_with_its_package_id(
    shipments: Shipments,
) -> None:
    # Given an order whose package was sent
    shipments.set_stock(lamp=5)
    handler = ShipmentHandler(shipments.settings)
    [sent] = handler.process_batch([shipments.record(shipments.command("order-1", {"lamp": 2}))])
    assert sent.event is not None and isinstance(sent.event.data, PackageWasSent)

    # When its shipment is cancelled
    cancel = shipments.cancel("order-1")
    [outcome] = handler.process_batch([shipments.record(cancel, 1)])
    handler.close()

    # Then the cancellation is rejected, naming the package; nothing else changes
    order_id = shipments.order("order-1")
    assert outcome.result == "not_cancelled"
    assert outcome.event is not None
    assert outcome.event.data == ShipmentCancellationRejected(
        order_id=order_id,
        package_id=sent.event.data.package_id,
        reason=f"package {sent.event.data.package_id} was already sent",
    )
    assert outcome.event.message_id == deterministic_id(
        cancel.message_id, "ShipmentCancellationRejected"
    )
    assert shipments.stock("lamp") == {"lamp": 3}
    assert shipments.cancellations(order_id) == []


def test_a_duplicated_cancel_shipment_changes_nothing_the_second_time(
    shipments: Shipments,
) -> None:
    # Given a handler and a CancelShipment
    handler = ShipmentHandler(shipments.settings)
    cancel = shipments.cancel("order-1")

    # When it arrives twice in one batch, and once more in a redelivered batch
    first = handler.process_batch([shipments.record(cancel, 0), shipments.record(cancel, 1)])
    again = handler.process_batch([shipments.record(cancel, 0)])
    handler.close()

    # Then only the first one did anything: one cancellation, one event
    assert [o.result for o in [*first, *again]] == ["cancelled", "duplicate", "duplicate"]
    order_id = shipments.order("order-1")
    assert shipments.cancellations(order_id) == [("TimedOut", cancel.message_id)]
    assert [m for m, *_ in shipments.outbox()] == [
        deterministic_id(cancel.message_id, "ShipmentCancelled")
    ]


def test_a_cancel_sent_again_under_a_new_id_gets_the_same_answer_and_changes_nothing(
    shipments: Shipments,
) -> None:
    # Given a shipment cancelled by hand
    handler = ShipmentHandler(shipments.settings)
    first = shipments.cancel("order-1", reason="ManualCancellation")
    handler.process_batch([shipments.record(first, 0)])

    # When the process sends CancelShipment again after a timeout (a new message id)
    resent = shipments.cancel("order-1", reason="TimedOut")
    [outcome] = handler.process_batch([shipments.record(resent, 1)])
    handler.close()

    # Then it is answered ShipmentCancelled again, with the first reason, and the record stays
    order_id = shipments.order("order-1")
    assert outcome.result == "cancelled"
    assert outcome.event is not None
    assert outcome.event.data == ShipmentCancelled(order_id=order_id, reason="ManualCancellation")
    assert shipments.cancellations(order_id) == [("ManualCancellation", first.message_id)]


def test_a_refused_send_package_delivered_again_changes_nothing(shipments: Shipments) -> None:
    # Given a cancelled shipment and the SendPackage it refused
    shipments.set_stock(lamp=5)
    handler = ShipmentHandler(shipments.settings)
    send = shipments.command("order-1", {"lamp": 1})
    handler.process_batch([shipments.record(shipments.cancel("order-1"), 0)])
    [refused] = handler.process_batch([shipments.record(send, 1)])

    # When that SendPackage is delivered again
    [again] = handler.process_batch([shipments.record(send, 1)])
    handler.close()

    # Then it is a duplicate: no second rejection, no package, stock untouched
    assert (refused.result, again.result) == ("rejected", "duplicate")
    assert len(shipments.outbox()) == 2
    assert shipments.packages(shipments.order("order-1")) == []
    assert shipments.stock("lamp") == {"lamp": 5}


def test_commands_queued_behind_a_module_that_was_down_are_decided_in_their_order(
    shipments: Shipments,
) -> None:
    # Given two orders' commands queued while the module was down: order-a's SendPackage
    # and then its CancelShipment (the process timed out meanwhile), and order-b's
    # CancelShipment before a SendPackage of its own (sent again after a crash)
    shipments.set_stock(lamp=5)
    send_a = shipments.command("order-a", {"lamp": 2})
    cancel_a = shipments.cancel("order-a")
    cancel_b = shipments.cancel("order-b")
    send_b = shipments.command("order-b", {"lamp": 2})
    records = [(c.correlation_id.encode(), encode(c)) for c in (send_a, cancel_a, cancel_b, send_b)]
    produce(shipments.settings, shipments.topic("shipments.commands"), records)

    # When the module comes back
    with running(shipments.settings):
        events = shipments.events(expected=4)

    # Then order-a shipped and its cancellation was rejected; order-b was never shipped
    by_cause = {e.causation_id: e.data for e in events}
    assert isinstance(by_cause[send_a.message_id], PackageWasSent)
    assert isinstance(by_cause[cancel_a.message_id], ShipmentCancellationRejected)
    assert isinstance(by_cause[cancel_b.message_id], ShipmentCancelled)
    refused = by_cause[send_b.message_id]
    assert isinstance(refused, CommandRejected) and refused.command_type == "SendPackage"
    assert shipments.stock("lamp") == {"lamp": 3}
    assert shipments.packages(shipments.order("order-b")) == []
    # And each event is keyed by its order
    assert all(e.correlation_id == order_id_of_event(e) for e in events)


def order_id_of_event(event: Envelope) -> str:
    order_id = getattr(event.data, "order_id", None)
    assert isinstance(order_id, str)
    return order_id


# Outbox relay


def test_a_committed_batch_is_published_at_once_not_at_the_relays_next_poll(
    shipments: Shipments,
) -> None:
    # Given the handler and a relay that polls only every 60 s, both idle
    shipments.set_stock(lamp=5)
    command = shipments.command("order-1", {"lamp": 1})
    with running(shipments.settings, idle_interval=60.0):
        time.sleep(2.0)  # the relay's first, empty poll is over

        # When a SendPackage comes in
        sent = time.monotonic()
        produce(
            shipments.settings,
            shipments.topic("shipments.commands"),
            [(command.correlation_id.encode(), encode(command))],
        )

        # Then its event is published long before the next poll: the handler's commit woke
        # the relay
        [event] = shipments.events(expected=1, timeout=30.0)
        assert time.monotonic() - sent < 30.0
    assert isinstance(event.data, PackageWasSent)


# Outbox relay crash


def test_a_relay_killed_between_publish_and_mark_loses_nothing(
    shipments: Shipments, processes: list[ShipmentProcess], tmp_path: Path
) -> None:
    # Given five events in the outbox, none published
    shipments.set_stock(pen=100)
    handler = ShipmentHandler(shipments.settings)
    handler.process_batch(
        [shipments.record(shipments.command(f"order-{i}", {"pen": 1}), i) for i in range(5)]
    )
    handler.close()
    rows = shipments.outbox()
    expected_ids = {m for m, *_ in rows}
    assert len(expected_ids) == 5 and not any(published for *_, published in rows)

    # When the relay publishes them and is killed before it marks them
    relay = ShipmentProcess(shipments.settings, tmp_path / "relay.log")
    processes.append(relay)
    relay.start("--only", "relay", fault="relay_crash_after_publish")
    assert relay.wait(60) == 137, relay.tail()

    # Then the messages are on the topic, but the rows are still unpublished
    assert {e.message_id for e in shipments.events(expected=5)} == expected_ids
    assert not any(published for *_, published in shipments.outbox())

    # When the relay restarts
    relay.start("--only", "relay")
    eventually(lambda: all(published for *_, published in shipments.outbox()))
    assert relay.stop() == 0, relay.tail()

    # Then every row is published and marked, and the topic holds each id at least once,
    # every copy identical
    records = read_all(shipments.settings, shipments.topic("shipments.events"), expected=10)
    copies: dict[str, set[bytes]] = {}
    for _key, value in records:
        copies.setdefault(json.loads(value)["message_id"], set()).add(value)
    assert set(copies) == expected_ids
    assert all(len(values) == 1 for values in copies.values()), "duplicates must be identical"
    assert {value for _, value, _ in shipments.outbox()} == {
        value for values in copies.values() for value in values
    }


def test_a_handler_killed_before_its_offset_commit_changes_nothing_on_redelivery(
    shipments: Shipments, processes: list[ShipmentProcess], tmp_path: Path
) -> None:
    # Given 5 units, and a handler that dies after its DB commit, before its offset commit
    shipments.set_stock(vase=5)
    handler = ShipmentProcess(shipments.settings, tmp_path / "handler.log")
    processes.append(handler)
    handler.start("--only", "handler", fault="handler_crash_before_offset_commit")
    command = shipments.command("order-1", {"vase": 2})
    topic = shipments.topic("shipments.commands")
    [(partition, offset)] = produce(
        shipments.settings, topic, [(command.correlation_id.encode(), encode(command))]
    )
    assert handler.wait(60) == 137, handler.tail()
    assert shipments.stock("vase") == {"vase": 3}

    # When the handler restarts and the command is delivered again
    handler.start("--only", "handler")
    eventually(lambda: committed(shipments.settings, topic, partition) == offset + 1, 60)
    assert handler.stop() == 0, handler.tail()

    # Then the redelivery was a duplicate: one package, stock taken once, one outbox row
    assert "duplicate" in handler.tail()
    assert shipments.stock("vase") == {"vase": 3}
    assert len(shipments.packages(shipments.order("order-1"))) == 1
    assert len(shipments.outbox()) == 1


def committed(settings: Settings, topic: str, partition: int) -> int:
    """The shipment handler group's committed offset of one partition (-1001: none yet)."""
    consumer = Consumer(settings.confluent_config(**{"group.id": f"{settings.app_id}-shipments"}))
    try:
        [position] = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return position.offset
    finally:
        consumer.close()


# Dead letters


def test_malformed_commands_go_to_dead_letters_and_the_next_valid_one_is_processed(
    shipments: Shipments,
) -> None:
    # Given stock, and three malformed records followed by a valid command
    shipments.set_stock(book=1)
    valid = shipments.command("order-ok", {"book": 1})
    order_key = valid.correlation_id.encode()
    unknown = {**to_wire(valid), "type": "ShipEverything", "message_id": unique("cmd")}
    wrong_key = shipments.command("order-elsewhere", {"book": 1})
    malformed: list[tuple[bytes | None, bytes]] = [
        (order_key, b"{not json"),
        (order_key, json.dumps(unknown).encode()),
        (b"someone-else", encode(wrong_key)),
    ]
    commands = shipments.topic("shipments.commands")

    # When they arrive at the running handler
    with running(shipments.settings):
        placed = produce(shipments.settings, commands, [*malformed, (order_key, encode(valid))])
        letters = read_all(shipments.settings, shipments.topic("dead-letters"), expected=3)
        [event] = shipments.events(expected=1)

    # Then each malformed record is a dead letter with its reason, source and original key
    by_offset = {
        (r["source"]["partition"], r["source"]["offset"]): (key, r)
        for key, r in ((key, DeadLetter.from_bytes(value)) for key, value in letters)
    }
    assert set(by_offset) == set(placed[:3])
    reasons = []
    for (key, _value), where in zip(malformed, placed[:3], strict=True):
        letter_key, letter = by_offset[where]
        assert letter_key == key
        assert letter["source"]["topic"] == commands
        assert key is not None and letter["key"] == key.decode()
        reasons.append(letter["reason"])
    assert reasons[0].startswith("invalid JSON")
    assert "unknown message type 'ShipEverything'" in reasons[1]
    assert "is not the order id" in reasons[2]
    # And the valid command after them was processed
    assert isinstance(event.data, PackageWasSent)
    assert event.causation_id == valid.message_id
    assert shipments.stock("book") == {"book": 0}


# Poison commands: the database refuses a command's data


def test_a_poison_send_package_is_given_up_and_the_partition_moves_on(
    shipments: Shipments,
) -> None:
    # Given stock, and between two valid packages a SendPackage whose product id PostgreSQL
    # cannot store (a NUL byte: psycopg refuses it as a DataError)
    shipments.set_stock(lamp=5)
    first = shipments.command("order-1", {"lamp": 1})
    poison = shipments.command("order-2", {"bad\x00id": 1})
    last = shipments.command("order-3", {"lamp": 1})
    commands = shipments.topic("shipments.commands")
    records = [(c.correlation_id.encode(), encode(c)) for c in (first, poison, last)]

    # When the running handler takes them in
    with running(shipments.settings):
        placed = produce(shipments.settings, commands, records)
        [(_key, letter)] = read_all(shipments.settings, shipments.topic("dead-letters"), 1)
        events = shipments.events(expected=3)
        for partition, offset in placed:
            eventually(
                lambda p=partition, o=offset: committed(shipments.settings, commands, p) > o, 60
            )

    # Then the poison is a dead letter with the database's reason, after three attempts
    dead = DeadLetter.from_bytes(letter)
    where = placed[1]
    assert (dead["source"]["partition"], dead["source"]["offset"]) == where
    assert dead["reason"].startswith("poison command, given up after 3 attempts: DataError")
    assert "NUL" in dead["reason"]
    # And the module answered it with CommandRejected, and recorded the order as never shipped
    by_cause = {e.causation_id: e.data for e in events}
    rejected = by_cause[poison.message_id]
    assert isinstance(rejected, CommandRejected)
    assert rejected.command_type == "SendPackage"
    assert rejected.reason == dead["reason"]
    assert [r for r, _ in shipments.cancellations(shipments.order("order-2"))] == [dead["reason"]]
    # And the commands around it were decided as usual
    assert isinstance(by_cause[first.message_id], PackageWasSent)
    assert isinstance(by_cause[last.message_id], PackageWasSent)
    assert shipments.stock("lamp") == {"lamp": 3}


def test_a_poison_command_whose_order_cannot_be_stored_is_still_answered(
    shipments: Shipments,
) -> None:
    # Given a SendPackage for an order id too long for PostgreSQL's unique index on packages
    # (a real server-side refusal: "index row size exceeds btree maximum")
    shipments.set_stock(lamp=5)
    poison = shipments.command("x" + secrets.token_urlsafe(6000), {"lamp": 1})
    handler = ShipmentHandler(shipments.settings, retry_backoff=0.01)

    # When the handler processes it
    [outcome] = handler._process([shipments.record(poison)], threading.Event())
    handler.close()

    # Then it is dead-lettered, and rejected directly on the events topic (the database cannot
    # record even the rejection), with nothing left in the database
    assert outcome.result == "rejected"
    assert outcome.reason is not None and "ProgramLimitExceeded" in outcome.reason
    [(_key, letter)] = read_all(shipments.settings, shipments.topic("dead-letters"), 1)
    assert DeadLetter.from_bytes(letter)["reason"] == outcome.reason
    [event] = shipments.events(expected=1)
    assert isinstance(event.data, CommandRejected)
    assert event.causation_id == poison.message_id
    assert shipments.outbox() == []
    assert shipments.stock("lamp") == {"lamp": 5}


# Concurrency


def race(shipments: Shipments, commands: list[Envelope]) -> list[Outcome]:
    """Each command in its own thread, handler and connection, released together."""
    barrier = threading.Barrier(len(commands))
    outcomes: list[Outcome] = []

    def work(command: Envelope) -> None:
        handler = ShipmentHandler(shipments.settings)
        try:
            barrier.wait()
            outcomes.extend(handler.process_batch([shipments.record(command)]))
        finally:
            handler.close()

    threads = [threading.Thread(target=work, args=(command,)) for command in commands]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_two_packages_competing_for_the_last_units_never_drive_stock_negative(
    shipments: Shipments,
) -> None:
    for round_ in range(5):
        # Given 3 units of a and b
        a, b = f"a{round_}", f"b{round_}"
        shipments.set_stock(**{a: 3, b: 3})
        # (the two packages name the products in opposite orders: locking must not deadlock)
        commands = [
            shipments.command(f"order-{round_}-x", {a: 2, b: 2}),
            shipments.command(f"order-{round_}-y", {b: 2, a: 2}),
        ]

        # When two handlers process them at the same moment
        outcomes = race(shipments, commands)

        # Then exactly one is sent, the other is out of stock with what was left
        assert sorted(o.result for o in outcomes) == ["out_of_stock", "sent"]
        [short] = [o.event.data for o in outcomes if o.event and o.result == "out_of_stock"]
        assert isinstance(short, ProductWasOutOfStock)
        assert (short.requested, short.available) == (2, 1)
        assert shipments.stock(a, b) == {a: 1, b: 1}


def test_a_package_and_a_cancel_decided_at_the_same_moment_never_both_take_effect(
    shipments: Shipments,
) -> None:
    shipments.set_stock(lamp=100)
    for round_ in range(10):
        # Given one order's SendPackage and CancelShipment in two handlers at once (a rebalance)
        order = f"order-{round_}"
        send, cancel = shipments.command(order, {"lamp": 1}), shipments.cancel(order)

        # When both are decided at the same moment
        outcomes = {o.record.value: o.result for o in race(shipments, [send, cancel])}

        # Then either the package went out and the cancellation was rejected, or the shipment
        # was cancelled and the package refused; never a package and a cancellation
        results = (outcomes[encode(send)], outcomes[encode(cancel)])
        assert results in {("sent", "not_cancelled"), ("rejected", "cancelled")}, results
        order_id = shipments.order(order)
        shipped, cancelled = shipments.packages(order_id), shipments.cancellations(order_id)
        assert len(shipped) + len(cancelled) == 1, (shipped, cancelled)
    assert shipments.stock("lamp")["lamp"] == 100 - sum(
        len(shipments.packages(shipments.order(f"order-{n}"))) for n in range(10)
    )


# Migrations


def test_migrations_run_concurrently_and_twice_apply_each_file_once(migrated: Settings) -> None:
    # Given an empty schema of its own
    schema = unique("mig").replace("-", "_")
    url = f"{migrated.database_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(migrated.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        # When four workers migrate at once, and once more afterwards
        results: list[list[str]] = []
        threads = [threading.Thread(target=lambda: results.append(migrate(url))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        again = migrate(url)

        # Then exactly one of them applied every migration, and the rest found nothing to do
        applied = [r for r in results if r]
        assert len(results) == 4 and len(applied) == 1 and again == []
        with psycopg.connect(url) as conn:
            versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations")]
            tables = {
                t
                for (t,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
                )
            }
        assert versions == applied[0]
        assert {
            "inventory",
            "packages",
            "shipment_cancellations",
            "inbox",
            "outbox",
            "schema_migrations",
        } <= tables
    finally:
        with psycopg.connect(migrated.database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
