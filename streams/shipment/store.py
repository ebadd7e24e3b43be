"""The shipment module's SQL: inventory, packages, inbox and outbox.

Every function runs inside the caller's transaction; none of them commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from psycopg.types.json import Jsonb

from aggregates.messages import Envelope, ProductItem
from streams.codec import encode, key_of
from streams.postgres.db import Connection


class UnknownSku(LookupError):
    """A stock change for a product that has no stock row."""


# Inbox


def remember(conn: Connection, message_id: str) -> bool:
    """Record ``message_id`` as processed; False when it already was (a duplicate).

    A concurrent transaction inserting the same id makes this wait until it commits.
    """
    cursor = conn.execute(
        "INSERT INTO inbox (message_id) VALUES (%s) ON CONFLICT DO NOTHING", (message_id,)
    )
    return cursor.rowcount == 1


# Inventory


def lock_stock(conn: Connection, skus: Iterable[str]) -> dict[str, int]:
    """The stock of ``skus``, row-locked in sku order (so two packages never deadlock).

    Products with no stock row are absent from the result: they have zero stock.
    """
    rows = conn.execute(
        "SELECT sku, quantity FROM inventory WHERE sku = ANY(%s) ORDER BY sku FOR UPDATE",
        (sorted(set(skus)),),
    ).fetchall()
    return {sku: quantity for sku, quantity in rows}


def take_stock(conn: Connection, quantities: Mapping[str, int]) -> None:
    """Decrement stock; the rows must be locked and sufficient (the CHECK is the last guard)."""
    skus = sorted(quantities)
    cursor = conn.execute(
        """
        UPDATE inventory SET quantity = inventory.quantity - taken.quantity, updated_at = now()
        FROM unnest(%s::text[], %s::int[]) AS taken (sku, quantity)
        WHERE inventory.sku = taken.sku
        """,
        (skus, [quantities[sku] for sku in skus]),
    )
    if cursor.rowcount != len(skus):
        raise UnknownSku(f"stock rows missing among {skus}")


def set_stock(conn: Connection, sku: str, quantity: int) -> None:
    conn.execute(
        """
        INSERT INTO inventory (sku, quantity) VALUES (%s, %s)
        ON CONFLICT (sku) DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = now()
        """,
        (sku, quantity),
    )


def stock_levels(conn: Connection, skus: Iterable[str] | None = None) -> dict[str, int]:
    """Stock per sku (every row, or the given skus that have a row), in sku order."""
    if skus is None:
        rows = conn.execute("SELECT sku, quantity FROM inventory ORDER BY sku").fetchall()
    else:
        rows = conn.execute(
            "SELECT sku, quantity FROM inventory WHERE sku = ANY(%s) ORDER BY sku",
            (list(skus),),
        ).fetchall()
    return {sku: quantity for sku, quantity in rows}


# Packages


def add_package(
    conn: Connection, package_id: str, order_id: str, items: Iterable[ProductItem]
) -> bool:
    """Insert the package; False when the order already has one (nothing is written)."""
    cursor = conn.execute(
        """
        INSERT INTO packages (package_id, order_id, items) VALUES (%s, %s, %s)
        ON CONFLICT DO NOTHING
        """,
        (package_id, order_id, Jsonb([item.model_dump(mode="json") for item in items])),
    )
    return cursor.rowcount == 1


def package_of(conn: Connection, order_id: str) -> str | None:
    row = conn.execute(
        "SELECT package_id FROM packages WHERE order_id = %s", (order_id,)
    ).fetchone()
    return None if row is None else str(row[0])


# Outbox


def append_to_outbox(conn: Connection, topic: str, envelope: Envelope) -> None:
    conn.execute(
        "INSERT INTO outbox (message_id, topic, key, value) VALUES (%s, %s, %s, %s)",
        (envelope.message_id, topic, key_of(envelope), encode(envelope)),
    )


def outbox_counts(conn: Connection) -> list[tuple[str, int, int]]:
    """(topic, unpublished, published) per topic."""
    rows = conn.execute(
        """
        SELECT topic, count(*) FILTER (WHERE published_at IS NULL), count(published_at)
        FROM outbox GROUP BY topic ORDER BY topic
        """
    ).fetchall()
    return [(str(topic), int(pending), int(done)) for topic, pending, done in rows]
