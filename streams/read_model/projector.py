"""The orders read model: one ``orders_view`` row per order in PostgreSQL, for reports.

``project(view, envelope)`` is pure and order-independent: a state or payment status only
moves forward (by rank), timestamps are the events' own. So the rows do not depend on how the
four events topics interleave, and a rebuild gives the same rows as the live projection.

``apply_batch`` writes one batch in one transaction: the rows, the applied event ids (a copy
of an event changes nothing) and the partitions' next offsets (a record delivered again is
skipped). ``OrdersProjector`` is the runner component that consumes the events topics and
positions itself from those offsets, never from Kafka's committed offsets.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka import Message as KafkaRecord

from aggregates.messages import (
    CartFinalized,
    Envelope,
    OrderCancelled,
    OrderCompleted,
    OrderInitialized,
    OrderPaymentRecorded,
    PackageWasSent,
    PaymentDiscarded,
    PaymentFailed,
    PaymentFinalized,
    PaymentRefunded,
    PaymentRequested,
    PaymentSettled,
    order_id_of,
)
from streams.kafka.codec import DecodeError, decode, partition_of
from streams.kafka.consuming import take
from streams.kafka.topics import ACCEPTED_TYPES, EVENT_TOPICS
from streams.observability import liveness
from streams.observability.logs import get_logger
from streams.postgres.db import Connection, connect
from streams.postgres.migrate import migrate
from streams.settings import Settings

log = get_logger(__name__)

STATE_RANK: Final = {
    "pending": 1,
    "initialized": 2,
    "paid": 3,
    "shipped": 4,
    "completed": 5,
    "cancelled": 5,
}
PAYMENT_RANK: Final = {
    "requested": 1,
    "finalized": 2,
    "settled": 3,
    "failed": 4,
    "discarded": 4,
    "refunded": 5,
}
PAYMENT_STATUS: Final = {
    PaymentRequested: "requested",
    PaymentFinalized: "finalized",
    PaymentFailed: "failed",
    PaymentSettled: "settled",
    PaymentDiscarded: "discarded",
    PaymentRefunded: "refunded",
}
PROJECTED_TYPES: Final = frozenset(
    {
        "CartFinalized",
        "OrderInitialized",
        "OrderPaymentRecorded",
        "PackageWasSent",
        "OrderCompleted",
        "OrderCancelled",
        *(cls.__name__ for cls in PAYMENT_STATUS),
    }
)


@dataclass(frozen=True)
class OrderView:
    """One ``orders_view`` row; the fields are the table's columns, in order."""

    order_id: str
    client_id: str | None = None
    total_price: Decimal | None = None
    currency: str | None = None
    state: str = "pending"
    payment_status: str | None = None
    payment_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    shipped_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancellation_reason: str | None = None


COLUMNS: Final = tuple(f.name for f in fields(OrderView))


def project(view: OrderView | None, envelope: Envelope) -> OrderView | None:
    """``view`` after ``envelope``; ``None`` when the event is not one the read model shows."""
    if envelope.type not in PROJECTED_TYPES:
        return None
    at = envelope.occurred_at
    row = view or OrderView(order_id_of(envelope))
    row = replace(row, updated_at=at if row.updated_at is None else max(row.updated_at, at))
    match envelope.data:
        case CartFinalized() as cart:
            row = replace(
                row,
                client_id=cart.client_id,
                total_price=cart.total_price,
                currency=cart.currency,
                created_at=at,
            )
            return _advance(row, "pending")
        case OrderInitialized() as order:
            row = replace(
                row,
                client_id=row.client_id or order.client_id,
                total_price=order.total_price if row.total_price is None else row.total_price,
            )
            return _advance(row, "initialized")
        case OrderPaymentRecorded(payment_id=payment_id):
            return _advance(replace(row, payment_id=row.payment_id or payment_id), "paid")
        case PackageWasSent():
            return _advance(replace(row, shipped_at=at), "shipped")
        case OrderCompleted():
            if _advances(row.state, "completed"):
                return replace(row, state="completed", completed_at=at)
            return row
        case OrderCancelled(reason=reason):
            if _advances(row.state, "cancelled"):
                return replace(row, state="cancelled", cancelled_at=at, cancellation_reason=reason)
            return row
    status = PAYMENT_STATUS[type(envelope.data)]
    paid_with: str | None = getattr(envelope.data, "payment_id", None)
    row = replace(row, payment_id=row.payment_id or paid_with)
    current = PAYMENT_RANK.get(row.payment_status or "", 0)
    if PAYMENT_RANK[status] > current:
        row = replace(row, payment_status=status)
    return row


