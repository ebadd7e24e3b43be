"""The Decider: the shape every aggregate has.

``decide(command, state)`` returns the events a command causes, or raises ``Rejected``;
``evolve(state, event)`` returns the state after an event; ``initial_state`` is the state
before any event. All three are pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import reduce
from typing import Generic, TypeVar

C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")


class Rejected(Exception):
    """A command that the current state refuses; the edge turns it into ``CommandRejected``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Decider(Generic[C, S, E]):
    """The three pure functions of an aggregate, bundled."""

    decide: Callable[[C, S], list[E]]
    evolve: Callable[[S, E], S]
    initial_state: S


def fold(decider: Decider[C, S, E], events: Iterable[E], state: S | None = None) -> S:
    """The state after ``events``, starting from ``state`` or the decider's initial state."""
    start = decider.initial_state if state is None else state
    return reduce(decider.evolve, events, start)


def handle(decider: Decider[C, S, E], state: S, command: C) -> tuple[list[E], S]:
    """Decide ``command`` on ``state``; return the events and the state after them.

    Raises ``Rejected`` when the command is refused.
    """
    events = decider.decide(command, state)
    return events, fold(decider, events, state)
