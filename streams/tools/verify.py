"""Verify the live process table against a fold of the process manager's inputs.

    orderflow verify [--limit-orders N] [--json] [--app-version N] [--jobs N]  (streams.cli.tools)

It reads the four events topics and ``processes.commands`` from the beginning
(read_committed, to each partition's end), folds every order through the pure
``process_manager.step`` with the workers' timeouts (``streams.tools.history``), reads the live
table from its changelog topic (last record per key), and compares, per order, what does not
depend on how a worker interleaved the topics: the ``state``, the set of applied message ids,
the ``cancellation_reason`` and the ``payment_id``.

A worker consumes several topics, so the fold merges them by record timestamp, which is most
likely, not certainly, the order the worker saw. When an order differs, verify folds the
logged messages in the order the live record took them in (it lists every message id it took
in, applied or ignored; see ``live_order``), provided that order keeps each topic's own order
and leaves out no logged message the process reacts to. If that fold is the live record, the
order counts as ``reordered``, not as a difference: the live record is a fold of exactly the
logged messages.

``--jobs N`` (default: the CPU count) folds and compares the partitions in N processes
(``streams.tools.jobs``); the report is the same.

It exits 0 when nothing differs, 1 when something does, 2 when it cannot run. Run it on a
quiet system: orders in flight while it reads may differ for that reason alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import ValidationError

from process_manager import REACTS_TO, Process, Timeouts
from process_manager.process import MAX_APPLIED_IDS
from streams.kafka.topics import PROCESS_INPUTS
from streams.settings import Settings
from streams.tools.history import (
    Advances,
    Folded,
    Input,
    TableRecord,
    count_records,
    fold_order,
    partition_count,
    read_table,
    scan,
    truncated_topics,
)
from streams.tools.jobs import Jobs, Work
from streams.tools.progress import Progress

COMPARED = ("state", "applied", "cancellation_reason", "payment_id")
SHOWN_IDS = 5


# Comparing (pure)


@dataclass(frozen=True)
class Difference:
    """One order whose live record is not what its messages fold to.

    ``kind``: ``missing_live`` (folded, not in the table), ``missing_events`` (in the table, not
    folded), ``mismatch`` (``fields`` says which: folded and live values), ``unreadable_live``,
    or ``wrong_partition``.
    """

    order_id: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.fields:
            return f"{self.order_id}: {self.kind}"
        parts = "; ".join(f"{name}: {value}" for name, value in self.fields.items())
        return f"{self.order_id}: {self.kind}: {parts}"


def compare(folded: Process, live: Process) -> dict[str, Any]:
    """The compared fields that differ, each as ``{"folded": ..., "live": ...}``."""
    found: dict[str, Any] = {}
    for name in ("state", "cancellation_reason", "payment_id"):
        ours, theirs = getattr(folded, name), getattr(live, name)
        if ours != theirs:
            found[name] = {"folded": _plain(ours), "live": _plain(theirs)}
    ours_ids, live_ids = set(folded.applied), set(live.applied)
    if ours_ids != live_ids:
        found["applied"] = {
            "only_folded": sorted(ours_ids - live_ids)[:SHOWN_IDS],
            "only_live": sorted(live_ids - ours_ids)[:SHOWN_IDS],
            "counts": {"folded": len(ours_ids), "live": len(live_ids)},
        }
    return found


def live_order(inputs: Sequence[Input], taken_in: Sequence[str]) -> list[Input] | None:
    """The logged inputs in the order the live record took them in, or ``None``.

    The live record lists every message id it took in (applied or ignored), in order. That
    order is the worker's unless it names a message that was never logged, or reads a topic
    against its own offset order.
    """
    by_id: dict[str, Input] = {}
    for item in inputs:
        by_id.setdefault(item.envelope.message_id, item)
    if any(message_id not in by_id for message_id in taken_in):
        return None
    ordered = [by_id[message_id] for message_id in taken_in]
    last: dict[int, int] = {}
    for item in ordered:
        if item.offset <= last.get(item.topic_index, -1):
            return None
        last[item.topic_index] = item.offset
    return ordered


def untaken(inputs: Sequence[Input], taken_in: Sequence[str]) -> list[str]:
    """Logged messages the process would react to that the live record never took in.

    Timeouts are left out: one that is ignored is not remembered (its own deadline decides).
    """
    if len(taken_in) >= MAX_APPLIED_IDS:
        return []  # the oldest ids were dropped: nothing can be told
    seen = set(taken_in)
    return [
        item.envelope.message_id
        for item in inputs
        if item.envelope.type in REACTS_TO
        and item.envelope.type != "ProcessTimedOut"
        and item.envelope.message_id not in seen
    ]


def fold_in_live_order(
    inputs: Sequence[Input], taken_in: Sequence[str], timeouts: Timeouts
) -> Folded | None:
    """The fold of the logged inputs in the order a live record took them in, or ``None``
    when that order is not a possible delivery order of the log (see ``live_order``) or leaves
    out a logged message the process reacts to."""
    ordered = live_order(inputs, taken_in)
    if ordered is None or untaken(inputs, taken_in):
        return None
    return fold_order(ordered, timeouts)


@dataclass
class Verdict:
    """How one order compares: ``None`` difference means it matches (maybe ``reordered``)."""

    difference: Difference | None
    reordered: bool = False


def judge(
    order_id: str,
    inputs: Sequence[Input],
    folded: Folded,
    live: TableRecord | None,
    partition: int,
    timeouts: Timeouts,
) -> Verdict:
    """Compare one order's fold with its live record (``None``: absent from the table)."""
    live_value = None if live is None else live.value
    if folded.process is None:
        if live_value is None:
            return Verdict(None)
        return Verdict(Difference(order_id, "missing_events"))
    if live is None or live_value is None:
        return Verdict(Difference(order_id, "missing_live", {"state": folded.process.state.value}))
    try:
        process = Process.model_validate_json(live_value)
    except ValidationError as error:
        return Verdict(Difference(order_id, "unreadable_live", {"error": str(error)[:200]}))
    if live.partition != partition:
        where = {"folded": partition, "live": live.partition}
        return Verdict(Difference(order_id, "wrong_partition", {"partition": where}))
    found = compare(folded.process, process)
    if not found:
        return Verdict(None)
    again = fold_in_live_order(inputs, process.applied, timeouts)
    if again is not None and again.process is not None and not compare(again.process, process):
        return Verdict(None, reordered=True)
    return Verdict(Difference(order_id, "mismatch", found))


