"""The orders read model's projection: one ``orders_view`` row per order, pure.

``project(view, envelope)`` is order-independent: a state or payment status only moves
forward (by rank), timestamps are the events' own. So the rows do not depend on how the four
events topics interleave, and a rebuild gives the same rows as the live projection.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Final

from aggregates.messages import (
    CartFinalized,
    Envelope,
    OrderCancelled,
    OrderCompleted,
    OrderInitialized,
    OrderPaymentRecorded,
    PackageWasSent,
    PaymentDiscarded,
    PaymentFailed,
    PaymentFinalized,
    PaymentRefunded,
    PaymentRequested,
    PaymentSettled,
    order_id_of,
)

STATE_RANK: Final = {
    "pending": 1,
    "initialized": 2,
    "paid": 3,
    "shipped": 4,
    "completed": 5,
    "cancelled": 5,
}
PAYMENT_RANK: Final = {
    "requested": 1,
    "finalized": 2,
    "settled": 3,
    "failed": 4,
    "discarded": 4,
    "refunded": 5,
}
PAYMENT_STATUS: Final = {
    PaymentRequested: "requested",
    PaymentFinalized: "finalized",
    PaymentFailed: "failed",
    PaymentSettled: "settled",
    PaymentDiscarded: "discarded",
    PaymentRefunded: "refunded",
}
PROJECTED_TYPES: Final = frozenset(
    {
        "CartFinalized",
        "OrderInitialized",
        "OrderPaymentRecorded",
        "PackageWasSent",
        "OrderCompleted",
        "OrderCancelled",
        *(cls.__name__ for cls in PAYMENT_STATUS),
    }
)


@dataclass(frozen=True)
class OrderView:
    """One ``orders_view`` row; the fields are the table's columns, in order."""

    order_id: str
    client_id: str | None = None
    total_price: Decimal | None = None
    currency: str | None = None
    state: str = "pending"
    payment_status: str | None = None
    payment_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    shipped_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancellation_reason: str | None = None


COLUMNS: Final = tuple(f.name for f in fields(OrderView))


def project(view: OrderView | None, envelope: Envelope) -> OrderView | None:
    """``view`` after ``envelope``; ``None`` when the event is not one the read model shows."""
    if envelope.type not in PROJECTED_TYPES:
        return None
    at = envelope.occurred_at
    row = view or OrderView(order_id_of(envelope))
    row = replace(row, updated_at=at if row.updated_at is None else max(row.updated_at, at))
    match envelope.data:
        case CartFinalized() as cart:
            row = replace(
                row,
                client_id=cart.client_id,
                total_price=cart.total_price,
                currency=cart.currency,
                created_at=at,
            )
            return _advance(row, "pending")
        case OrderInitialized() as order:
            row = replace(
                row,
                client_id=row.client_id or order.client_id,
                total_price=order.total_price if row.total_price is None else row.total_price,
            )
            return _advance(row, "initialized")
        case OrderPaymentRecorded(payment_id=payment_id):
            return _advance(replace(row, payment_id=row.payment_id or payment_id), "paid")
        case PackageWasSent():
            return _advance(replace(row, shipped_at=at), "shipped")
        case OrderCompleted():
            if _advances(row.state, "completed"):
                return replace(row, state="completed", completed_at=at)
            return row
        case OrderCancelled(reason=reason):
            if _advances(row.state, "cancelled"):
                return replace(row, state="cancelled", cancelled_at=at, cancellation_reason=reason)
            return row
    status = PAYMENT_STATUS[type(envelope.data)]
    paid_with: str | None = getattr(envelope.data, "payment_id", None)
    row = replace(row, payment_id=row.payment_id or paid_with)
    current = PAYMENT_RANK.get(row.payment_status or "", 0)
    if PAYMENT_RANK[status] > current:
        row = replace(row, payment_status=status)
    return row


def _advances(current: str, new: str) -> bool:
    return STATE_RANK[new] > STATE_RANK[current]


def _advance(row: OrderView, state: str) -> OrderView:
    return replace(row, state=state) if _advances(row.state, state) else row
