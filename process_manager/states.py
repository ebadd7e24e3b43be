"""The states of an order's process, which of them are terminal, and their deadlines.

Every non-terminal state has a deadline: entering it at time ``at`` sets the deadline to
``at + timeouts[state]``. ``Timeouts`` is an input (the edge reads it from configuration);
a state missing from it falls back to ``DEFAULT_TIMEOUTS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final


class State(StrEnum):
    """Where an order's process stands. The value is the name shown on the wire and in views."""

    # Happy path
    AwaitingOrder = "AwaitingOrder"
    AwaitingPayment = "AwaitingPayment"
    RecordingPayment = "RecordingPayment"
    AwaitingShipment = "AwaitingShipment"
    Completing = "Completing"
    Completed = "Completed"
    # Compensation
    CancellingShipment = "CancellingShipment"
    CancellingOrder = "CancellingOrder"
    CancellingOrderWithPayment = "CancellingOrderWithPayment"
    DiscardingPayment = "DiscardingPayment"
    RefundingPayment = "RefundingPayment"
    Cancelled = "Cancelled"
    # Left to an operator: a package was sent to a process that is cancelling or cancelled
    Escalated = "Escalated"


TERMINAL_STATES: Final = frozenset({State.Completed, State.Cancelled, State.Escalated})

Timeouts = Mapping[State, timedelta]
"""How long a process may stay in each non-terminal state before it times out."""

DEFAULT_TIMEOUTS: Final[Timeouts] = {
    State.AwaitingOrder: timedelta(seconds=60),
    State.AwaitingPayment: timedelta(seconds=120),
    State.RecordingPayment: timedelta(seconds=60),
    State.AwaitingShipment: timedelta(seconds=300),
    State.Completing: timedelta(seconds=60),
    State.CancellingShipment: timedelta(seconds=60),
    State.CancellingOrder: timedelta(seconds=60),
    State.CancellingOrderWithPayment: timedelta(seconds=60),
    State.DiscardingPayment: timedelta(seconds=60),
    State.RefundingPayment: timedelta(seconds=60),
}


def is_terminal(state: State) -> bool:
    """Whether ``state`` ends the process: ``Completed``, ``Cancelled`` and ``Escalated``."""
    return state in TERMINAL_STATES


def deadline_for(state: State, at: datetime, timeouts: Timeouts) -> datetime | None:
    """The deadline of a process that enters ``state`` at ``at``; ``None`` once terminal."""
    if is_terminal(state):
        return None
    return at + timeouts.get(state, DEFAULT_TIMEOUTS[state])
