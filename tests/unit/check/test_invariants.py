"""The run checker's invariants, on hand-made event histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aggregates.messages import (
    CartFinalized,
    Envelope,
    Message,
    OrderCancelled,
    OrderCompleted,
    OrderInitialized,
    OrderPaymentRecorded,
    PackageWasSent,
    PaymentDiscarded,
    PaymentFinalized,
    PaymentRefunded,
    PaymentSettled,
    ProductItem,
    deterministic_id,
)
from process_manager import DEFAULT_TIMEOUTS
from streams.check import double_effects, order_violations, shipped_quantities, stock_violations
from streams.replay import Input

T0 = datetime(2026, 11, 26, tzinfo=UTC)
ORDER = "order-1"
ITEMS = (ProductItem(product_id="sku-1", quantity=2, unit_price=Decimal("5.00")),)
PAY = deterministic_id("m1", "payment_id")  # the id the process gives the payment


def history(*messages: Message) -> list[Input]:
    """Inputs in the given order, one second apart, each caused by the one before."""
    inputs = []
    for n, message in enumerate(messages):
        envelope = Envelope.wrap(
            message,
            message_id=f"m{n}",
            occurred_at=T0 + timedelta(seconds=n),
            correlation_id=ORDER,
            causation_id=f"c{n}",
        )
        inputs.append(Input(n, 0, n, ORDER, envelope))
    return inputs


FINALIZED = CartFinalized(cart_id=ORDER, client_id="c", product_items=ITEMS, total_price=10)
INITIALIZED = OrderInitialized(order_id=ORDER, client_id="c", product_items=ITEMS, total_price=10)
PAID = PaymentFinalized(payment_id=PAY, order_id=ORDER, amount=10, finalized_at=T0)
RECORDED = OrderPaymentRecorded(order_id=ORDER, payment_id=PAY, product_items=ITEMS)
SENT = PackageWasSent(package_id="pk", order_id=ORDER, product_items=ITEMS)
COMPLETED = OrderCompleted(order_id=ORDER)
OUT_OF_STOCK_CANCEL = OrderCancelled(order_id=ORDER, reason="ProductWasOutOfStock")


def test_a_completed_order_paid_and_shipped_once_is_fine() -> None:
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, SENT, COMPLETED)
    assert order_violations(ORDER, inputs, DEFAULT_TIMEOUTS) == []


def test_an_order_stuck_half_way_is_reported_as_not_terminal() -> None:
    inputs = history(FINALIZED, INITIALIZED)
    assert order_violations(ORDER, inputs, DEFAULT_TIMEOUTS) == [
        "order-1: not terminal, in AwaitingPayment"
    ]


def test_an_order_both_completed_and_cancelled_is_reported() -> None:
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, SENT, COMPLETED, OUT_OF_STOCK_CANCEL)
    assert "order-1: both completed and cancelled" in order_violations(
        ORDER, inputs, DEFAULT_TIMEOUTS
    )


def test_a_cancelled_order_whose_payment_was_kept_is_reported() -> None:
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, OUT_OF_STOCK_CANCEL)
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)
    assert any("discarded 0 and refunded 0 times" in v for v in violations)


def test_a_payment_both_discarded_and_refunded_is_reported() -> None:
    discarded = PaymentDiscarded(payment_id=PAY, order_id=ORDER)
    refunded = PaymentRefunded(payment_id=PAY, order_id=ORDER, amount=10)
    settled = PaymentSettled(payment_id=PAY, order_id=ORDER)
    inputs = history(
        FINALIZED, INITIALIZED, PAID, settled, RECORDED, OUT_OF_STOCK_CANCEL, discarded, refunded
    )
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)
    assert any("discarded 1 and refunded 1 times" in v for v in violations)


def test_a_refund_without_settlement_is_reported() -> None:
    refunded = PaymentRefunded(payment_id=PAY, order_id=ORDER, amount=10)
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, OUT_OF_STOCK_CANCEL, refunded)
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)
    assert "order-1: refunded without having settled first" in violations


def test_two_different_events_for_one_command_are_a_double_effect_but_copies_are_not() -> None:
    inputs = history(COMPLETED, COMPLETED)
    same_cause = [i.envelope.model_copy(update={"causation_id": "cmd"}) for i in inputs]
    assert double_effects(same_cause) == ["command cmd caused 2 different OrderCompleted events"]
    assert double_effects([same_cause[0], same_cause[0]]) == []


def test_stock_must_equal_the_seeded_quantity_minus_what_was_shipped_once() -> None:
    sent = history(SENT)[0].envelope
    shipped = shipped_quantities([sent, sent])  # an outbox row published twice ships once
    assert shipped == {"sku-1": 2}
    assert stock_violations({"sku-1": 10}, {"sku-1": 8}, shipped) == []
    assert stock_violations({"sku-1": 10}, {"sku-1": 6}, shipped) == [
        "sku-1: stock 6, but seeded 10 - shipped 2 = 8"
    ]
    assert stock_violations({}, {"sku-2": -1}, shipped) == ["sku-2: negative stock -1"]
