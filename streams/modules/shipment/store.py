"""The shipment module's SQL: inventory, packages, cancellations, inbox and outbox.

Every function runs inside the caller's transaction; none of them commits. The handler's
functions take a whole batch: one statement per table and batch (``unnest`` of one array per
column), not one per command.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence

from aggregates.messages import Envelope, ProductItem
from streams.kafka.codec import encode, key_of
from streams.modules.shipment.cancellation import Cancelled, Known, Shipped
from streams.postgres.db import Connection, columns


class UnknownSku(LookupError):
    """A stock change for a product that has no stock row."""


# Inbox


def remember(conn: Connection, message_ids: Sequence[str]) -> set[str]:
    """Record ``message_ids`` as processed; the ones that were not yet (the others are
    duplicates).

    A concurrent transaction inserting one of the ids makes this wait until it commits.
    """
    rows = conn.execute(
        """
        INSERT INTO inbox (message_id) SELECT * FROM unnest(%s::text[])
        ON CONFLICT DO NOTHING RETURNING message_id
        """,
        (list(message_ids),),
    ).fetchall()
    return {str(row[0]) for row in rows}


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


class PackageConflict(RuntimeError):
    """An order got a package from another transaction despite the order lock: the batch is
    undone and processed again, and then sees that package."""


def add_packages(
    conn: Connection, packages: Sequence[tuple[str, str, Iterable[ProductItem]]]
) -> None:
    """Insert the packages (package id, order id, items); none of their orders may have one."""
    if not packages:
        return
    cursor = conn.execute(
        """
        INSERT INTO packages (package_id, order_id, items)
        SELECT package_id, order_id, items::jsonb
        FROM unnest(%s::text[], %s::text[], %s::text[]) AS p (package_id, order_id, items)
        ON CONFLICT DO NOTHING
        """,
        columns(
            [
                (package_id, order_id, json.dumps([i.model_dump(mode="json") for i in items]))
                for package_id, order_id, items in packages
            ],
            3,
        ),
    )
    if cursor.rowcount != len(packages):
        raise PackageConflict(f"{len(packages) - cursor.rowcount} orders already had a package")


def shipments_of(conn: Connection, order_ids: Iterable[str]) -> dict[str, Known]:
    """What the module knows of each of ``order_ids`` that it knows anything of: its package,
    else its cancellation."""
    rows = conn.execute(
        """
        SELECT o.order_id, p.package_id, c.reason
        FROM unnest(%s::text[]) AS o (order_id)
        LEFT JOIN packages AS p USING (order_id)
        LEFT JOIN shipment_cancellations AS c USING (order_id)
        WHERE p.package_id IS NOT NULL OR c.reason IS NOT NULL
        """,
        (sorted(set(order_ids)),),
    ).fetchall()
    return {
        str(order_id): Shipped(str(package_id))
        if package_id is not None
        else Cancelled(str(reason))
        for order_id, package_id, reason in rows
    }


def cancel_shipments(conn: Connection, cancellations: Sequence[tuple[str, str, str]]) -> None:
    """Record that each order (order id, reason, message id) will never be shipped; recording
    one again changes nothing."""
    if cancellations:
        conn.execute(
            """
            INSERT INTO shipment_cancellations (order_id, reason, message_id)
            SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])
            ON CONFLICT DO NOTHING
            """,
            columns(cancellations, 3),
        )


# Outbox


def append_to_outbox(conn: Connection, topic: str, envelopes: Sequence[Envelope]) -> None:
    """The envelopes, in their order (the relay publishes by id)."""
    if not envelopes:
        return
    conn.execute(
        """
        INSERT INTO outbox (message_id, topic, key, value)
        SELECT message_id, %s, key, value
        FROM unnest(%s::text[], %s::bytea[], %s::bytea[]) WITH ORDINALITY
            AS e (message_id, key, value, position)
        ORDER BY position
        """,
        (topic, *columns([(e.message_id, key_of(e), encode(e)) for e in envelopes], 3)),
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
