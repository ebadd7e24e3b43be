"""Dry-run a candidate transition table against the recorded inputs, before deploying it.

    orderflow dry-run --candidate MODULE:ATTR [--examples N] [--json]
    python -m streams.tools.dry_run --candidate MODULE:ATTR

Like verify, it reads the four events topics and ``processes.commands`` from the beginning
(``streams.tools.history``), and folds every order twice with the workers' timeouts: through
today's ``TRANSITIONS`` and through the candidate, a dict of the same shape named by
``MODULE:ATTR`` (a module on the path, the current directory included, or a file:
``path/to/table.py:TRANSITIONS``, e.g. ``process_manager/table.py`` of a branch checkout).
Per order it compares the final state, the sequence of moves (from, to) the history would
record, and the commands sent (type and deterministic id), and reports the counts per kind
of difference and the first examples, each with the input where the two folds part.

The candidate only sees the messages that were logged under today's table: an order it
would have taken elsewhere stops where the log stops (the modules never answered commands
that were never sent). Exit 0: no order differs; 1: some do; 2: bad candidate or usage, or
the topics cannot be read.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import click
from rich.console import Console
from rich.table import Table as RichTable

from process_manager import State, Table, Timeouts, Transition
from process_manager.commands import BUILDERS
from streams.kafka.topics import PROCESS_INPUTS
from streams.process.fold import Input, Step, trace
from streams.settings import get_settings
from streams.tools.history import by_order, count_records, partition_count, scan
from streams.tools.progress import Progress

KINDS = ("final_state", "transitions", "commands")


def console() -> Console:
    """Rich's console; wide when the output is not a terminal (a file, a pipe, CI logs)."""
    return Console(width=None if sys.stdout.isatty() else 150)


class BadCandidate(click.ClickException):
    """A candidate that cannot be loaded or is not a transition table (exit 2)."""

    exit_code = 2


# The candidate


def load_candidate(spec: str) -> Table:
    """The table ``spec`` (``MODULE:ATTR`` or ``FILE.py:ATTR``) names, checked row by row."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise BadCandidate(f"--candidate {spec!r}: expected MODULE:ATTR or FILE.py:ATTR")
    try:
        module = _module(where)
    except Exception as error:
        raise BadCandidate(f"cannot import {where}: {type(error).__name__}: {error}") from None
    if not hasattr(module, attr):
        raise BadCandidate(f"{where} has no attribute {attr!r}")
    return check_table(getattr(module, attr))


def _module(where: str) -> ModuleType:
    if where.endswith(".py") or os.sep in where:
        path = Path(where).resolve()
        spec = importlib.util.spec_from_file_location(f"orderflow_candidate_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"no module at {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(where)


def check_table(value: object) -> Table:
    """``value`` as a transition table, or ``BadCandidate`` naming the first bad row."""
    if not isinstance(value, Mapping):
        raise BadCandidate(f"the candidate is a {type(value).__name__}, not a dict")
    table: dict[tuple[State | None, str], Transition] = {}
    for key, row in value.items():
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], str)):
            raise BadCandidate(f"row {key!r}: the key is not (state, trigger)")
        state, trigger = key
        if state is not None and state not in State.__members__.values():
            raise BadCandidate(f"row {key!r}: {state!r} is not a state")
        if not (isinstance(row, tuple) and len(row) == 2):
            raise BadCandidate(f"row {key!r}: {row!r} is not (next state, commands)")
        next_state, commands = row
        if next_state not in State.__members__.values():
            raise BadCandidate(f"row {key!r}: next state {next_state!r} is not a state")
        unknown = [c for c in commands if c not in BUILDERS]
        if isinstance(commands, str) or unknown:
            raise BadCandidate(f"row {key!r}: unknown commands {unknown or commands!r}")
        table[(None if state is None else State(state), trigger)] = Transition(
            State(next_state), tuple(commands)
        )
    return table


# Comparing (pure)


def moves(steps: Sequence[Step]) -> list[tuple[str | None, str]]:
    """Every (from, to) the folded history records, uncapped."""
    return [(e.from_state, e.to_state) for s in steps for e in s.recorded]


def sent(steps: Sequence[Step]) -> list[tuple[str, str]]:
    """Every command the fold sends (type, deterministic id), owed ones re-sent included."""
    return [(c.type, c.message_id) for s in steps for c in s.commands]


def describe(taken: Step) -> str:
    """What one step did, in one line."""
    if taken.kind == "applied" and taken.reason == "noted":
        return f"noted in {taken.after}, no move"
    if taken.kind == "applied":
        what = f"{taken.before or '(start)'} -> {taken.after}"
        commands = ", ".join(f"{c.type} {c.message_id[:8]}" for c in taken.commands)
        return what + (f", sends {commands}" if commands else "")
    return f"{taken.kind}: {taken.reason}"


@dataclass(frozen=True)
class Divergence:
    """One order the candidate would fold otherwise: what differs, and where they part."""

    order_id: str
    kinds: tuple[str, ...]
    today_state: str | None
    candidate_state: str | None
    at: Input | None
    today: str
    candidate: str
    partition: int | None = None

    def position(self) -> str:
        """Where the two folds part, as ``TOPIC:PARTITION:OFFSET`` (``-``: nowhere)."""
        if self.at is None:
            return "-"
        topic = PROCESS_INPUTS[self.at.topic_index]
        return f"{topic}:{'?' if self.partition is None else self.partition}:{self.at.offset}"

    def as_json(self, topics: Sequence[str]) -> dict[str, Any]:
        where = None
        if self.at is not None:
            where = {
                "topic": topics[self.at.topic_index],
                "partition": self.partition,
                "offset": self.at.offset,
                "message_type": self.at.envelope.type,
                "message_id": self.at.envelope.message_id,
            }
        return {
            "order_id": self.order_id,
            "kinds": list(self.kinds),
            "final_state": {"today": self.today_state, "candidate": self.candidate_state},
            "diverges_at": where,
            "today": self.today,
            "candidate": self.candidate,
        }


def compare_order(
    order_id: str, inputs: Sequence[Input], timeouts: Timeouts, candidate: Table
) -> Divergence | None:
    """How ``candidate`` folds one order's inputs otherwise than today's table, or ``None``."""
    today = list(trace(inputs, timeouts))
    other = list(trace(inputs, timeouts, candidate))
    ends = [None if not s else s[-1].after for s in (today, other)]
    differs = (ends[0] != ends[1], moves(today) != moves(other), sent(today) != sent(other))
    kinds = tuple(kind for kind, yes in zip(KINDS, differs, strict=True) if yes)
    if not kinds:
        return None
    first = next(
        (
            i
            for i, (a, b) in enumerate(zip(today, other, strict=True))
            if (describe(a), a.recorded) != (describe(b), b.recorded)
        ),
        None,
    )
    return Divergence(
        order_id,
        kinds,
        ends[0],
        ends[1],
        None if first is None else today[first].input,
        "" if first is None else describe(today[first]),
        "" if first is None else describe(other[first]),
    )


# Running


@dataclass
class DryRun:
    candidate: str
    events: int = 0
    orders: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def as_json(self, examples: int) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "events": self.events,
            "orders": self.orders,
            "differing_orders": len(self.divergences),
            "kinds": {kind: self.kinds[kind] for kind in KINDS},
            "examples": [d.as_json(PROCESS_INPUTS) for d in self.divergences[:examples]],
            "elapsed_s": round(self.elapsed_s, 3),
        }


def dry_run(candidate_spec: str, candidate: Table) -> DryRun:
    """Fold every order of the log through today's table and ``candidate``; compare."""
    settings = get_settings()
    timeouts = settings.timeouts()
    names = [settings.topic(t) for t in PROCESS_INPUTS]
    total = count_records(settings, names, partition_count(settings, names))
    progress = Progress("dry-run", total, sys.stderr)
    report = DryRun(candidate_spec)
    for part in scan(settings, PROCESS_INPUTS, progress=progress):
        inputs = list(part.merged())
        report.events += len(inputs)
        for order_id, items in by_order(inputs).items():
            report.orders += 1
            divergence = compare_order(order_id, items, timeouts, candidate)
            if divergence is not None:
                divergence = replace(divergence, partition=part.partition)
                report.divergences.append(divergence)
                report.kinds.update(divergence.kinds)
    report.elapsed_s = progress.finish()
    return report


