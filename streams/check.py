"""An independent check of what a run did, from the topics and PostgreSQL only.

    python -m streams.check [--seeded SKU=QTY ...] [--orders PREFIX]

It never asks the workers: it reads the events topics and `processes.commands` (committed
records), the inventory and packages tables, and asserts:

- every order's process, folded from its inputs, is terminal. The fold merges the topics by
  record timestamp; a transaction held up (by a broker restart, say) becomes visible later than
  its timestamps say, so when that fold is not terminal, the inputs are folded again in the
  order the live record took them in, if that order is a possible delivery order of the log
  (``verify.fold_in_live_order``: only the order of message ids comes from the worker);
- no order is both completed and cancelled;
- a completed order was paid once and shipped once, and nothing of it discarded or refunded;
- every finalized payment of a cancelled order was discarded or refunded exactly once;
- nothing was refunded unless it had settled first;
- no command took effect twice (one decision per command message id and event type);
- stock is not negative, and for every seeded product equals the seeded quantity minus the
  quantities shipped;
- and `verify` finds no difference from the live process states.

Exits 1 and prints every violation when any invariant fails.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from aggregates.messages import Envelope, PackageWasSent
from process_manager import Process, Timeouts, is_terminal
from streams import verify
from streams.postgres.db import connect
from streams.replay import (
    Input,
    TableRecord,
    by_order,
    fold_order,
    read_table,
    scan,
    worker_timeouts,
)
from streams.settings import Settings, get_settings


@dataclass
class OrderFacts:
    """What the events say about one order: the distinct events of each type, in log order."""

    events: dict[str, dict[str, Envelope]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, envelope: Envelope) -> None:
        self.events[envelope.type].setdefault(envelope.message_id, envelope)

    def count(self, event_type: str) -> int:
        return len(self.events.get(event_type, {}))


def order_violations(
    order_id: str, inputs: Sequence[Input], timeouts: Timeouts, taken_in: Sequence[str] = ()
) -> list[str]:
    """The invariants of one order, checked on its inputs (events and process commands);
    ``taken_in`` is the order its live record took messages in, if there is one."""
    found: list[str] = []
    facts = OrderFacts()
    for item in inputs:
        facts.add(item.envelope)
    if facts.count("CartFinalized") == 0:
        return found
    folded = fold_order(inputs, timeouts)
    if folded.process is not None and not is_terminal(folded.process.state) and taken_in:
        folded = verify.fold_in_live_order(inputs, taken_in, timeouts) or folded
    if folded.error is not None or folded.process is None:
        found.append(f"{order_id}: cannot be folded: {folded.error}")
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
    return found


def _taken_in(live: TableRecord | None) -> Sequence[str]:
    if live is None or live.value is None:
        return ()
    try:
        return Process.model_validate_json(live.value).applied
    except ValidationError:
        return ()  # verify reports an unreadable live record


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
    timeouts = worker_timeouts(settings)
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
                taken_in = _taken_in(live.get(order_id))
                violations.extend(order_violations(order_id, order_inputs, timeouts, taken_in))
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
    parser = argparse.ArgumentParser(prog="python -m streams.check")
    parser.add_argument("--seeded", nargs="*", default=[], help="SKU=QTY as seeded before the run")
    parser.add_argument("--orders", default="", help="check only order ids with this prefix")
    args = parser.parse_args(argv)
    seeded = {sku: int(qty) for sku, qty in (item.split("=", 1) for item in args.seeded)}
    settings = get_settings()
    violations = run(settings, seeded, args.orders)
    for violation in violations:
        print(f"VIOLATION {violation}")
    verified = verify.main([])
    if violations or verified != 0:
        print(f"check: {len(violations)} violations, verify exit {verified}")
        return 1
    print("check: every invariant holds and verify found no difference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
