"""The order process end to end: real workers, real broker, real PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from aggregates.messages import CancelShipment
from streams.settings import Settings
from tests.integration.flows import (
    cancel_process,
    get_process,
    history_types,
    place_order,
    stock,
    stock_of,
    wait_terminal,
)
from tests.integration.harness import (
    Service,
    envelopes,
    faust_worker,
    isolated_settings,
    module_runner,
    produce,
    produce_raw,
    read_all,
    read_to_end,
    unique,
    wire,
)
from tests.integration.malformed import malformed_records

pytestmark = pytest.mark.integration

WEB_PORT = 16070


@pytest.fixture
def system(settings: Settings, services: list[Service], tmp_path: Path) -> Settings:
    """One worker (process manager and modules) on fresh topics, with short timeouts."""
    isolated, env = isolated_settings(settings)
    # Settlement well after the flows end, so an out-of-stock discard finds it unsettled.
    env |= {"PROCESS_TIMEOUT_ALL_S": "4", "PAYMENT_SETTLEMENT_DELAY_S": "60"}
    worker = faust_worker("streams.process.worker", env, tmp_path / "w1", WEB_PORT)
    services.append(worker)
    worker.start()
    return isolated


def test_the_happy_path_completes_the_order_and_ships_once(system: Settings) -> None:
    # Given stock for the product
    sku = unique("sku")
    stock(system, {sku: 5})

    # When a customer pays with a good card
    order_id = unique("order")
    place_order(system, order_id, "card_ok", [(sku, 2)])

    # Then the order completes, the stock was taken once
    process = wait_terminal(WEB_PORT, order_id)
    assert process["state"] == "Completed"
    assert history_types(process) == [
        "CartFinalized",
        "OrderInitialized",
        "PaymentFinalized",
        "OrderPaymentRecorded",
        "PackageWasSent",
        "OrderCompleted",
    ]
    assert stock_of(system, sku) == 3


def test_a_declined_payment_cancels_the_order(system: Settings) -> None:
    # Given a cart paid with a card that is declined
    order_id = unique("order")
    place_order(system, order_id, "card_declined", [("sku-x", 1)])

    # Then the process ends cancelled, after the payment failed
    process = wait_terminal(WEB_PORT, order_id)
    assert process["state"] == "Cancelled"
    assert process["cancellation_reason"] == "PaymentFailed"
    assert history_types(process) == [
        "CartFinalized",
        "OrderInitialized",
        "PaymentFailed",
        "OrderCancelled",
    ]


def test_out_of_stock_after_payment_cancels_and_discards_the_payment(system: Settings) -> None:
    # Given a product that is not in stock
    sku = unique("sku")
    stock(system, {sku: 1})

    # When a customer pays for more than there is
    order_id = unique("order")
    place_order(system, order_id, "card_ok", [(sku, 2)])

    # Then the order is cancelled and the unsettled payment discarded; stock is untouched
    process = wait_terminal(WEB_PORT, order_id)
    assert process["state"] == "Cancelled"
    assert process["cancellation_reason"] == "ProductWasOutOfStock"
    assert history_types(process)[-3:] == [
        "ProductWasOutOfStock",
        "OrderCancelled",
        "PaymentDiscarded",
    ]
    assert stock_of(system, sku) == 1


def test_out_of_stock_after_settlement_refunds_the_payment(system: Settings) -> None:
    # Given a product that is not in stock, and a card that settles at once
    sku = unique("sku")
    order_id = unique("order")
    place_order(system, order_id, "card_settles_immediately", [(sku, 1)])

    # Then the discard is rejected and the payment refunded, once
    process = wait_terminal(WEB_PORT, order_id)
    assert process["state"] == "Cancelled"
    assert history_types(process)[-3:] == [
        "OrderCancelled",
        "PaymentDiscardRejected",
        "PaymentRefunded",
    ]
    payments = envelopes(read_to_end(system, system.topic("payments.events")))
    refunds = [e for e in payments if e.type == "PaymentRefunded" and e.correlation_id == order_id]
    assert len(refunds) == 1


def test_a_payment_that_never_answers_times_out_and_is_discarded(system: Settings) -> None:
    # Given a cart paid with a card whose gateway never answers
    order_id = unique("order")
    place_order(system, order_id, "card_no_response", [("sku-x", 1)])

    # Then the timeout cancels the order and discards the payment
    process = wait_terminal(WEB_PORT, order_id, timeout=60)
    assert process["state"] == "Cancelled"
    assert process["cancellation_reason"] == "TimedOut"
    assert history_types(process)[-3:] == ["ProcessTimedOut", "OrderCancelled", "PaymentDiscarded"]


def test_an_operator_cancels_a_stalled_process_by_hand(system: Settings) -> None:
    # Given a process waiting for a payment that never answers
    order_id = unique("order")
    place_order(system, order_id, "card_no_response", [("sku-x", 1)])
    wait_for_state(order_id, "AwaitingPayment")

    # When an operator cancels it
    cancel_process(system, order_id)

    # Then it is cancelled by hand, with the payment discarded
    process = wait_terminal(WEB_PORT, order_id)
    assert process["cancellation_reason"] == "ManualCancellation"
    assert history_types(process)[-3:] == ["CancelProcess", "OrderCancelled", "PaymentDiscarded"]


@pytest.fixture
def patient(settings: Settings, services: list[Service], tmp_path: Path) -> Settings:
    """Like ``system``, but a shipment is waited for longer than the shipment module's retries
    of a poison command take, so that its answer, not a timeout, decides."""
    isolated, env = isolated_settings(settings)
    env |= {
        "PROCESS_TIMEOUT_ALL_S": "4",
        "PROCESS_TIMEOUTS": json.dumps({"AwaitingShipment": 60}),
        "PAYMENT_SETTLEMENT_DELAY_S": "60",
    }
    worker = faust_worker("streams.process.worker", env, tmp_path / "w1", WEB_PORT)
    services.append(worker)
    worker.start()
    return isolated


def test_a_poison_send_package_is_dead_lettered_and_its_order_cancelled_and_refunded(
    patient: Settings,
) -> None:
    # Given a paid, settled order for a product id PostgreSQL cannot store (a NUL byte)
    order_id = unique("order")
    place_order(patient, order_id, "card_settles_immediately", [("lamp\x00", 1)])

    # When the shipment module gives its SendPackage up
    process = wait_terminal(WEB_PORT, order_id)

    # Then the command is a dead letter with the database's reason
    letters = [json.loads(v) for _k, v in read_to_end(patient, patient.topic("dead-letters"))]
    [letter] = [d for d in letters if d["key"] == order_id]
    assert letter["source"]["topic"] == patient.topic("shipments.commands")
    assert letter["reason"].startswith("poison command, given up after 3 attempts: DataError")
    # And the process, as the table says, asked the module to cancel the shipment, cancelled
    # the order for ShipmentRefused and refunded the settled payment
    assert process["state"] == "Cancelled", process["history"]
    assert process["cancellation_reason"] == "ShipmentRefused"
    assert history_types(process)[-5:] == [
        "CommandRejected",
        "ShipmentCancelled",
        "OrderCancelled",
        "PaymentDiscardRejected",
        "PaymentRefunded",
    ]


def test_duplicated_events_change_nothing(system: Settings) -> None:
    # Given a completed order
    sku = unique("sku")
    stock(system, {sku: 5})
    order_id = unique("order")
    place_order(system, order_id, "card_ok", [(sku, 1)])
    before = wait_terminal(WEB_PORT, order_id)

    # When every event of the order is delivered again
    again = []
    for topic in ("carts.events", "orders.events", "payments.events", "shipments.events"):
        records = read_to_end(system, system.topic(topic))
        again += [(topic, r) for r in records if r[0] == order_id.encode()]
    for topic, record in again:
        produce(system, system.topic(topic), [record])
    # and a marker message shows the worker has read past them
    marker = unique("order")
    place_order(system, marker, "card_declined", [(sku, 1)])
    wait_terminal(WEB_PORT, marker)

    # Then the process is unchanged and the stock was taken once
    after = wait_terminal(WEB_PORT, order_id)
    assert after["history"] == before["history"]
    assert stock_of(system, sku) == 4
    # (the replayed copies share their message ids with the originals: no new effect appeared)
    for topic, effect in [
        ("orders.events", "OrderCompleted"),
        ("shipments.events", "PackageWasSent"),
    ]:
        events = envelopes(read_to_end(system, system.topic(topic)))
        ids = {e.message_id for e in events if e.type == effect and e.correlation_id == order_id}
        assert len(ids) == 1, f"{effect} happened {len(ids)} times"


def wait_for_state(order_id: str, state: str, timeout: float = 30.0) -> None:
    import time

    from tests.integration.flows import get_process

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process = get_process(WEB_PORT, order_id)
        if process is not None and process["state"] == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"{order_id} never reached {state}")


def test_malformed_events_become_dead_letters_and_orders_still_complete(system: Settings) -> None:
    # Given malformed records on an events topic and on the operators' topic
    order_id = unique("order")
    bad = malformed_records(order_id)
    for topic in ("orders.events", "processes.commands"):
        produce_raw(system, system.topic(topic), [(key, value) for _, key, value in bad])

    # When a valid order follows them
    sku = unique("sku")
    stock(system, {sku: 1})
    place_order(system, order_id, "card_ok", [(sku, 1)])

    # Then it completes, and every bad record is a dead letter naming its source topic
    assert wait_terminal(WEB_PORT, order_id)["state"] == "Completed"
    expected = 2 * len(bad)
    letters = read_all(system, system.topic("dead-letters"), expected=expected, timeout=30)
    sources = sorted(json.loads(value)["source"]["topic"] for _, value in letters)
    assert sources == sorted(
        [system.topic("orders.events")] * len(bad) + [system.topic("processes.commands")] * len(bad)
    )


def test_two_workers_share_the_orders_and_survive_one_being_killed(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given two workers on the same topics
    isolated, env = isolated_settings(settings)
    # Timeouts longer than the outage: this test is about ownership, not about timeouts.
    env |= {"PROCESS_TIMEOUT_ALL_S": "90", "PAYMENT_SETTLEMENT_DELAY_S": "60"}
    first = faust_worker("streams.process.worker", env, tmp_path / "w1", WEB_PORT + 1)
    second = faust_worker("streams.process.worker", env, tmp_path / "w2", WEB_PORT + 2)
    services.extend([first, second])
    first.start()
    second.start()
    sku = unique("sku")
    stock(isolated, {sku: 100})

    # When orders flow, and one worker is killed with SIGKILL in the middle, then restarted
    methods = ["card_ok", "card_declined", "card_settles_immediately", "card_ok"]
    orders = {unique("order"): methods[i % len(methods)] for i in range(20)}
    for n, (order_id, method) in enumerate(orders.items()):
        place_order(isolated, order_id, method, [(sku, 1)])  # type: ignore[arg-type]
        if n == 10:
            second.kill()
    second.start()

    # Then every order ends as its payment method says, whichever worker owned it
    for order_id, method in orders.items():
        process = wait_terminal(WEB_PORT + 1, order_id, timeout=120)
        expected = "Cancelled" if method == "card_declined" else "Completed"
        assert process["state"] == expected, (order_id, process["history"])
    # and each completed order took its stock once
    assert stock_of(isolated, sku) == 100 - sum(m != "card_declined" for m in orders.values())


# Cancelling while the shipment module is down: the module decides whether the goods went out

SPLIT_PORT = WEB_PORT + 3


@dataclass
class Split:
    """A worker without module handlers, a runner with every module but shipments, and the
    shipment module, started when a test says so."""

    settings: Settings
    shipments: Service

    def wait_for(self, order_id: str, state: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (process := get_process(SPLIT_PORT, order_id)) is None or process["state"] != state:
            assert time.monotonic() < deadline, f"{order_id} never reached {state}: {process}"
            time.sleep(0.2)

    def order_events(self, order_id: str) -> list[str]:
        """The types of every event of ``order_id`` on the four events topics."""
        found = []
        for topic in ("orders.events", "payments.events", "shipments.events"):
            events = envelopes(read_to_end(self.settings, self.settings.topic(topic)))
            found += [e.type for e in events if e.correlation_id == order_id]
        return found


@pytest.fixture
def split(settings: Settings, services: list[Service], tmp_path: Path) -> Split:
    isolated, env = isolated_settings(settings)
    env |= {
        "WORKER_RUNS_MODULES": "false",
        "PROCESS_TIMEOUT_ALL_S": "4",
        "PAYMENT_SETTLEMENT_DELAY_S": "60",
    }
    worker = faust_worker("streams.process.worker", env, tmp_path / "w", SPLIT_PORT)
    modules = module_runner(env, tmp_path / "m", "carts,orders,payments,outbox")
    shipments = module_runner(env, tmp_path / "s", "shipments", name="shipments")
    services.extend([worker, modules, shipments])
    worker.start()
    modules.start()
    return Split(isolated, shipments)


def test_a_timeout_while_the_shipment_module_is_down_completes_the_order_it_shipped(
    split: Split,
) -> None:
    # Given stock, and a paid order whose SendPackage waits for a shipment module that is down
    sku = unique("sku")
    stock(split.settings, {sku: 5})
    order_id = unique("order")
    place_order(split.settings, order_id, "card_ok", [(sku, 2)])
    split.wait_for(order_id, "AwaitingShipment")

    # When its shipment deadline passes, and only then the module comes back
    split.wait_for(order_id, "CancellingShipment")
    split.shipments.start()

    # Then the module ships the queued package and rejects the cancellation: the order completes
    process = wait_terminal(SPLIT_PORT, order_id)
    assert process["state"] == "Completed", process["history"]
    assert process["cancellation_reason"] is None
    assert history_types(process)[3:6] == [
        "OrderPaymentRecorded",
        "ProcessTimedOut",
        "PackageWasSent",
    ]
    # And the goods went out once, and the order was never cancelled nor its money given back
    assert stock_of(split.settings, sku) == 3
    events = split.order_events(order_id)
    assert events.count("PackageWasSent") == 1
    assert "ShipmentCancellationRejected" in events
    assert not {"OrderCancelled", "PaymentDiscarded", "PaymentRefunded"} & set(events)


def test_a_shipment_cancelled_before_its_package_cancels_the_order_and_discards_the_payment(
    split: Split,
) -> None:
    # Given a CancelShipment for an order that reaches the shipment module before the order's
    # SendPackage does (both queued while the module is down)
    sku = unique("sku")
    stock(split.settings, {sku: 5})
    order_id = unique("order")
    early = CancelShipment(order_id=order_id, reason="TimedOut")
    produce(split.settings, split.settings.topic("shipments.commands"), [wire(early)])
    place_order(split.settings, order_id, "card_ok", [(sku, 2)])
    split.wait_for(order_id, "AwaitingShipment")

    # When the module comes back
    split.shipments.start()

    # Then the shipment is cancelled and the SendPackage refused; the process asks the module
    # about the refusal, and the order is cancelled and its payment discarded; nothing shipped
    process = wait_terminal(SPLIT_PORT, order_id)
    assert process["state"] == "Cancelled", process["history"]
    assert process["cancellation_reason"] == "ShipmentRefused"
    assert history_types(process)[-4:] == [
        "CommandRejected",
        "ShipmentCancelled",
        "OrderCancelled",
        "PaymentDiscarded",
    ]
    assert stock_of(split.settings, sku) == 5
    events = split.order_events(order_id)
    assert "PackageWasSent" not in events
    assert events.count("CommandRejected") == 1  # the refused SendPackage
