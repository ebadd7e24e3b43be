"""The demo: drive many carts through running workers and report what happened.

    python -m streams.tools.demo [--orders 1000] [--rate 200] [--timeout 300] [--quiet 30]
                                 [--workers N]

With ``--workers N`` it first waits until every consumer group of the system is stable with N
members: a worker that joins after the others have started moves partitions, and carts sent
during that rebalance wait for it. It seeds a catalogue, opens, fills and finalizes carts with
a documented mix of outcomes, follows the order and payment events (``streams.tools.outcomes``)
until every order has ended or nothing changed for ``--quiet`` seconds, and prints outcomes,
throughput and latency (FinalizeCart sent -> the event that ended the order). It reads only the
topics, so it reports the process manager and the stateless saga (``COORDINATION=saga``)
alike: each kind's outcome is compared with the contract's, and the exit code with what the
running coordination is known to reach (the saga leaves some orders unended, by design).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from aggregates.messages import (
    AddProduct,
    FinalizeCart,
    Message,
    OpenCart,
    PaymentMethod,
)
from process_manager import TERMINAL_STATES
from streams.kafka import groups
from streams.kafka.codec import encode, external, key_of
from streams.kafka.topics import commands_of, events_of
from streams.modules.shipment.store import set_stock
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.settings import Settings, get_settings
from streams.tools.outcomes import Outcomes
from streams.tools.progress import Progress

CATALOGUE = [f"sku-{n:03d}" for n in range(1, 21)]
SCARCE = "sku-scarce"  # never in stock: orders for it run out of stock after payment
TERMINAL = frozenset(state.value for state in TERMINAL_STATES)


@dataclass(frozen=True)
class Kind:
    """One outcome the demo aims for, with its share of the orders (per 100)."""

    name: str
    share: int
    payment_method: PaymentMethod
    scarce: bool
    expected: str


PM_DECLINED = "Cancelled/PaymentFailed, payment failed"
OUT_OF_STOCK = "Cancelled/ProductWasOutOfStock"
MIX = [
    Kind("paid and shipped", 80, "card_ok", False, "Completed"),
    Kind("card declined", 7, "card_declined", False, PM_DECLINED),
    Kind(
        "out of stock, payment discarded", 5, "card_ok", True, f"{OUT_OF_STOCK}, payment discarded"
    ),
    Kind(
        "out of stock, payment refunded",
        4,
        "card_settles_immediately",
        True,
        f"{OUT_OF_STOCK}, payment refunded",
    ),
    Kind(
        "gateway silent, timed out",
        4,
        "card_no_response",
        False,
        "Cancelled/TimedOut, payment discarded",
    ),
]
SAGA_REACHES = {
    "paid and shipped": "Completed",
    "card declined": "not ended: order initialized, payment failed",
    "out of stock, payment discarded": f"{OUT_OF_STOCK}, payment discarded",
    "out of stock, payment refunded": (
        f"not ended: {OUT_OF_STOCK}, payment settled, discard rejected"
    ),
    "gateway silent, timed out": "not ended: order initialized, payment requested",
}
"""What the article's saga does with each kind (process_manager.saga): no reaction to a failed
payment, no timeout, no refund."""
assert sum(k.share for k in MIX) == 100


def kind_of(index: int) -> Kind:
    bucket = index % 100
    for kind in MIX:
        if bucket < kind.share:
            return kind
        bucket -= kind.share
    raise AssertionError("the mix covers 100 buckets")


def cart_commands(
    order_id: str,
    index: int,
    kind: Kind,
    catalogue: list[str] = CATALOGUE,
    scarce: str = SCARCE,
) -> list[Message]:
    """OpenCart, one or two AddProduct and FinalizeCart for the ``index``-th cart of a run."""
    products = [scarce] if kind.scarce else [catalogue[index % len(catalogue)]]
    if not kind.scarce and index % 3 == 0:
        products.append(catalogue[(index * 7 + 3) % len(catalogue)])
    commands: list[Message] = [OpenCart(cart_id=order_id, client_id=f"client-{index % 97}")]
    for n, product in enumerate(dict.fromkeys(products)):
        price = Decimal(f"{5 + (index + n) % 40}.99")
        commands.append(
            AddProduct(cart_id=order_id, product_id=product, quantity=1 + n, unit_price=price)
        )
    commands.append(FinalizeCart(cart_id=order_id, payment_method=kind.payment_method))
    return commands


def cart_records(
    order_id: str,
    index: int,
    kind: Kind,
    catalogue: list[str] = CATALOGUE,
    scarce: str = SCARCE,
) -> list[tuple[bytes, bytes]]:
    """The (key, value) records of one cart's commands, as a shop would send them."""
    envelopes = [external(c) for c in cart_commands(order_id, index, kind, catalogue, scarce)]
    return [(key_of(envelope), encode(envelope)) for envelope in envelopes]


