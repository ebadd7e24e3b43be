"""How each order ended, read from the events topics alone: what the demo reports.

The process manager's table says where a process is, but a stateless saga keeps no table, so
the demo reads what both leave behind: the order module's events (initialized, paid,
completed, cancelled and why) and the payment module's (requested, finalized, failed,
settled, discarded, refunded). An order has **ended** when nothing is owed any more: it
completed, or it was cancelled and its payment is failed, discarded or refunded (or there was
none). Anything else is reported as where it stopped, e.g. ``not ended: order initialized,
payment requested``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ORDER_STATUS = {
    "OrderInitialized": "initialized",
    "OrderPaymentRecorded": "paid",
    "OrderCompleted": "completed",
    "OrderCancelled": "cancelled",
}
PAYMENT_STATUS = {
    "PaymentRequested": "requested",
    "PaymentFinalized": "finalized",
    "PaymentFailed": "failed",
    "PaymentSettled": "settled",
    "PaymentDiscarded": "discarded",
    "PaymentDiscardRejected": "settled, discard rejected",
    "PaymentRefunded": "refunded",
}
# A later payment event never takes a payment back to an earlier status (a settlement noted
# after a discard was refused, say): the rank keeps the furthest one.
PAYMENT_RANK = {status: n for n, status in enumerate(PAYMENT_STATUS.values())}
PAYMENT_ENDS = frozenset({None, "failed", "discarded", "refunded"})


@dataclass
class Outcomes:
    """The latest order and payment status of each tracked order, and when it ended."""

    orders: set[str]
    order: dict[str, str] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    payment: dict[str, str] = field(default_factory=dict)
    ended_at: dict[str, float] = field(default_factory=dict)
    changes: int = 0

    def observe(self, key: bytes, value: bytes | None, timestamp_ms: int) -> None:
        """Take in one record of ``orders.events`` or ``payments.events``."""
        order_id = key.decode(errors="replace")
        if order_id not in self.orders or value is None:
            return
        try:
            record: dict[str, Any] = json.loads(value)
            message_type, data = record["type"], record["data"]
        except (ValueError, KeyError, TypeError):
            return  # not a message: the worker dead-letters it
        if message_type in ORDER_STATUS:
            self.order[order_id] = ORDER_STATUS[message_type]
            if message_type == "OrderCancelled":
                self.reason[order_id] = str(data.get("reason"))
        elif message_type in PAYMENT_STATUS:
            status = PAYMENT_STATUS[message_type]
            before = self.payment.get(order_id)
            if before is None or PAYMENT_RANK[status] > PAYMENT_RANK[before]:
                self.payment[order_id] = status
        else:
            return
        self.changes += 1
        if self.has_ended(order_id):
            self.ended_at.setdefault(order_id, timestamp_ms / 1000)
        else:
            self.ended_at.pop(order_id, None)

    def has_ended(self, order_id: str) -> bool:
        order = self.order.get(order_id)
        if order == "completed":
            return True
        return order == "cancelled" and self.payment.get(order_id) in PAYMENT_ENDS

    def outcome(self, order_id: str) -> str:
        """``Completed``, ``Cancelled/<reason>, payment <status>``, or where it stopped."""
        order, payment = self.order.get(order_id), self.payment.get(order_id)
        if order == "completed":
            return "Completed"
        if order == "cancelled":
            cancelled = f"Cancelled/{self.reason.get(order_id)}"
            money = f"{cancelled}, payment {payment or 'none'}"
            return money if self.has_ended(order_id) else f"not ended: {money}"
        return f"not ended: order {order or 'not initialized'}, payment {payment or 'none'}"

    def done(self) -> int:
        return len(self.ended_at)
