"""The orders read model's store in PostgreSQL: ``orders_view`` and its bookkeeping.

``apply_batch`` writes one batch in one transaction: the rows, the applied event ids (a copy
of an event changes nothing) and the partitions' next offsets (a record delivered again is
skipped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aggregates.messages import Envelope, order_id_of
from streams.postgres.db import Connection, columns
from streams.read_model.projection import COLUMNS, PROJECTED_TYPES, OrderView, project


@dataclass(frozen=True)
class Projected:
    """One consumed events record; ``envelope`` is ``None`` when it could not be decoded, or
    is of a type the view does not show."""

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
        conn.execute(
            """
            INSERT INTO read_model_offsets (topic, partition, next_offset)
            SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[])
            ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
            """,
            columns([(t, p, o) for (t, p), o in next_offsets.items()], 3),
        )
    return changed


def _lock_positions(conn: Connection, tps: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    conn.execute(
        """
        INSERT INTO read_model_offsets (topic, partition, next_offset)
        SELECT t, p, 0 FROM unnest(%s::text[], %s::int[]) AS u(t, p)
        ON CONFLICT DO NOTHING
        """,
        columns(tps, 2),
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
    conn.execute(
        "INSERT INTO read_model_applied (message_id, order_id)"
        " SELECT * FROM unnest(%s::text[], %s::text[])",
        columns(applied, 2),
    )
    rows = [tuple(getattr(view, c) for c in COLUMNS) for view in changed.values()]
    conn.execute(_UPSERT_VIEWS, columns(rows, len(COLUMNS)))
    return len(changed)


def _sql_type(column: str) -> str:
    if column.endswith("_at"):
        return "timestamptz"
    return "numeric" if column == "total_price" else "text"


_UPSERT_VIEWS = f"""
    INSERT INTO orders_view ({", ".join(COLUMNS)})
    SELECT * FROM unnest({", ".join(f"%s::{_sql_type(c)}[]" for c in COLUMNS)})
    ON CONFLICT (order_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])}
"""


def fetch(conn: Connection, order_ids: Sequence[str]) -> dict[str, OrderView]:
    """The rows of ``order_ids`` that exist."""
    return {
        str(row[0]): OrderView(*row)
        for row in conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM orders_view WHERE order_id = ANY(%s)",
            (list(order_ids),),
        )
    }


def count_rows(conn: Connection) -> int:
    """How many orders the read model shows."""
    row = conn.execute("SELECT count(*) FROM orders_view").fetchone()
    return int(row[0]) if row else 0
