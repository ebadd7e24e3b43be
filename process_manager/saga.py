"""The stateless saga of the article this project comes from (its ``OrderSaga``), beside the
process manager: ``COORDINATION=saga`` runs it instead, on the same topics and contract.

A saga keeps nothing. It reacts to one event with one command, built from that event's data
alone (``SAGA``: event type -> command type), so its whole logic is the table below and a
builder per row. What it cannot do follows from that, and the demo shows it next to the process
manager on the same orders:

- no time: nothing ends an order whose payment gateway never answers (no timeouts);
- no memory: it cannot choose between discarding and refunding. It always asks for a discard
  on ``OrderCancelled``; when the payment had already settled the discard is refused, and the
  article's saga has no row for the refusal, so the money is kept. The process manager knows
  where the order is (``(DiscardingPayment, PaymentDiscardRejected) -> RefundPayment``, and a
  payment that succeeds after a cancellation is discarded or refunded, never recorded);
- no reaction to what the article's saga does not list: a declined payment (``PaymentFailed``)
  leaves the order initialized for good; an operator's ``CancelProcess`` and the shipment
  cancellation protocol have no saga at all.

Command ids are deterministic, ``deterministic_id(cause, command type)`` as the process manager
derives them, and the payment id is derived from the ``OrderInitialized`` the same way: a
redelivered event sends the same command again, which its receiver drops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aggregates.messages import (
    CancelOrder,
    CartFinalized,
    CompleteOrder,
    DiscardPayment,
    Envelope,
    InitOrder,
    Message,
    OrderCancelled,
    OrderInitialized,
    OrderPaymentRecorded,
    PackageWasSent,
    PaymentFinalized,
    ProductWasOutOfStock,
    RecordOrderPayment,
    RequestPayment,
    SendPackage,
    order_id_of,
)
from process_manager.commands import caused_by, payment_id_of

# fmt: off
SAGA: Final[dict[str, str]] = {
    # Happy path
    "CartFinalized":        "InitOrder",
    "OrderInitialized":     "RequestPayment",
    "PaymentFinalized":     "RecordOrderPayment",
    "OrderPaymentRecorded": "SendPackage",
    "PackageWasSent":       "CompleteOrder",
    # Compensation
    "ProductWasOutOfStock": "CancelOrder",
    "OrderCancelled":       "DiscardPayment",  # only when the order had a recorded payment
}
# fmt: on


def _init_order(cause: Envelope) -> Message | None:
    cart = cause.data
    assert isinstance(cart, CartFinalized)
    return InitOrder(
        order_id=cart.cart_id,
        client_id=cart.client_id,
        product_items=cart.product_items,
        total_price=cart.total_price,
        payment_method=cart.payment_method,
    )


def _request_payment(cause: Envelope) -> Message | None:
    order = cause.data
    assert isinstance(order, OrderInitialized)
    return RequestPayment(
        payment_id=payment_id_of(cause),
        order_id=order.order_id,
        amount=order.total_price,
        payment_method=order.payment_method,
    )


def _record_order_payment(cause: Envelope) -> Message | None:
    payment = cause.data
    assert isinstance(payment, PaymentFinalized)
    return RecordOrderPayment(
        order_id=payment.order_id, payment_id=payment.payment_id, finalized_at=payment.finalized_at
    )


def _send_package(cause: Envelope) -> Message | None:
    order = cause.data
    assert isinstance(order, OrderPaymentRecorded)
    return SendPackage(order_id=order.order_id, product_items=order.product_items)


def _complete_order(cause: Envelope) -> Message | None:
    package = cause.data
    assert isinstance(package, PackageWasSent)
    return CompleteOrder(order_id=package.order_id)


def _cancel_order(cause: Envelope) -> Message | None:
    shortage = cause.data
    assert isinstance(shortage, ProductWasOutOfStock)
    return CancelOrder(order_id=shortage.order_id, reason="ProductWasOutOfStock")


def _discard_payment(cause: Envelope) -> Message | None:
    cancelled = cause.data
    assert isinstance(cancelled, OrderCancelled)
    if cancelled.payment_id is None:
        return None  # nothing was paid, as far as this event tells
    return DiscardPayment(
        payment_id=cancelled.payment_id, order_id=cancelled.order_id, reason=cancelled.reason
    )


BUILDERS: Final[dict[str, Callable[[Envelope], Message | None]]] = {
    "InitOrder": _init_order,
    "RequestPayment": _request_payment,
    "RecordOrderPayment": _record_order_payment,
    "SendPackage": _send_package,
    "CompleteOrder": _complete_order,
    "CancelOrder": _cancel_order,
    "DiscardPayment": _discard_payment,
}


def react(cause: Envelope) -> tuple[Envelope, ...]:
    """The command ``cause`` makes the saga send (none for a type it has no row for)."""
    command_type = SAGA.get(cause.type)
    if command_type is None:
        return ()
    command = BUILDERS[command_type](cause)
    if command is None:
        return ()
    return (caused_by(command, cause, order_id_of(command)),)