def seed_stock(settings: Settings, quantity: int = 1_000_000) -> None:
    migrate(settings.database_url)
    with connect(settings.database_url) as conn, conn.transaction():
        for sku in CATALOGUE:
            set_stock(conn, sku, quantity)
        set_stock(conn, SCARCE, 0)


@dataclass
class Tracker:
    """The latest state of each order, read from the process table's changelog (chaos runs)."""

    orders: dict[str, Kind]
    finalized_at: dict[str, float] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)
    reason: dict[str, str | None] = field(default_factory=dict)
    terminal_at: dict[str, float] = field(default_factory=dict)

    def observe(self, key: bytes, value: bytes | None, timestamp_ms: int) -> None:
        order_id = key.decode()
        if order_id not in self.orders or value is None:
            return
        process = json.loads(value)
        self.state[order_id] = process["state"]
        self.reason[order_id] = process.get("cancellation_reason")
        if process["state"] not in TERMINAL:
            self.terminal_at.pop(order_id, None)
        elif order_id not in self.terminal_at:
            # the first write in a terminal state; later ones (a settlement noted after
            # completion) do not move it
            self.terminal_at[order_id] = timestamp_ms / 1000

    def done(self) -> int:
        return len(self.terminal_at)


def events_reader(settings: Settings) -> Consumer:
    """The order and payment events from their ends as they are now."""
    topics = [settings.topic(events_of("orders")), settings.topic(events_of("payments"))]
    consumer = Consumer(
        settings.confluent_config(
            **{"group.id": f"demo-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
    )
    # Start at the ends as they are now: OFFSET_END would be resolved lazily, after records
    # written meanwhile, which the demo would then never see.
    assignment = []
    for topic in topics:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            assignment.append(TopicPartition(topic, p, end))
    consumer.assign(assignment)
    return consumer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Run:
    """One demo run: the kind of each order, when its cart was finalized, how it ended."""

    kinds: dict[str, Kind]
    outcomes: Outcomes
    finalized_at: dict[str, float] = field(default_factory=dict)


def unsettled(
    described: Mapping[str, tuple[ConsumerGroupState, int]], workers: int
) -> dict[str, str]:
    """The groups, of (state, member count) by group, that are not stable with ``workers``
    members, each with what it is instead."""
    return {
        group: f"{state.name.lower()}, {members} member(s)"
        for group, (state, members) in described.items()
        if state != ConsumerGroupState.STABLE or members != workers
    }


def wait_for_groups(settings: Settings, workers: int, timeout: float = 120.0) -> float:
    """Until every member group is stable with ``workers`` members; the seconds it took."""
    admin = AdminClient(settings.confluent_config())
    started = time.monotonic()
    while True:
        futures = admin.describe_consumer_groups(list(groups.members(settings)))
        described = {}
        for group, future in futures.items():
            description = future.result(timeout=10)
            described[group] = (description.state, len(description.members))
        waiting = unsettled(described, workers)
        if not waiting:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise SystemExit(f"demo: groups not stable with {workers} member(s): {waiting}")
        time.sleep(0.25)


def run(settings: Settings, count: int, rate: float, timeout: float, quiet: float) -> Run:
    run_id = uuid.uuid4().hex[:6]
    kinds = {f"demo-{run_id}-{i:05d}": kind_of(i) for i in range(count)}
    demo = Run(kinds, Outcomes(set(kinds)))
    seed_stock(settings)
    reader = events_reader(settings)
    producer = Producer(
        settings.producer_config(
            **{"client.id": f"{settings.app_id}-demo", "linger.ms": 5, "enable.idempotence": True}
        )
    )
    topic = settings.topic(commands_of("carts"))
    print(
        f"Driving {count} carts (run {run_id}) at up to {rate:.0f} carts/s, "
        f"coordination: {settings.coordination}",
        file=sys.stderr,
    )
    started = time.monotonic()
    bar = Progress("orders", count, unit="ended", rate_unit="orders")
    for index, (order_id, kind) in enumerate(kinds.items()):
        for key, value in cart_records(order_id, index, kind):
            producer.produce(topic, key=key, value=value)
        demo.finalized_at[order_id] = time.time()
        producer.poll(0)
        _drain(reader, demo.outcomes, 0)
        ahead = (index + 1) / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        if index % 50 == 0:
            bar.update(demo.outcomes.done())
    producer.flush(30)
    deadline = time.monotonic() + timeout
    changes, changed, stalled = demo.outcomes.changes, time.monotonic(), False
    while demo.outcomes.done() < count and time.monotonic() < deadline:
        _drain(reader, demo.outcomes, 0.2)
        bar.update(demo.outcomes.done())
        if demo.outcomes.changes != changes:
            changes, changed = demo.outcomes.changes, time.monotonic()
        elif time.monotonic() - changed > quiet:
            stalled = True
            break
    bar.update(demo.outcomes.done())
    bar.finish()
    if stalled:
        print(f"  nothing changed for {quiet:.0f} s: stopped waiting", file=sys.stderr)
    reader.close()
    return demo


def _drain(reader: Consumer, outcomes: Outcomes, timeout: float) -> None:
    for message in reader.consume(1000, timeout=timeout):
        if message.error() is None and message.key() is not None:
            outcomes.observe(message.key(), message.value(), message.timestamp()[1])  # type: ignore[arg-type]


def summary(demo: Run, coordination: str = "process") -> tuple[str, bool]:
    """The outcome table and the figures; ok when every order reached what ``coordination``
    reaches (for the process manager: the contract's outcome)."""
    outcomes = demo.outcomes
    rows: Counter[tuple[str, str]] = Counter()
    for order_id, kind in demo.kinds.items():
        rows[(kind.name, outcomes.outcome(order_id))] += 1
    lines = [f"coordination: {coordination}", ""]
    lines.append(f"{'kind':34} {'outcome':76} {'orders':>6}  as expected")
    expected = {k.name: k.expected for k in MIX}
    reaches = expected if coordination == "process" else SAGA_REACHES
    as_known = True
    for (kind_name, outcome), n in sorted(rows.items()):
        as_known &= outcome == reaches[kind_name]
        ok = "yes" if outcome == expected[kind_name] else "NO"
        lines.append(f"{kind_name:34} {outcome:76} {n:6d}  {ok}")
    done, total = outcomes.done(), len(demo.kinds)
    lines.append("")
    if outcomes.ended_at:
        first = min(demo.finalized_at.values())
        elapsed = max(outcomes.ended_at.values()) - first
        lines.append(
            f"ended: {done}/{total} in {elapsed:.1f} s (first FinalizeCart to the last event "
            f"that ended an order, timeouts included) = {done / elapsed:.1f} orders/s"
        )
        for label, names in [
            ("all ended", {k.name for k in MIX}),
            ("paid and shipped", {"paid and shipped"}),
        ]:
            latencies = [
                (outcomes.ended_at[o] - demo.finalized_at[o]) * 1000
                for o, k in demo.kinds.items()
                if k.name in names and o in outcomes.ended_at
            ]
            if latencies:
                lines.append(
                    f"latency FinalizeCart -> ended, {label:16}: "
                    f"p50 {percentile(latencies, 0.50):7.0f} ms  "
                    f"p95 {percentile(latencies, 0.95):7.0f} ms  "
                    f"p99 {percentile(latencies, 0.99):7.0f} ms"
                )
    if coordination == "saga":
        lines.append(
            f"saga: {total - done} orders did not end (it has no timeout and no reaction to a "
            "failed payment) and no settled payment was refunded; every outcome as the saga "
            f"reaches it: {'yes' if as_known else 'NO'}"
        )
    return "\n".join(lines), as_known


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.tools.demo")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="carts per second")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at the end")
    parser.add_argument(
        "--quiet", type=float, default=30.0, help="stop waiting after this long without a change"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="first wait for N members in every group (0: no)"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.workers:
        took = wait_for_groups(settings, args.workers)
        print(
            f"{time.strftime('%H:%M:%S')} every group stable with {args.workers} member(s)"
            f" (waited {took:.1f} s)"
        )
    demo = run(settings, args.orders, args.rate, args.timeout, args.quiet)
    text, ok = summary(demo, settings.coordination)
    print(text)
    print(f"\nweb view: http://127.0.0.1:{settings.web_port}/ui/")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
