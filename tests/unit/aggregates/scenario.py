"""given(decider, [events]).when(command).then([events]) for the pure deciders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pytest

from aggregates.decider import Decider, Rejected, fold

C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")


@dataclass(frozen=True)
class Given(Generic[C, S, E]):
    decider: Decider[C, S, E]
    history: tuple[E, ...]

    @property
    def state(self) -> S:
        return fold(self.decider, self.history)

    def when(self, command: C) -> When[C, S, E]:
        return When(self, command)


@dataclass(frozen=True)
class When(Generic[C, S, E]):
    given: Given[C, S, E]
    command: C

    def then(self, expected: list[Any]) -> S:
        """Assert the command causes exactly ``expected``; return the state after them."""
        state = self.given.state
        events = self.given.decider.decide(self.command, state)
        assert events == expected
        return fold(self.given.decider, events, state)

    def then_rejects(self, reason: str) -> None:
        """Assert the command is refused with a reason that contains ``reason``."""
        with pytest.raises(Rejected) as rejected:
            self.given.decider.decide(self.command, self.given.state)
        assert reason in rejected.value.reason


def given(decider: Decider[C, S, E], events: Iterable[E] = ()) -> Given[C, S, E]:
    return Given(decider, tuple(events))
