"""given(triggers).when(trigger) for the order process: messages built from the process itself.

Each trigger of ``TRANSITIONS`` has a factory that makes a fitting message for a process:
payment events name its payment, a ``ProcessTimedOut`` names its deadline (and arrives at
it), a ``CommandRejected(X)`` rejects the owed ``X``. ``PATH_TO`` reaches every state.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aggregates.messages import (
    CancelProcess,
    CartFinalized,
    CommandRejected,
    Envelope,
    Message,
    OrderCancelled,
    OrderCompleted,
    OrderInitialized,
    OrderPaymentRecorded,
    PackageWasSent,
    PaymentDiscarded,
    PaymentDiscardRejected,
    PaymentFailed,
    PaymentFinalized,
    PaymentMethod,
    PaymentRefunded,
    PaymentSettled,
    ProcessTimedOut,
    ProductItem,
    ProductWasOutOfStock,
    ShipmentCancellationRejected,
    ShipmentCancelled,
)
from process_manager import DEFAULT_TIMEOUTS, Outcome, Process, State, handle

ORDER = "cart-42"
CLIENT = "client-7"
ITEMS = (ProductItem(product_id="book", quantity=2, unit_price=Decimal("19.99")),)
TOTAL = Decimal("39.98")
T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=30)
TIMEOUTS = DEFAULT_TIMEOUTS


def message(process: Process | None, trigger: str, method: PaymentMethod = "card_ok") -> Message:
    """A message that stands for ``trigger`` and concerns ``process``."""
    payment_id = process.payment_id if process and process.payment_id else "no-payment"
    pay = {"payment_id": payment_id, "order_id": ORDER}
    if trigger.startswith("CommandRejected("):
        command_type = trigger.removeprefix("CommandRejected(").removesuffix(")")
        assert process is not None
        owed = next(c for c in process.owed if c.type == command_type)
        return CommandRejected(
            command_type=command_type,
            command_message_id=owed.message_id,
            reason="refused",
            order_id=ORDER,
        )
    match trigger:
        case "CartFinalized":
            return CartFinalized(
                cart_id=ORDER,
                client_id=CLIENT,
                product_items=ITEMS,
                total_price=TOTAL,
                payment_method=method,
            )
        case "OrderInitialized":
            return OrderInitialized(
                order_id=ORDER, client_id=CLIENT, product_items=ITEMS, total_price=TOTAL
            )
        case "PaymentFinalized":
            return PaymentFinalized(
                **pay,
                amount=TOTAL,
                finalized_at=T0 + timedelta(seconds=2),
                settles_at=T0 + timedelta(seconds=2),
            )
        case "PaymentFailed":
            return PaymentFailed(**pay, reason="card_declined")
        case "PaymentSettled":
            return PaymentSettled(**pay)
        case "OrderPaymentRecorded":
            return OrderPaymentRecorded(order_id=ORDER, payment_id=payment_id, product_items=ITEMS)
        case "PackageWasSent":
            return PackageWasSent(package_id="pkg-1", order_id=ORDER, product_items=ITEMS)
        case "ProductWasOutOfStock":
            return ProductWasOutOfStock(order_id=ORDER, product_id="book", requested=2, available=0)
        case "ShipmentCancelled":
            assert process is not None and process.cancellation_reason is not None
            return ShipmentCancelled(order_id=ORDER, reason=process.cancellation_reason)
        case "ShipmentCancellationRejected":
            return ShipmentCancellationRejected(
                order_id=ORDER, package_id="pkg-1", reason="package pkg-1 was already sent"
            )
        case "OrderCompleted":
            return OrderCompleted(order_id=ORDER)
        case "OrderCancelled":
            assert process is not None and process.cancellation_reason is not None
            return OrderCancelled(order_id=ORDER, reason=process.cancellation_reason)
        case "PaymentDiscarded":
            return PaymentDiscarded(**pay)
        case "PaymentDiscardRejected":
            return PaymentDiscardRejected(**pay, reason="already settled")
        case "PaymentRefunded":
            return PaymentRefunded(**pay, amount=TOTAL)
        case "CancelProcess":
            return CancelProcess(order_id=ORDER, reason="customer called", requested_by="ops")
        case "ProcessTimedOut":
            assert process is not None and process.deadline is not None
            return ProcessTimedOut(order_id=ORDER, deadline=process.deadline)
    raise AssertionError(f"no factory for {trigger}")


def envelope(
    process: Process | None,
    trigger: str,
    *,
    message_id: str,
    at: datetime,
    method: PaymentMethod = "card_ok",
) -> Envelope:
    """``message(process, trigger)`` in an envelope at ``at``; a timeout waits for its deadline."""
    if trigger == "ProcessTimedOut" and process is not None and process.deadline is not None:
        at = max(at, process.deadline)
    return Envelope.wrap(
        message(process, trigger, method),
        message_id=message_id,
        occurred_at=at,
        correlation_id=ORDER,
        causation_id=None,
    )


def given(*triggers: str, method: PaymentMethod = "card_ok") -> Process:
    """The process after ``triggers``, each applied in turn (ids ``given-N``, a second apart)."""
    process: Process | None = None
    for n, trigger in enumerate(triggers):
        at = T0 + timedelta(seconds=n)
        cause = envelope(process, trigger, message_id=f"given-{n}", at=at, method=method)
        outcome = handle(process, cause, timeouts=TIMEOUTS)
        assert outcome.kind == "applied", (trigger, outcome.reason)
        process = outcome.process
    assert process is not None
    return process


def when(
    process: Process | None, trigger: str, *, message_id: str = "when", at: datetime = LATER
) -> Outcome:
    """``handle`` one fitting ``trigger`` message on ``process``."""
    cause = envelope(process, trigger, message_id=message_id, at=at)
    return handle(process, cause, timeouts=TIMEOUTS)


HAPPY = (
    "CartFinalized",
    "OrderInitialized",
    "PaymentFinalized",
    "OrderPaymentRecorded",
    "PackageWasSent",
    "OrderCompleted",
)
DISCARDING = (*HAPPY[:3], "CancelProcess", "OrderCancelled")
PATH_TO: dict[State | None, tuple[str, ...]] = {
    None: (),
    State.AwaitingOrder: HAPPY[:1],
    State.AwaitingPayment: HAPPY[:2],
    State.RecordingPayment: HAPPY[:3],
    State.AwaitingShipment: HAPPY[:4],
    State.Completing: HAPPY[:5],
    State.Completed: HAPPY,
    State.CancellingShipment: (*HAPPY[:4], "CancelProcess"),
    State.CancellingOrder: (*HAPPY[:1], "CancelProcess"),
    State.CancellingOrderWithPayment: (*HAPPY[:2], "CancelProcess"),
    State.DiscardingPayment: DISCARDING,
    State.RefundingPayment: (*DISCARDING, "PaymentDiscardRejected"),
    State.Cancelled: (*DISCARDING, "PaymentDiscarded"),
    State.Escalated: (*DISCARDING, "PaymentDiscarded", "PackageWasSent"),
}


def given_state(state: State | None) -> Process | None:
    """A process in ``state`` (``None`` for the start), reached by ``PATH_TO[state]``."""
    return given(*PATH_TO[state]) if state is not None else None


def remembered(process: Process | None, message_id: str) -> Process | None:
    """``process`` unchanged but for having taken ``message_id`` in: what ``ignored`` leaves."""
    if process is None:
        return None
    return process.model_copy(update={"applied": (*process.applied, message_id)})
