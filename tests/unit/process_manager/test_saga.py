"""The stateless saga: one command per event, from that event alone, and what that cannot do.

The last tests run whole orders through the saga and the real order and payment deciders
(with a warehouse that has the stock or not), the demo's kinds of order: the saga completes
and discards like the process manager, and leaves declined and silent payments unended and a
settled payment unrefunded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from aggregates import order, payment
from aggregates.decider import Rejected, handle
from aggregates.messages import (
    CartFinalized,
    Envelope,
    InitOrder,
    Message,
    OrderCancelled,
    OrderCompleted,
    OrderInitialized,
    PackageWasSent,
    PaymentDiscardRejected,
    PaymentFailed,
    PaymentMethod,
    PaymentSettled,
    ProductWasOutOfStock,
)
from process_manager import DEFAULT_TIMEOUTS, TRANSITIONS
from process_manager import handle as process_handle
from process_manager.commands import payment_id_of
from process_manager.saga import SAGA, react
from tests.unit.process_manager.scenario import CLIENT, ITEMS, ORDER, T0, TOTAL


def wrap(message: Message, message_id: str = "event-1") -> Envelope:
    return Envelope.wrap(
        message, message_id=message_id, occurred_at=T0, correlation_id=ORDER, causation_id="c"
    )


CART = CartFinalized(
    cart_id=ORDER,
    client_id=CLIENT,
    product_items=ITEMS,
    total_price=TOTAL,
    payment_method="card_declined",
)


def test_the_table_is_the_articles_seven_reactions() -> None:
    assert SAGA == {
        "CartFinalized": "InitOrder",
        "OrderInitialized": "RequestPayment",
        "PaymentFinalized": "RecordOrderPayment",
        "OrderPaymentRecorded": "SendPackage",
        "PackageWasSent": "CompleteOrder",
        "ProductWasOutOfStock": "CancelOrder",
        "OrderCancelled": "DiscardPayment",
    }


def test_a_finalized_cart_initializes_the_order_with_its_payment_method() -> None:
    (command,) = react(wrap(CART))
    assert command.type == "InitOrder"
    assert command.data == InitOrder(
        order_id=ORDER,
        client_id=CLIENT,
        product_items=ITEMS,
        total_price=TOTAL,
        payment_method="card_declined",
    )
    assert (command.causation_id, command.correlation_id, command.occurred_at) == (
        "event-1",
        ORDER,
        T0,
    )


def test_the_payment_is_requested_from_the_order_initialized_alone() -> None:
    event = wrap(
        OrderInitialized(
            order_id=ORDER,
            client_id=CLIENT,
            product_items=ITEMS,
            total_price=TOTAL,
            payment_method="card_no_response",
        )
    )
    (command,) = react(event)
    assert command.type == "RequestPayment"
    assert command.data.payment_id == payment_id_of(event)  # type: ignore[union-attr]
    assert command.data.amount == TOTAL  # type: ignore[union-attr]
    assert command.data.payment_method == "card_no_response"  # type: ignore[union-attr]


def test_a_cancelled_order_without_a_payment_sends_nothing() -> None:
    assert react(wrap(OrderCancelled(order_id=ORDER, reason="PaymentFailed"))) == ()


def test_a_cancelled_order_with_a_payment_asks_for_a_discard() -> None:
    cancelled = OrderCancelled(order_id=ORDER, reason="ProductWasOutOfStock", payment_id="p-1")
    (command,) = react(wrap(cancelled))
    assert command.type == "DiscardPayment"
    assert command.data.model_dump(exclude={"type"}) == {
        "payment_id": "p-1",
        "order_id": ORDER,
        "reason": "ProductWasOutOfStock",
    }


def test_an_out_of_stock_product_cancels_the_order() -> None:
    shortage = ProductWasOutOfStock(order_id=ORDER, product_id="book", requested=2, available=0)
    (command,) = react(wrap(shortage))
    assert (command.type, command.data.reason) == ("CancelOrder", "ProductWasOutOfStock")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "event",
    [
        PaymentFailed(payment_id="p-1", order_id=ORDER, reason="card_declined"),
        PaymentDiscardRejected(payment_id="p-1", order_id=ORDER, reason="already settled"),
        PaymentSettled(payment_id="p-1", order_id=ORDER),
        OrderCompleted(order_id=ORDER),
    ],
    ids=lambda event: event.type,
)
def test_an_event_without_a_row_sends_nothing(event: Message) -> None:
    assert react(wrap(event)) == ()


def test_the_same_event_twice_sends_the_same_command_twice() -> None:
    # Given an event delivered again: the saga remembers nothing, the id says it all
    first, again = react(wrap(CART)), react(wrap(CART))
    assert first == again
    assert react(wrap(CART, "event-2"))[0].message_id != first[0].message_id


def test_its_commands_carry_the_ids_the_process_manager_would_send() -> None:
    # So receivers drop the saga's command as a duplicate of the process manager's, and back
    (command,) = react(wrap(CART))
    assert TRANSITIONS[(None, "CartFinalized")].commands == ("InitOrder",)
    outcome = process_handle(None, wrap(CART), timeouts=DEFAULT_TIMEOUTS)
    assert outcome.commands == (command,)


# Whole orders through the saga and the real deciders


@dataclass
class World:
    """The saga, the order and payment deciders and a warehouse, joined by FIFO queues."""

    in_stock: bool
    order: order.Order = order.initial_state
    payment: payment.Payment = payment.initial_state
    events: deque[Envelope] = field(default_factory=deque)
    counter: int = 0

    def publish(self, messages: list[Message], cause: Envelope | None) -> None:
        for message in messages:
            self.counter += 1
            self.events.append(
                Envelope.wrap(
                    message,
                    message_id=f"e-{self.counter}",
                    occurred_at=T0,
                    correlation_id=ORDER,
                    causation_id=None if cause is None else cause.message_id,
                )
            )

    def run(self, method: PaymentMethod) -> World:
        self.publish([CART.model_copy(update={"payment_method": method})], None)
        while self.events:
            for command in react(self.events.popleft()):
                self.publish(self.execute(command), command)
        return self

    def execute(self, command: Envelope) -> list[Message]:
        message = command.data
        try:
            if command.type in {"InitOrder", "RecordOrderPayment", "CompleteOrder", "CancelOrder"}:
                events, self.order = handle(order.decider, self.order, message)  # type: ignore[arg-type]
                return list(events)
            if command.type in {"RequestPayment", "DiscardPayment"}:
                context = payment.Context(now=T0, settlement_delay=timedelta(seconds=30))
                pay = payment.decider(context)
                events, self.payment = handle(pay, self.payment, message)  # type: ignore[arg-type]
                return list(events)
        except Rejected:
            return []
        assert command.type == "SendPackage"
        if self.in_stock:
            return [PackageWasSent(package_id="k", order_id=ORDER, product_items=ITEMS)]
        return [ProductWasOutOfStock(order_id=ORDER, product_id="book", requested=2, available=0)]


def test_a_good_card_completes_the_order() -> None:
    world = World(in_stock=True).run("card_ok")
    assert isinstance(world.order, order.CompletedOrder)


def test_out_of_stock_cancels_the_order_and_discards_an_unsettled_payment() -> None:
    world = World(in_stock=False).run("card_ok")
    assert isinstance(world.order, order.CancelledOrder)
    assert isinstance(world.payment, payment.DiscardedPayment)


def test_out_of_stock_after_settlement_keeps_the_money() -> None:
    # The discard is refused, and the saga has no row for the refusal: no refund
    world = World(in_stock=False).run("card_settles_immediately")
    assert isinstance(world.order, order.CancelledOrder)
    assert isinstance(world.payment, payment.SettledPayment)


def test_a_declined_card_leaves_the_order_initialized_for_good() -> None:
    world = World(in_stock=True).run("card_declined")
    assert isinstance(world.order, order.InitializedOrder)
    assert isinstance(world.payment, payment.FailedPayment)


def test_a_silent_gateway_leaves_the_order_waiting_for_good() -> None:
    world = World(in_stock=True).run("card_no_response")
    assert isinstance(world.order, order.InitializedOrder)
    assert isinstance(world.payment, payment.PendingPayment)
