"""The commands the process sends, each built from the process record alone.

A command's name in ``TRANSITIONS`` is its wire type; ``build`` fills its data. Every command
envelope has a deterministic id, ``deterministic_id(cause, type)``, the order id as its
correlation id, the cause as its causation id, and the cause's time: inputs only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aggregates.messages import (
    CancellationReason,
    CancelOrder,
    CancelShipment,
    CompleteOrder,
    DiscardPayment,
    Envelope,
    InitOrder,
    Message,
    RecordOrderPayment,
    RefundPayment,
    RequestPayment,
    SendPackage,
    deterministic_id,
)
from process_manager.process import Process


def _init_order(p: Process) -> Message:
    return InitOrder(
        order_id=p.order_id,
        client_id=p.client_id,
        product_items=p.product_items,
        total_price=p.total_price,
        payment_method=p.payment_method,
    )


def _request_payment(p: Process) -> Message:
    return RequestPayment(
        payment_id=_payment_id(p),
        order_id=p.order_id,
        amount=p.total_price,
        payment_method=p.payment_method,
    )


def _record_order_payment(p: Process) -> Message:
    if p.payment_finalized_at is None:
        raise ValueError(f"process {p.order_id} records a payment that was never finalized")
    return RecordOrderPayment(
        order_id=p.order_id, payment_id=_payment_id(p), finalized_at=p.payment_finalized_at
    )


def _send_package(p: Process) -> Message:
    return SendPackage(order_id=p.order_id, product_items=p.product_items)


def _cancel_shipment(p: Process) -> Message:
    return CancelShipment(order_id=p.order_id, reason=_reason(p))


def _complete_order(p: Process) -> Message:
    return CompleteOrder(order_id=p.order_id)


def _cancel_order(p: Process) -> Message:
    return CancelOrder(order_id=p.order_id, reason=_reason(p))


def _discard_payment(p: Process) -> Message:
    return DiscardPayment(payment_id=_payment_id(p), order_id=p.order_id, reason=_reason(p))


def _refund_payment(p: Process) -> Message:
    return RefundPayment(payment_id=_payment_id(p), order_id=p.order_id, reason=_reason(p))


BUILDERS: Final[dict[str, Callable[[Process], Message]]] = {
    "InitOrder": _init_order,
    "RequestPayment": _request_payment,
    "RecordOrderPayment": _record_order_payment,
    "SendPackage": _send_package,
    "CancelShipment": _cancel_shipment,
    "CompleteOrder": _complete_order,
    "CancelOrder": _cancel_order,
    "DiscardPayment": _discard_payment,
    "RefundPayment": _refund_payment,
}


def build(command_type: str, process: Process, cause: Envelope) -> Envelope:
    """The envelope of the ``command_type`` command that ``cause`` makes ``process`` send."""
    return caused_by(BUILDERS[command_type](process), cause, process.order_id)


def caused_by(command: Message, cause: Envelope, correlation_id: str) -> Envelope:
    """``command`` as ``cause`` makes it send, by the process manager or the saga: its id
    derived from the cause's id and its type, its time the cause's."""
    return Envelope.wrap(
        command,
        message_id=deterministic_id(cause.message_id, command.type),
        occurred_at=cause.occurred_at,
        correlation_id=correlation_id,
        causation_id=cause.message_id,
    )


def payment_id_of(order_initialized: Envelope) -> str:
    """The payment id of an order, derived from its ``OrderInitialized``."""
    return deterministic_id(order_initialized.message_id, "payment_id")


def _payment_id(p: Process) -> str:
    if p.payment_id is None:
        raise ValueError(f"process {p.order_id} has no payment")
    return p.payment_id


def _reason(p: Process) -> CancellationReason:
    if p.cancellation_reason is None:
        raise ValueError(f"process {p.order_id} compensates without a cancellation reason")
    return p.cancellation_reason
