"""The shipment module's SQL: inventory, packages, cancellations, inbox and outbox.

Every function runs inside the caller's transaction; none of them commits.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

from psycopg.types.json import Jsonb

from aggregates.messages import Envelope, ProductItem
from streams.kafka.codec import encode, key_of
from streams.modules.shipment.cancellation import Cancelled, Known, Shipped
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


# Orders

# The first key of the two-key advisory locks on orders (the one-key space, which the
# migrations lock in, does not overlap with it).
ORDER_LOCK_CLASS = 0x6F726472  # "ordr"


def lock_orders(conn: Connection, order_ids: Iterable[str]) -> None:
    """Hold a lock per order until the transaction ends, so that whether an order has a
    package or a cancellation is decided by one transaction at a time.

    The locks are taken in key order, so two batches never deadlock on them; take them before
    the stock rows. Two orders sharing a key only wait for each other.
    """
    keys = sorted({_order_key(order_id) for order_id in order_ids})
    if keys:
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, key) FROM unnest(%s::int4[]) AS key",
            (ORDER_LOCK_CLASS, keys),
        )


def _order_key(order_id: str) -> int:
    """A stable signed 32-bit key for ``order_id``."""
    key = zlib.crc32(order_id.encode())
    return key - (1 << 32) if key >= 1 << 31 else key


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


# Packages and cancellations


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


def shipment_of(conn: Connection, order_id: str) -> Known:
    """What the module knows of ``order_id``: its package, its cancellation, or nothing."""
    row = conn.execute(
        """
        SELECT p.package_id, c.reason
        FROM (SELECT %s::text AS order_id) AS o
        LEFT JOIN packages AS p USING (order_id)
        LEFT JOIN shipment_cancellations AS c USING (order_id)
        """,
        (order_id,),
    ).fetchone()
    assert row is not None
    package_id, reason = row
    if package_id is not None:
        return Shipped(str(package_id))
    return None if reason is None else Cancelled(str(reason))


def cancel_shipment(conn: Connection, order_id: str, reason: str, message_id: str) -> None:
    """Record that ``order_id`` will never be shipped; recording it again changes nothing."""
    conn.execute(
        """
        INSERT INTO shipment_cancellations (order_id, reason, message_id) VALUES (%s, %s, %s)
        ON CONFLICT DO NOTHING
        """,
        (order_id, reason, message_id),
    )


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
