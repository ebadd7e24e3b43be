"""The order process end to end: real workers, real broker, real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings
from tests.integration.flows import (
    cancel_process,
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
    produce,
    read_all,
    unique,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16070


@pytest.fixture
def system(settings: Settings, services: list[Service], tmp_path: Path) -> Settings:
    """One worker (process manager and modules) on fresh topics, with short timeouts."""
    isolated, env = isolated_settings(settings)
    # Settlement well after the flows end, so an out-of-stock discard finds it unsettled.
    env |= {"PROCESS_TIMEOUT_ALL_S": "4", "PAYMENT_SETTLEMENT_DELAY_S": "60"}
    worker = faust_worker("streams.worker", env, tmp_path / "w1", WEB_PORT)
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
    payments = envelopes(read_all(system, system.topic("payments.events"), expected=100, timeout=3))
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
        records = read_all(system, system.topic(topic), expected=10_000, timeout=3)
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
        events = envelopes(read_all(system, system.topic(topic), expected=10_000, timeout=3))
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
