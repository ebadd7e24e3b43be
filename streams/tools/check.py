"""An independent check of what a run did, from the topics and PostgreSQL only.

    python -m streams.tools.check [--seeded SKU=QTY ...] [--orders PREFIX] [--json-out PATH]

It never asks the workers: it reads the events topics and `processes.commands` (committed
records), the inventory and packages tables, and asserts:

- every order's process, folded from its inputs, is terminal. The fold merges the topics by
  record timestamp; a transaction held up (by a broker restart, say) becomes visible later than
  its timestamps say, so when that fold is not terminal (or ends in another state than the
  live record), the inputs are folded again in the order the live record took them in, if
  that order is a possible delivery order of the log (``verify.fold_in_live_order``: only the
  order of message ids comes from the worker); the state checks below use the fold chosen;
- no order is both completed and cancelled;
- a completed order was paid once and shipped once, and nothing of it discarded or refunded;
- every finalized payment of a cancelled order was discarded or refunded exactly once;
- nothing was refunded unless it had settled first;
- no command took effect twice (one decision per command message id and event type);
- no order whose package was sent (``PackageWasSent``) ended cancelled with its payment given
  back (discarded or refunded), unless a compensation of the package is recorded (the
  contract has none yet: ``ShipmentCancelled`` says the package never left); and no order
  ended ``Escalated`` (a package sent to a cancelled process, left to an operator), which the
  shipment cancellation protocol is there to make impossible;
- every input message the process reacts to (``REACTS_TO``), timeouts aside, was taken in by
  the order's live process: applied or recorded as ignored, its id in the live record's
  ``applied`` (read from the process table's changelog). Asserted only for orders with fewer
  inputs than ``MAX_APPLIED_IDS``, the ids a record keeps;
- stock is not negative, and for every seeded product equals the seeded quantity minus the
  quantities shipped;
- and `verify` finds no difference from the live process states.

Exits 1 and prints every violation when any invariant fails (or verify cannot run);
``--json-out`` also writes the violations and verify's report as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aggregates.messages import Envelope, PackageWasSent
from process_manager import Timeouts, is_terminal
from process_manager.process import MAX_APPLIED_IDS
from streams.kafka.topics import PROCESS_INPUTS
from streams.postgres.db import connect
from streams.settings import Settings, get_settings
from streams.tools import verify
from streams.tools.history import (
    Input,
    TableRecord,
    by_order,
    fold_order,
    read_table,
    scan,
)

# Type names as strings: the shipment cancellation protocol adds them; the checker must run
# before and after it lands.
ESCALATED: Final = "Escalated"
GIVEN_BACK: Final = ("PaymentDiscarded", "PaymentRefunded")
PACKAGE_COMPENSATIONS: Final[frozenset[str]] = frozenset()
"""Event types that record a sent package taken back. The contract has none: a package once
sent stays sent (``ShipmentCancelled`` is for one that never left)."""


@dataclass
class OrderFacts:
    """What the events say about one order: the distinct events of each type, in log order."""

    events: dict[str, dict[str, Envelope]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, envelope: Envelope) -> None:
        self.events[envelope.type].setdefault(envelope.message_id, envelope)

    def count(self, event_type: str) -> int:
        return len(self.events.get(event_type, {}))


def order_violations(
    order_id: str,
    inputs: Sequence[Input],
    timeouts: Timeouts,
    taken_in: Sequence[str] = (),
    live_state: str | None = None,
) -> list[str]:
    """The invariants of one order, checked on its inputs (events and process commands);
    ``taken_in`` is the order its live record took messages in, and ``live_state`` its state,
    if there is one."""
    found: list[str] = []
    facts = OrderFacts()
    for item in inputs:
        facts.add(item.envelope)
    if facts.count("CartFinalized") == 0:
        return found
    folded = fold_order(inputs, timeouts)
    if folded.process is not None and taken_in:
        state = folded.process.state
        if not is_terminal(state) or (live_state is not None and state.value != live_state):
            folded = verify.fold_in_live_order(inputs, taken_in, timeouts) or folded
    if folded.process is None:
        found.append(f"{order_id}: a finalized cart folds to no process")
    elif folded.process.quarantine is not None:
        found.append(f"{order_id}: quarantined: {folded.process.quarantine.reason}")
    elif not is_terminal(folded.process.state):
        found.append(f"{order_id}: not terminal, in {folded.process.state}")
    completed, cancelled = facts.count("OrderCompleted"), facts.count("OrderCancelled")
    discarded, refunded = facts.count("PaymentDiscarded"), facts.count("PaymentRefunded")
    if completed and cancelled:
        found.append(f"{order_id}: both completed and cancelled")
    if completed and (facts.count("PaymentFinalized") != 1 or facts.count("PackageWasSent") != 1):
        found.append(
            f"{order_id}: completed with {facts.count('PaymentFinalized')} payments and "
            f"{facts.count('PackageWasSent')} packages"
        )
    if completed and discarded + refunded:
        found.append(f"{order_id}: completed, yet its payment was discarded or refunded")
    if cancelled and facts.count("PaymentFinalized") and discarded + refunded != 1:
        found.append(
            f"{order_id}: cancelled with a finalized payment, discarded {discarded} and "
            f"refunded {refunded} times (exactly one of them once is right)"
        )
    if refunded and not _settled_before_refund(inputs):
        found.append(f"{order_id}: refunded without having settled first")
    folded_state = None if folded.process is None else folded.process.state.value
    found += shipped_yet_given_back(order_id, facts, cancelled > 0 or folded_state == "Cancelled")
    if ESCALATED in (folded_state, live_state):
        found.append(
            f"{order_id}: ended {ESCALATED}: its package was sent to a cancelled process, "
            "which needs an operator"
        )
    return found


def shipped_yet_given_back(
    order_id: str,
    facts: OrderFacts,
    cancelled: bool,
    compensations: frozenset[str] = PACKAGE_COMPENSATIONS,
) -> list[str]:
    """A package sent for an order that ended cancelled with its payment given back: the
    customer has the goods and the money, unless the package's compensation is recorded."""
    given_back = [t for t in GIVEN_BACK if facts.count(t)]
    if not (facts.count("PackageWasSent") and cancelled and given_back):
        return []
    if any(facts.count(t) for t in compensations):
        return []
    return [
        f"{order_id}: its package was sent, yet it ended cancelled with its payment "
        f"{' and '.join(t.removeprefix('Payment').lower() for t in given_back)}"
    ]