def _advances(current: str, new: str) -> bool:
    return STATE_RANK[new] > STATE_RANK[current]


def _advance(row: OrderView, state: str) -> OrderView:
    return replace(row, state=state) if _advances(row.state, state) else row


# Storage


@dataclass(frozen=True)
class Projected:
    """One consumed events record; ``envelope`` is ``None`` when it could not be decoded."""

    topic: str
    partition: int
    offset: int
    envelope: Envelope | None


def reset(conn: Connection) -> None:
    """Empty the read model and its positions: the next projection starts from the beginning."""
    with conn.transaction():
        conn.execute("TRUNCATE orders_view, read_model_applied, read_model_offsets")


def positions(conn: Connection, tps: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The stored next offset of each of ``tps`` that has one."""
    rows = conn.execute(
        """
        SELECT o.topic, o.partition, o.next_offset FROM read_model_offsets o
        JOIN unnest(%s::text[], %s::int[]) AS t(topic, partition) USING (topic, partition)
        """,
        ([t for t, _ in tps], [p for _, p in tps]),
    ).fetchall()
    return {(str(t), int(p)): int(o) for t, p, o in rows}


def apply_batch(
    conn: Connection,
    records: Sequence[Projected],
    ends: Mapping[tuple[str, int], int] | None = None,
) -> int:
    """Project ``records`` in one transaction; return how many rows changed.

    Records below their partition's stored next offset, and events applied already, are
    skipped. The next offsets move past ``records`` (and to ``ends``, when given: a rebuild's
    partition ends, which may lie past the last record).
    """
    ends = ends or {}
    tps = sorted({(r.topic, r.partition) for r in records} | set(ends))
    if not tps:
        return 0
    with conn.transaction():
        stored = _lock_positions(conn, tps)
        fresh = [r for r in records if r.offset >= stored.get((r.topic, r.partition), 0)]
        events = [r.envelope for r in fresh if r.envelope and r.envelope.type in PROJECTED_TYPES]
        changed = _project_events(conn, events)
        next_offsets = dict(stored)
        for r in fresh:
            key = (r.topic, r.partition)
            next_offsets[key] = max(next_offsets.get(key, 0), r.offset + 1)
        for key, end in ends.items():
            next_offsets[key] = max(next_offsets.get(key, 0), end)
        with conn.cursor() as cursor:
            cursor.executemany(
                """
                INSERT INTO read_model_offsets (topic, partition, next_offset)
                VALUES (%s, %s, %s)
                ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
                """,
                [(t, p, o) for (t, p), o in next_offsets.items()],
            )
    return changed


def _lock_positions(conn: Connection, tps: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO read_model_offsets (topic, partition, next_offset) VALUES (%s, %s, 0)
            ON CONFLICT DO NOTHING
            """,
            tps,
        )
    rows = conn.execute(
        """
        SELECT o.topic, o.partition, o.next_offset FROM read_model_offsets o
        JOIN unnest(%s::text[], %s::int[]) AS t(topic, partition) USING (topic, partition)
        ORDER BY o.topic, o.partition
        FOR UPDATE OF o
        """,
        ([t for t, _ in tps], [p for _, p in tps]),
    ).fetchall()
    return {(str(t), int(p)): int(o) for t, p, o in rows}


