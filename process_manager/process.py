"""The record of one order's process, as stored in the process table and shown to operators.

Besides ``state`` and ``deadline`` it keeps what the next commands and any compensation need
(the cart's items, price and payment method, the payment id, the cancellation reason), why it
was left to an operator (``escalation``, set on entering ``Escalated``), why it is parked
(``quarantine``: the message that broke it and the ones held behind it), the message ids it
has taken in, applied or ignored, in order (to drop duplicates, and so verify can fold them in
the order the worker saw them), its history, and ``owed``: the command envelopes of the last
transition, which ``resume`` sends again after a crash.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from aggregates.messages import (
    CancellationReason,
    Envelope,
    Money,
    PaymentMethod,
    ProductItem,
    UtcDatetime,
)
from process_manager.states import State

MAX_APPLIED_IDS: Final = 1000
"""How many taken-in message ids a process remembers; older ones are dropped first."""
MAX_HISTORY: Final = 200
"""How many history entries a process keeps; older ones are dropped first."""


class SentCommand(BaseModel):
    """A command a transition sent, by id and type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str
    type: str


class HistoryEntry(BaseModel):
    """One applied message: what it was, the move it made, and the commands it sent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str
    message_type: str
    from_state: State | None
    to_state: State
    at: UtcDatetime
    commands: tuple[SentCommand, ...] = ()


class Quarantine(BaseModel):
    """A process parked by a message it could not take in: that message, why (the exception's
    type and message, no traceback), and the later messages held behind it, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: Envelope
    reason: str
    parked: tuple[Envelope, ...] = ()


class Process(BaseModel):
    """One order's process: frozen; every change makes a new record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: str
    state: State
    deadline: UtcDatetime | None
    # What the commands and the compensation need
    client_id: str
    product_items: tuple[ProductItem, ...]
    total_price: Money
    currency: str
    payment_method: PaymentMethod
    payment_id: str | None = None
    payment_finalized_at: UtcDatetime | None = None
    payment_settled: bool = False
    cancellation_reason: CancellationReason | None = None
    escalation: str | None = None
    quarantine: Quarantine | None = None
    # Bookkeeping
    applied: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    owed: tuple[Envelope, ...] = ()
