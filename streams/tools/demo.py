"""The demo: drive many carts through running workers and report what happened.

    python -m streams.tools.demo [--orders 1000] [--rate 200] [--timeout 300]

It seeds a catalogue, opens, fills and finalizes carts with a documented mix of outcomes,
watches the process table's changelog until every process is terminal, and prints outcomes,
throughput and latency (FinalizeCart sent -> terminal state written by the worker).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from confluent_kafka import Consumer, Producer, TopicPartition

from aggregates.messages import (
    AddProduct,
    FinalizeCart,
    Message,
    OpenCart,
    PaymentMethod,
)
from process_manager import TERMINAL_STATES
from streams.kafka.codec import encode, external, key_of
from streams.kafka.topics import commands_of
from streams.modules.shipment.store import set_stock
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.settings import Settings, get_settings
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


MIX = [
    Kind("paid and shipped", 80, "card_ok", False, "Completed"),
    Kind("card declined", 7, "card_declined", False, "Cancelled/PaymentFailed"),
    Kind("out of stock, payment discarded", 5, "card_ok", True, "Cancelled/ProductWasOutOfStock"),
    Kind(
        "out of stock, payment refunded",
        4,
        "card_settles_immediately",
        True,
        "Cancelled/ProductWasOutOfStock",
    ),
    Kind("gateway silent, timed out", 4, "card_no_response", False, "Cancelled/TimedOut"),
]
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
    """The latest state of each demo order, read from the process table's changelog."""

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


def changelog_reader(settings: Settings) -> Consumer:
    topic = settings.process_changelog_topic()
    consumer = Consumer(
        settings.confluent_config(
            **{"group.id": f"demo-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    # Start at the ends as they are now: OFFSET_END would be resolved lazily, after records
    # written meanwhile, which the demo would then never see.
    ends = [
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
    ]
    consumer.assign(
        [TopicPartition(topic, p, end) for p, end in zip(partitions, ends, strict=True)]
    )
    return consumer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(settings: Settings, count: int, rate: float, timeout: float) -> Tracker:
    run_id = uuid.uuid4().hex[:6]
    orders = {f"demo-{run_id}-{i:05d}": kind_of(i) for i in range(count)}
    tracker = Tracker(orders)
    seed_stock(settings)
    reader = changelog_reader(settings)
    producer = Producer(settings.producer_config(**{"linger.ms": 5, "enable.idempotence": True}))
    topic = settings.topic(commands_of("carts"))
    print(f"Driving {count} carts (run {run_id}) at up to {rate:.0f} carts/s", file=sys.stderr)
    started = time.monotonic()
    bar = Progress("orders", count, unit="terminal", rate_unit="orders")
    for index, (order_id, kind) in enumerate(orders.items()):
        for key, value in cart_records(order_id, index, kind):
            producer.produce(topic, key=key, value=value)
        tracker.finalized_at[order_id] = time.time()
        producer.poll(0)
        _drain(reader, tracker, 0)
        ahead = (index + 1) / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        if index % 50 == 0:
            bar.update(tracker.done())
    producer.flush(30)
    deadline = time.monotonic() + timeout
    while tracker.done() < count and time.monotonic() < deadline:
        _drain(reader, tracker, 0.2)
        bar.update(tracker.done())
    bar.update(tracker.done())
    bar.finish()
    reader.close()
    return tracker


def _drain(reader: Consumer, tracker: Tracker, timeout: float) -> None:
    for message in reader.consume(1000, timeout=timeout):
        if message.error() is None and message.key() is not None:
            tracker.observe(message.key(), message.value(), message.timestamp()[1])  # type: ignore[arg-type]


def summary(tracker: Tracker) -> tuple[str, bool]:
    lines = []
    rows = Counter()  # type: Counter[tuple[str, str]]
    for order_id, kind in tracker.orders.items():
        state = tracker.state.get(order_id, "unknown")
        reason = tracker.reason.get(order_id)
        outcome = state if not reason else f"{state}/{reason}"
        rows[(kind.name, outcome)] += 1
    lines.append(f"{'kind':36} {'outcome':34} {'orders':>7}  as expected")
    expected_by_kind = {k.name: k.expected for k in MIX}
    all_expected = True
    for (kind_name, outcome), n in sorted(rows.items()):
        ok = outcome == expected_by_kind[kind_name]
        all_expected &= ok
        lines.append(f"{kind_name:36} {outcome:34} {n:7d}  {'yes' if ok else 'NO'}")
    done = tracker.done()
    total = len(tracker.orders)
    lines.append("")
    if tracker.terminal_at:
        first = min(tracker.finalized_at.values())
        last = max(tracker.terminal_at.values())
        elapsed = last - first
        lines.append(
            f"terminal: {done}/{total} in {elapsed:.1f} s (first FinalizeCart to last terminal "
            f"state, timeouts included) = {done / elapsed:.1f} orders/s"
        )
        for label, names in [
            ("all orders", {k.name for k in MIX}),
            ("paid and shipped", {"paid and shipped"}),
        ]:
            latencies = [
                (tracker.terminal_at[o] - tracker.finalized_at[o]) * 1000
                for o, k in tracker.orders.items()
                if k.name in names and o in tracker.terminal_at
            ]
            if latencies:
                lines.append(
                    f"latency FinalizeCart -> terminal, {label:16}: "
                    f"p50 {percentile(latencies, 0.50):7.0f} ms  "
                    f"p95 {percentile(latencies, 0.95):7.0f} ms  "
                    f"p99 {percentile(latencies, 0.99):7.0f} ms"
                )
    return "\n".join(lines), done == total and all_expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.tools.demo")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="carts per second")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at the end")
    args = parser.parse_args(argv)
    settings = get_settings()
    tracker = run(settings, args.orders, args.rate, args.timeout)
    text, ok = summary(tracker)
    print(text)
    print(f"\nweb view: http://127.0.0.1:{settings.web_port}/ui/")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