def _project_events(conn: Connection, events: Sequence[Envelope]) -> int:
    if not events:
        return 0
    ids = list({e.message_id for e in events})
    seen = {
        str(row[0])
        for row in conn.execute(
            "SELECT message_id FROM read_model_applied WHERE message_id = ANY(%s)", (ids,)
        )
    }
    order_ids = sorted({order_id_of(e) for e in events})
    # One writer per order at a time, whoever else projects (locks taken in id order).
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(id, 7)) FROM unnest(%s::text[]) AS id"
        " ORDER BY id",
        (order_ids,),
    )
    views = {
        str(row[0]): OrderView(*row)
        for row in conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM orders_view WHERE order_id = ANY(%s)",
            (order_ids,),
        )
    }
    applied: list[tuple[str, str]] = []
    changed: dict[str, OrderView] = {}
    for event in events:
        if event.message_id in seen:
            continue
        seen.add(event.message_id)
        order_id = order_id_of(event)
        after = project(views.get(order_id), event)
        if after is None:
            continue
        applied.append((event.message_id, order_id))
        if after != views.get(order_id):
            views[order_id] = changed[order_id] = after
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO read_model_applied (message_id, order_id) VALUES (%s, %s)", applied
        )
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
        cursor.executemany(
            f"""
            INSERT INTO orders_view ({", ".join(COLUMNS)})
            VALUES ({", ".join(["%s"] * len(COLUMNS))})
            ON CONFLICT (order_id) DO UPDATE SET {updates}
            """,
            [astuple(view) for view in changed.values()],
        )
    return len(changed)


def fetch(conn: Connection, order_ids: Sequence[str]) -> dict[str, OrderView]:
    """The rows of ``order_ids`` that exist."""
    return {
        str(row[0]): OrderView(*row)
        for row in conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM orders_view WHERE order_id = ANY(%s)",
            (list(order_ids),),
        )
    }


# The runner component


class OrdersProjector:
    """Projects the four events topics into ``orders_view``; `run(stop)` loops until stopped.

    Consumer group ``<app_id>-read-model``, read_committed. Its position comes from
    ``read_model_offsets`` (set on every assignment), so a rebuild that truncates the tables
    makes it start again from the beginning at its next assignment. Kafka offsets are
    committed too, only so that lag tools show where it stands.
    """

    def __init__(self, settings: Settings, batch_size: int = 500) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.group = f"{settings.app_id}-read-model"
        self.topics = {settings.topic(name): name for name in EVENT_TOPICS}
        self.ready = threading.Event()
        self._conn: Connection | None = None

    def run(self, stop: threading.Event) -> None:
        migrate(self.settings.database_url)
        self._conn = connect(self.settings.database_url)
        try:
            consumer = Consumer(
                self.settings.member_config(
                    self.group,
                    # range: partition p of every events topic goes to the same member
                    **{"partition.assignment.strategy": "range"},
                )
            )
            try:
                consumer.subscribe(list(self.topics), on_assign=self._on_assign)
                while not stop.is_set():
                    liveness.beat()
                    self._poll(consumer)
            finally:
                consumer.close()
        finally:
            self._conn.close()
            self._conn = None

    def _poll(self, consumer: Consumer) -> None:
        assert self._conn is not None
        records = take(consumer, self.batch_size, timeout=0.2)
        for record in records:
            if record.error() is not None:
                log.warning("read model consumer error", error=str(record.error()))
        batch = [self._projected(r) for r in records if r.error() is None]
        if batch:
            changed = apply_batch(self._conn, batch)
            consumer.commit(asynchronous=True)
            log.debug("read model batch", records=len(batch), changed=changed)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._conn is not None
        stored = positions(self._conn, [(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
        self.ready.set()
        log.info("read model partitions assigned", partitions=len(partitions))

    def _projected(self, record: KafkaRecord) -> Projected:
        topic = record.topic() or ""
        try:
            envelope: Envelope | None = decode(
                record.key(), record.value(), ACCEPTED_TYPES[self.topics[topic]]
            )
        except DecodeError as error:
            log.warning("read model skips an undecodable record", topic=topic, reason=error.reason)
            envelope = None
        return Projected(topic, partition_of(record), record.offset() or 0, envelope)
