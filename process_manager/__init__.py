"""The order process manager: a pure state machine from cart to completed or cancelled order.

It reacts to cart, order, payment, shipment and operator messages with commands, as a table
of transitions (``TRANSITIONS``), and never does I/O: ids, time and timeouts are inputs.
``step`` is the entry point: ``handle`` with the quarantine of a process it breaks around it.
The diagram generator lives in ``process_manager.diagram`` (run it with ``python -m``).
"""

from process_manager.decider import Outcome, OutcomeKind, evolve, handle, note, react, resume
from process_manager.process import HistoryEntry, Process, Quarantine, SentCommand
from process_manager.quarantine import Decide, as_logged, is_quarantined, reason_of, step
from process_manager.states import DEFAULT_TIMEOUTS, TERMINAL_STATES, State, Timeouts, is_terminal
from process_manager.table import (
    OPERATOR_ACTIONS,
    REACTS_TO,
    TRANSITIONS,
    Table,
    Transition,
    trigger_of,
)

__all__ = [
    "DEFAULT_TIMEOUTS",
    "OPERATOR_ACTIONS",
    "REACTS_TO",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Decide",
    "HistoryEntry",
    "Outcome",
    "OutcomeKind",
    "Process",
    "Quarantine",
    "SentCommand",
    "State",
    "Table",
    "Timeouts",
    "Transition",
    "as_logged",
    "evolve",
    "handle",
    "is_quarantined",
    "is_terminal",
    "note",
    "react",
    "reason_of",
    "resume",
    "step",
    "trigger_of",
]