# Running


@dataclass
class Report:
    changelog: str
    events: int = 0
    undecodable: int = 0
    orders_folded: int = 0
    orders_live: int = 0
    matched: int = 0
    reordered: int = 0
    differences: list[Difference] = field(default_factory=list)
    elapsed_s: float = 0.0
    limited: bool = False
    truncated: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "changelog": self.changelog,
            "events": self.events,
            "undecodable": self.undecodable,
            "orders_folded": self.orders_folded,
            "orders_live": self.orders_live,
            "matched": self.matched,
            "reordered": self.reordered,
            "limited": self.limited,
            "truncated": self.truncated,
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.events_per_s, 1),
            "differences": [
                {"order_id": d.order_id, "kind": d.kind, "fields": d.fields}
                for d in self.differences
            ],
        }

    def summary(self) -> str:
        lines = [
            f"changelog: {self.changelog}",
            f"events: {self.events:,} ({self.undecodable} undecodable, skipped)",
            f"orders: {self.orders_folded:,} folded, {self.orders_live:,} live",
            f"matched: {self.matched:,} ({self.reordered} after reordering to the live order)",
            f"differences: {len(self.differences)}",
            f"elapsed: {self.elapsed_s:.2f}s, {self.events_per_s:,.0f} events/s",
        ]
        if self.limited:
            lines.append("limited: only the first orders were checked")
        lines += [f"warning: {t} lost its oldest records to retention" for t in self.truncated]
        return "\n".join(lines + [f"  {d.describe()}" for d in self.differences])


def verify(
    settings: Settings,
    *,
    version: int | None = None,
    limit_orders: int | None = None,
    stream: TextIO | None = None,
    jobs: int = 1,
) -> Report:
    """Fold the inputs and compare them with the live table of ``version`` (default: current).

    ``jobs``: processes that read, fold and judge the partitions (``streams.tools.jobs``); one
    with ``limit_orders``, which takes the first orders in partition order and stops there.
    """
    topic = settings.process_changelog_topic(version)
    report = Report(topic, limited=limit_orders is not None)
    live = read_table(settings, topic)
    live_keys = {k for k, record in live.items() if record.value is not None}
    report.orders_live = len(live_keys)
    names = [settings.topic(t) for t in PROCESS_INPUTS]
    partitions = partition_count(settings, names)
    total = count_records(settings, names, partitions)
    report.truncated = truncated_topics(settings, names, partitions)
    work = _judging(settings, live, limit_orders)
    running = Jobs(work, partitions, 1 if limit_orders is not None else jobs)
    try:
        progress = Progress("verify", total, stream or sys.stderr)
        done = {part.partition: part for part in running.results(progress)}
    finally:
        running.close()
    for partition in sorted(done):
        part = done[partition]
        report.undecodable += part.undecodable
        report.events += part.events
        for order_id, has_process, verdict in part.verdicts:
            live_keys.discard(order_id)
            report.orders_folded += has_process
            if verdict.difference is not None:
                report.differences.append(verdict.difference)
            elif has_process:
                report.matched += 1
                report.reordered += verdict.reordered
    if limit_orders is None:
        report.differences += [Difference(k, "missing_events") for k in sorted(live_keys)]
    report.elapsed_s = progress.finish()
    return report


@dataclass
class JudgedPartition:
    """How the orders of one partition number compare: per order, its id, whether it folds
    to a process, and its verdict."""

    partition: int
    events: int
    undecodable: int
    verdicts: list[tuple[str, bool, Verdict]]


def _judging(
    settings: Settings, live: dict[str, TableRecord], limit_orders: int | None
) -> Work[JudgedPartition]:
    """A job's work: read its partitions, fold and judge every order (the first
    ``limit_orders`` only, stopping after the partition that holds the last of them)."""
    timeouts = settings.timeouts()

    def work(partitions: Sequence[int], progress: Advances) -> Iterator[JudgedPartition]:
        chosen: set[str] = set()
        for part in scan(
            settings, PROCESS_INPUTS, progress=progress, partitions=partitions, reacting=REACTS_TO
        ):
            verdicts = []
            for order_id, items in part.orders().items():
                if limit_orders is not None and order_id not in chosen:
                    if len(chosen) >= limit_orders:
                        continue
                    chosen.add(order_id)
                folded = fold_order(items, timeouts)
                where = part.partition
                verdict = judge(order_id, items, folded, live.get(order_id), where, timeouts)
                verdicts.append((order_id, folded.process is not None, verdict))
            yield JudgedPartition(part.partition, part.events, part.undecodable, verdicts)
            if limit_orders is not None and len(chosen) >= limit_orders:
                return  # the chosen orders all live in the partitions read so far

    return work


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)
