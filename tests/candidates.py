"""Candidate transition tables for the dry-run tests: each changes one row of today's table."""

from __future__ import annotations

from process_manager import TRANSITIONS, State, Transition

DECLINED_DISCARDS = {
    **TRANSITIONS,
    (State.AwaitingPayment, "PaymentFailed"): Transition(
        State.CancellingOrderWithPayment, ("CancelOrder",)
    ),
}
"""A declined payment is cancelled and then discarded, instead of only cancelling the order."""

NOT_A_TABLE = ["AwaitingOrder"]
UNKNOWN_COMMAND = {
    **TRANSITIONS,
    (State.Completing, "OrderCompleted"): Transition(State.Completed, ("ThankTheClient",)),
}

TODAY = dict(TRANSITIONS)
"""Today's table, as a candidate: nothing may differ."""
