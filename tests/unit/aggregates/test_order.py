from datetime import UTC, datetime
from decimal import Decimal

import pytest

from aggregates import order
from aggregates.messages import (
    CancelOrder,
    CommandRejected,
    CompleteOrder,
    InitOrder,
    OrderCancelled,
    OrderCompleted,
    OrderInitialized,
    OrderPaymentRecorded,
    ProductItem,
    RecordOrderPayment,
)
from aggregates.order import CancelledOrder, CompletedOrder, InitializedOrder, NoOrder, PaidOrder
from tests.unit.aggregates.scenario import given

ORDER = "cart-42"
ITEMS = (ProductItem(product_id="book", quantity=2, unit_price=Decimal("19.99")),)
TOTAL = Decimal("39.98")
FINALIZED_AT = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)

initialized = OrderInitialized(
    order_id=ORDER, client_id="client-7", product_items=ITEMS, total_price=TOTAL
)
paid = OrderPaymentRecorded(order_id=ORDER, payment_id="pay-1", product_items=ITEMS)
completed = OrderCompleted(order_id=ORDER)
cancelled = OrderCancelled(order_id=ORDER, reason="TimedOut")

NONE: list[object] = []
INITIALIZED = [initialized]
PAID = [initialized, paid]
COMPLETED = [initialized, paid, completed]
CANCELLED = [initialized, cancelled]

init = InitOrder(order_id=ORDER, client_id="client-7", product_items=ITEMS, total_price=TOTAL)
record = RecordOrderPayment(order_id=ORDER, payment_id="pay-1", finalized_at=FINALIZED_AT)
complete = CompleteOrder(order_id=ORDER)
cancel = CancelOrder(order_id=ORDER, reason="ManualCancellation")


# Happy path


def test_initializing_an_order():
    state = given(order.decider).when(init).then([initialized])
    assert state == InitializedOrder(ORDER, "client-7", ITEMS, TOTAL)


def test_recording_the_payment_carries_the_product_items():
    state = given(order.decider, INITIALIZED).when(record).then([paid])
    assert state == PaidOrder(ORDER, "client-7", ITEMS, TOTAL, payment_id="pay-1")


def test_completing_a_paid_order():
    state = given(order.decider, PAID).when(complete).then([completed])
    assert state == CompletedOrder(order_id=ORDER)


# Compensation


def test_cancelling_an_unpaid_order_names_no_payment():
    state = (
        given(order.decider, INITIALIZED)
        .when(cancel)
        .then([OrderCancelled(order_id=ORDER, reason="ManualCancellation")])
    )
    assert state == CancelledOrder(order_id=ORDER, reason="ManualCancellation")


def test_cancelling_a_paid_order_names_its_payment():
    command = CancelOrder(order_id=ORDER, reason="ProductWasOutOfStock")
    state = (
        given(order.decider, PAID)
        .when(command)
        .then([OrderCancelled(order_id=ORDER, reason="ProductWasOutOfStock", payment_id="pay-1")])
    )
    assert state == CancelledOrder(order_id=ORDER, reason="ProductWasOutOfStock")


# Refused


def test_completing_an_unpaid_order_is_rejected():
    given(order.decider, INITIALIZED).when(complete).then_rejects("payment is not recorded")


@pytest.mark.parametrize(
    ("history", "command", "reason"),
    [
        (INITIALIZED, init, "InitOrder is not allowed on unpaid order cart-42"),
        (PAID, init, "InitOrder is not allowed on paid order"),
        (COMPLETED, init, "InitOrder is not allowed on completed order"),
        (CANCELLED, init, "InitOrder is not allowed on cancelled order"),
        (NONE, record, "RecordOrderPayment is not allowed on an order that was never"),
        (PAID, record, "RecordOrderPayment is not allowed on paid order"),
        (COMPLETED, record, "RecordOrderPayment is not allowed on completed order"),
        (CANCELLED, record, "RecordOrderPayment is not allowed on cancelled order"),
        (NONE, complete, "CompleteOrder is not allowed on an order that was never"),
        (COMPLETED, complete, "CompleteOrder is not allowed on completed order"),
        (CANCELLED, complete, "CompleteOrder is not allowed on cancelled order"),
        (NONE, cancel, "CancelOrder is not allowed on an order that was never initialized"),
        (COMPLETED, cancel, "CancelOrder is not allowed on completed order"),
        (CANCELLED, cancel, "CancelOrder is not allowed on cancelled order"),
    ],
    ids=lambda value: getattr(value, "type", None),
)
def test_a_command_out_of_place_is_rejected(history, command, reason):
    given(order.decider, history).when(command).then_rejects(reason)


# Evolve


def test_a_command_rejection_does_not_change_the_order():
    rejected = CommandRejected(command_type="CompleteOrder", command_message_id="m", reason="no")
    assert (
        given(order.decider, [*INITIALIZED, rejected]).state
        == given(order.decider, INITIALIZED).state
    )


def test_events_that_do_not_apply_leave_the_order_unchanged():
    assert order.evolve(NoOrder(), completed) == NoOrder()
    assert order.evolve(CompletedOrder(ORDER), cancelled) == CompletedOrder(ORDER)
