"""One order's inputs folded through the pure process manager, one step per input.

Replay, verify and check fold every order (``streams.tools.history`` reads the topics); the
dry run folds each one twice, through today's transition table and a candidate; the timeline
(``orderflow timeline`` and the web view's process page) shows each step of one order. The
worker serves that page, so the fold lives here, not among the offline tools. No I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from aggregates.messages import Envelope
from process_manager import (
    TRANSITIONS,
    HistoryEntry,
    OutcomeKind,
    Process,
    State,
    Table,
    Timeouts,
    as_logged,
    handle,
    step,
)


@dataclass(frozen=True)
class Input:
    """One decoded input record, with where and when it was written."""

    timestamp: int
    topic_index: int
    offset: int
    order_id: str
    envelope: Envelope


class Written(Protocol):
    """Where and when a record was written: what ``merge`` orders by."""

    @property
    def timestamp(self) -> int: ...
    @property
    def topic_index(self) -> int: ...


W = TypeVar("W", bound=Written)


def merge(per_topic: Sequence[Sequence[W]]) -> Iterator[W]:
    """The records of one partition number, merged across topics by record timestamp.

    Each topic's own (offset) order is kept whatever its timestamps; ties go to the topic
    listed first in ``PROCESS_INPUTS``. The merge of a topic whose timestamps go back depends
    on every record of the partition, so one order's inputs are merged with all the others'.
    """
    return heapq.merge(*per_topic, key=lambda item: (item.timestamp, item.topic_index))


def by_order(inputs: Iterable[Input]) -> dict[str, list[Input]]:
    """``inputs`` grouped per order id, each group in input order."""
    grouped: dict[str, list[Input]] = {}
    for item in inputs:
        grouped.setdefault(item.order_id, []).append(item)
    return grouped


@dataclass(frozen=True)
class Step:
    """What one input did to its order's process.

    ``recorded``: the history entries the step wrote (a move, a noted fact, an operator's
    action, or the moves of the messages a resume released); ``commands``: what was sent
    (the commands of an ``applied`` step, the owed ones again for a ``duplicate``).
    """

    input: Input
    kind: OutcomeKind
    reason: str
    before: State | None
    process: Process | None
    recorded: tuple[HistoryEntry, ...]
    commands: tuple[Envelope, ...]

    @property
    def after(self) -> State | None:
        return None if self.process is None else self.process.state


def trace(
    inputs: Iterable[Input], timeouts: Timeouts, table: Table = TRANSITIONS
) -> Iterator[Step]:
    """Fold one order's inputs through ``step``, as a worker would, yielding every step.

    A message that broke the live process quarantines it here too (``as_logged``: the
    operator's ``ResumeProcess`` or ``SkipMessage`` in ``processes.commands`` names it), and
    the action releases it the same way. ``table``: the transition table to fold with.
    """
    items = list(inputs)
    decide = as_logged((item.envelope for item in items), partial(handle, table=table))
    process: Process | None = None
    for item in items:
        outcome = step(process, item.envelope, timeouts=timeouts, decide=decide)
        before = process
        if outcome.process is not None:  # ignored messages are taken in too
            process = outcome.process
        yield Step(
            item,
            outcome.kind,
            outcome.reason,
            None if before is None else before.state,
            process,
            _recorded(before, process),
            outcome.commands,
        )


@dataclass(frozen=True)
class Folded:
    """The process one order's inputs fold to (``None``: no finalized cart)."""

    process: Process | None


def fold_order(inputs: Iterable[Input], timeouts: Timeouts, table: Table = TRANSITIONS) -> Folded:
    """The process ``trace`` ends with; the commands are dropped.

    The same steps as ``trace``, without the ``Step`` of each: replay and verify fold every
    order of the log, and finding each step's history entries was a tenth of their fold.
    """
    items = list(inputs)
    decide = as_logged((item.envelope for item in items), partial(handle, table=table))
    process: Process | None = None
    for item in items:
        outcome = step(process, item.envelope, timeouts=timeouts, decide=decide)
        if outcome.process is not None:  # ignored messages are taken in too
            process = outcome.process
    return Folded(process)


def _recorded(before: Process | None, after: Process | None) -> tuple[HistoryEntry, ...]:
    """The history entries ``after`` has beyond ``before`` (the history keeps its latest
    entries only, so they are found after ``before``'s last one, not by count)."""
    if after is None or after is before:
        return ()
    if before is None or not before.history:
        return after.history
    last = before.history[-1]
    for index in range(len(after.history) - 1, -1, -1):
        if after.history[index] == last:
            return after.history[index + 1 :]
    return after.history
