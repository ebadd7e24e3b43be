"""The order process manager: a pure state machine from cart to completed or cancelled order.

It reacts to cart, order, payment, shipment and operator messages with commands, as a table
of transitions (``TRANSITIONS``), and never does I/O: ids, time and timeouts are inputs.
The diagram generator lives in ``process_manager.diagram`` (run it with ``python -m``).
"""

from process_manager.decider import Outcome, OutcomeKind, evolve, handle, resume
from process_manager.process import HistoryEntry, Process, SentCommand
from process_manager.states import DEFAULT_TIMEOUTS, TERMINAL_STATES, State, Timeouts, is_terminal
from process_manager.table import REACTS_TO, TRANSITIONS, Transition, trigger_of

__all__ = [
    "DEFAULT_TIMEOUTS",
    "REACTS_TO",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "HistoryEntry",
    "Outcome",
    "OutcomeKind",
    "Process",
    "SentCommand",
    "State",
    "Timeouts",
    "Transition",
    "evolve",
    "handle",
    "is_terminal",
    "resume",
    "trigger_of",
]
