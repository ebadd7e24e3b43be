"""In-memory aggregate state for the partitions a processor owns, folded from its events topic."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    """One aggregate: its state, and the command ids already handled (the events' causes)."""

    state: S
    handled: frozenset[str] = frozenset()

    def after(self, state: S, command_id: str | None) -> Aggregate[S]:
        if command_id is None:
            return Aggregate(state, self.handled)
        return Aggregate(state, self.handled | {command_id})


@dataclass
class AggregateStore(Generic[S]):
    """State per owned partition, plus a staging overlay for the transaction in flight.

    Reads see staged records first; `commit` makes them durable in memory once the Kafka
    transaction that carries their events has committed, `discard` forgets them.
    """

    initial: S
    partitions: dict[int, dict[str, Aggregate[S]]] = field(default_factory=dict)
    staged: dict[tuple[int, str], Aggregate[S]] = field(default_factory=dict)

    def get(self, partition: int, aggregate_id: str) -> Aggregate[S]:
        staged = self.staged.get((partition, aggregate_id))
        if staged is not None:
            return staged
        return self.partitions.get(partition, {}).get(aggregate_id, Aggregate(self.initial))

    def stage(self, partition: int, aggregate_id: str, record: Aggregate[S]) -> None:
        self.staged[(partition, aggregate_id)] = record

    def commit(self) -> None:
        for (partition, aggregate_id), record in self.staged.items():
            self.partitions.setdefault(partition, {})[aggregate_id] = record
        self.staged.clear()

    def discard(self) -> None:
        self.staged.clear()

    def load(self, partition: int, records: dict[str, Aggregate[S]]) -> None:
        self.partitions[partition] = records

    def drop(self, partition: int) -> None:
        self.partitions.pop(partition, None)

    def owned(self) -> set[int]:
        return set(self.partitions)

    def items(self) -> Iterator[tuple[int, str, Aggregate[S]]]:
        for partition, records in self.partitions.items():
            for aggregate_id, record in records.items():
                yield partition, aggregate_id, record