def render(report: DryRun, examples: int, console: Console) -> None:
    summary = RichTable(title="dry run", show_header=False)
    summary.add_row("candidate", report.candidate)
    summary.add_row("events read", f"{report.events:,}")
    summary.add_row("orders folded", f"{report.orders:,}")
    summary.add_row("orders that differ", f"{len(report.divergences):,}")
    for kind in KINDS:
        summary.add_row(f"  in {kind.replace('_', ' ')}", f"{report.kinds[kind]:,}")
    summary.add_row("elapsed", f"{report.elapsed_s:.2f} s")
    console.print(summary)
    if not report.divergences:
        return
    shown = report.divergences[:examples]
    table = RichTable(title=f"first {len(shown)} of {len(report.divergences)} differing orders")
    table.add_column("order", no_wrap=True)
    table.add_column("differs in", max_width=12)
    table.add_column("diverges at", max_width=24)
    table.add_column("today", ratio=1)
    table.add_column("candidate", ratio=1)
    for d in shown:
        at = "-" if d.at is None else f"{d.at.envelope.type} at {d.position()}"
        today = f"{d.today}; ends {d.today_state}"
        other = f"{d.candidate}; ends {d.candidate_state}"
        table.add_row(d.order_id, ", ".join(d.kinds).replace("_", " "), at, today, other)
    console.print(table)


@click.command("dry-run")
@click.option(
    "--candidate",
    "spec",
    required=True,
    metavar="MODULE:ATTR",
    help="the candidate table: a dict like TRANSITIONS (MODULE:ATTR or FILE.py:ATTR)",
)
@click.option("--examples", default=10, show_default=True, help="differing orders to show")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def command(spec: str, examples: int, as_json: bool) -> None:
    """Fold the recorded orders through today's transition table and a candidate one, and
    report every order whose state, transitions or commands would differ (exit 1)."""
    candidate = load_candidate(spec)
    try:
        report = dry_run(spec, candidate)
    except LookupError as error:
        raise BadCandidate(f"dry-run cannot run: {error}") from None
    if as_json:
        click.echo(json.dumps(report.as_json(examples), indent=2))
    else:
        render(report, examples, console())
    sys.exit(1 if report.divergences else 0)


if __name__ == "__main__":
    command()
