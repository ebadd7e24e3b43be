"""The orders read model's projection: forward only, so any interleaving gives the same row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given as hypothesis_given
from hypothesis import strategies as st

from aggregates.messages import (
    CartFinalized,
    Envelope,
    Message,
    OrderCancelled,
    OrderCompleted,
    OrderInitialized,
    OrderPaymentRecorded,
    PackageWasSent,
    PaymentDiscardRejected,
    PaymentFinalized,
    PaymentRefunded,
    PaymentRequested,
    PaymentSettled,
    ProductAdded,
    ProductItem,
)
from streams.read_model.projection import OrderView, project

ORDER = "cart-7"
PAY = {"payment_id": "pay-1", "order_id": ORDER}
ITEMS = (ProductItem(product_id="book", quantity=2, unit_price=Decimal("10.00")),)
T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def events(*messages: Message) -> list[Envelope]:
    return [
        Envelope.wrap(
            m,
            message_id=f"e-{n}",
            occurred_at=T0 + timedelta(seconds=n),
            correlation_id=ORDER,
            causation_id=None,
        )
        for n, m in enumerate(messages)
    ]


CART = CartFinalized(
    cart_id=ORDER, client_id="c-1", product_items=ITEMS, total_price=Decimal("20.00")
)
INIT = OrderInitialized(
    order_id=ORDER, client_id="c-1", product_items=ITEMS, total_price=Decimal("20.00")
)
FINALIZED = PaymentFinalized(**PAY, amount=Decimal("20.00"), finalized_at=T0, settles_at=T0)
HAPPY = events(
    CART,
    INIT,
    PaymentRequested(**PAY, amount=Decimal("20.00")),
    FINALIZED,
    OrderPaymentRecorded(order_id=ORDER, payment_id="pay-1", product_items=ITEMS),
    PackageWasSent(package_id="pkg", order_id=ORDER, product_items=ITEMS),
    OrderCompleted(order_id=ORDER),
)
REFUNDED = events(
    CART,
    INIT,
    FINALIZED,
    PaymentSettled(**PAY),
    OrderCancelled(order_id=ORDER, reason="ProductWasOutOfStock", payment_id="pay-1"),
    PaymentDiscardRejected(**PAY, reason="already settled"),
    PaymentRefunded(**PAY, amount=Decimal("20.00")),
)


def fold(envelopes: list[Envelope]) -> OrderView | None:
    view: OrderView | None = None
    for envelope in envelopes:
        view = project(view, envelope) or view
    return view


def test_a_completed_order_shows_its_whole_story() -> None:
    assert fold(HAPPY) == OrderView(
        order_id=ORDER,
        client_id="c-1",
        total_price=Decimal("20.00"),
        currency="EUR",
        state="completed",
        payment_status="finalized",
        payment_id="pay-1",
        created_at=T0,
        updated_at=T0 + timedelta(seconds=6),
        shipped_at=T0 + timedelta(seconds=5),
        completed_at=T0 + timedelta(seconds=6),
    )


def test_a_refunded_order_is_cancelled_with_its_reason_and_refunded() -> None:
    view = fold(REFUNDED)
    assert view is not None
    assert (view.state, view.payment_status) == ("cancelled", "refunded")
    assert view.cancellation_reason == "ProductWasOutOfStock"
    assert view.cancelled_at == T0 + timedelta(seconds=4)
    assert view.completed_at is None


def test_events_the_read_model_does_not_show_change_nothing() -> None:
    cart_event = events(
        ProductAdded(cart_id=ORDER, product_id="b", quantity=1, unit_price=Decimal("1.00"))
    )
    assert project(None, cart_event[0]) is None


def test_an_event_that_arrives_twice_changes_nothing() -> None:
    view = fold(REFUNDED)
    for envelope in REFUNDED:
        assert (project(view, envelope) or view) == view


def test_a_late_payment_event_does_not_move_the_status_back() -> None:
    view = fold(REFUNDED)
    late = events(FINALIZED)[0].model_copy(update={"message_id": "late"})
    after = project(view, late)
    assert after is not None and after.payment_status == "refunded"


@hypothesis_given(st.permutations(HAPPY), st.permutations(REFUNDED))
def test_any_interleaving_of_the_topics_gives_the_same_row(
    happy: list[Envelope], refunded: list[Envelope]
) -> None:
    assert fold(happy) == fold(HAPPY)
    assert fold(refunded) == fold(REFUNDED)