def unapplied(order_id: str, inputs: Sequence[Input], applied: Sequence[str] | None) -> list[str]:
    """Input messages the process reacts to (timeouts aside) that its live record never took
    in; ``applied`` is the live record's list (``None``: the order has no live record).

    Nothing is asserted for an order with ``MAX_APPLIED_IDS`` inputs or more: its record may
    have dropped the oldest ids."""
    if not any(item.envelope.type == "CartFinalized" for item in inputs):
        return []  # no process was ever started
    if len(inputs) >= MAX_APPLIED_IDS:
        return []
    if applied is None:
        return [f"{order_id}: no live process record, so none of its inputs was applied"]
    missing = set(verify.untaken(inputs, applied))
    found, seen = [], set()
    for item in inputs:
        message_id = item.envelope.message_id
        if message_id in missing and message_id not in seen:
            seen.add(message_id)
            found.append(
                f"{order_id}: {item.envelope.type} {message_id} "
                f"({PROCESS_INPUTS[item.topic_index]} offset {item.offset}) was neither applied "
                "nor recorded as ignored by its live process"
            )
    return found


@dataclass(frozen=True)
class LiveRecord:
    """What the checker reads of a live process record: its state and the ids it took in."""

    state: str | None
    applied: tuple[str, ...]


def live_record(record: TableRecord | None) -> LiveRecord | None:
    """The live record of one order, ``None`` when the table has none (or deleted it).

    Read as plain JSON, not as a ``Process``, so that a state the checker's own code does not
    know yet still reads; an unreadable record reads as empty (verify reports it)."""
    if record is None or record.value is None:
        return None
    try:
        value = json.loads(record.value)
    except ValueError:
        return LiveRecord(None, ())
    if not isinstance(value, dict):
        return LiveRecord(None, ())
    state, applied = value.get("state"), value.get("applied")
    return LiveRecord(
        state if isinstance(state, str) else None,
        tuple(str(i) for i in applied) if isinstance(applied, list) else (),
    )


def _settled_before_refund(inputs: Iterable[Input]) -> bool:
    for item in inputs:
        if item.envelope.type == "PaymentSettled":
            return True
        if item.envelope.type == "PaymentRefunded":
            return False
    return False


def double_effects(envelopes: Iterable[Envelope]) -> list[str]:
    """Commands that produced two different events of one type: an effect that happened twice.

    Copies of one event (same message id, e.g. an outbox row published again) are not effects.
    """
    decisions: dict[tuple[str, str], set[str]] = defaultdict(set)
    for envelope in envelopes:
        if envelope.causation_id is not None:
            decisions[(envelope.causation_id, envelope.type)].add(envelope.message_id)
    return [
        f"command {cause} caused {len(ids)} different {event_type} events"
        for (cause, event_type), ids in decisions.items()
        if len(ids) > 1
    ]


def stock_violations(
    seeded: Mapping[str, int], stock: Mapping[str, int], shipped: Mapping[str, int]
) -> list[str]:
    found = [f"{sku}: negative stock {qty}" for sku, qty in stock.items() if qty < 0]
    for sku, quantity in seeded.items():
        expected = quantity - shipped.get(sku, 0)
        if stock.get(sku, 0) != expected:
            found.append(
                f"{sku}: stock {stock.get(sku, 0)}, but seeded {quantity} - shipped "
                f"{shipped.get(sku, 0)} = {expected}"
            )
    return found


def shipped_quantities(envelopes: Iterable[Envelope]) -> Counter[str]:
    """Items shipped, counting each PackageWasSent once whatever its copies."""
    shipped: Counter[str] = Counter()
    seen: set[str] = set()
    for envelope in envelopes:
        if isinstance(envelope.data, PackageWasSent) and envelope.message_id not in seen:
            seen.add(envelope.message_id)
            for item in envelope.data.product_items:
                shipped[item.product_id] += item.quantity
    return shipped


def run(settings: Settings, seeded: Mapping[str, int], prefix: str = "") -> list[str]:
    timeouts = settings.timeouts()
    live = read_table(settings, settings.process_changelog_topic())
    violations: list[str] = []
    envelopes: list[Envelope] = []
    orders = 0
    for part in scan(settings):
        inputs = list(part.merged())
        envelopes.extend(i.envelope for i in inputs)
        for order_id, order_inputs in by_order(inputs).items():
            if order_id.startswith(prefix):
                orders += 1
                record = live_record(live.get(order_id))
                if record is None:
                    violations += order_violations(order_id, order_inputs, timeouts)
                    violations += unapplied(order_id, order_inputs, None)
                    continue
                violations += order_violations(
                    order_id, order_inputs, timeouts, record.applied, record.state
                )
                violations += unapplied(order_id, order_inputs, record.applied)
    violations.extend(double_effects(envelopes))
    with connect(settings.database_url) as conn:
        rows = conn.execute("SELECT sku, quantity FROM inventory").fetchall()
        stock: dict[str, int] = {sku: quantity for sku, quantity in rows}
        doubled = conn.execute(
            "SELECT order_id FROM packages GROUP BY order_id HAVING count(*) > 1"
        ).fetchall()
    violations.extend(f"{order_id}: more than one package" for (order_id,) in doubled)
    violations.extend(stock_violations(seeded, stock, shipped_quantities(envelopes)))
    print(f"check: {orders} orders, {len(envelopes)} records read", file=sys.stderr)
    return violations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.tools.check")
    parser.add_argument("--seeded", nargs="*", default=[], help="SKU=QTY as seeded before the run")
    parser.add_argument("--orders", default="", help="check only order ids with this prefix")
    parser.add_argument("--json-out", type=Path, help="also write the findings here as JSON")
    args = parser.parse_args(argv)
    seeded = {sku: int(qty) for sku, qty in (item.split("=", 1) for item in args.seeded)}
    settings = get_settings()
    violations = run(settings, seeded, args.orders)
    for violation in violations:
        print(f"VIOLATION {violation}")
    report: verify.Report | None = None
    try:
        report = verify.verify(settings)
    except LookupError as error:
        print(f"verify cannot run: {error}", file=sys.stderr)
    verified = 2 if report is None else 1 if report.differences else 0
    if report is not None:
        print(report.summary())
    if args.json_out is not None:
        findings = {
            "violations": violations,
            "verify_exit": verified,
            "verify": None if report is None else report.as_json(),
        }
        args.json_out.write_text(json.dumps(findings, indent=2))
    if violations or verified != 0:
        print(f"check: {len(violations)} violations, verify exit {verified}")
        return 1
    print("check: every invariant holds and verify found no difference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
