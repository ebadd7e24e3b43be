"""One batch's view of the shipment tables: read before its decisions, written after them.

The handler runs a batch in one Postgres transaction, with the batch's orders and stock rows
locked. ``Ledger.gather`` reads in one statement per table what the decisions ask: which
commands are new to the inbox, what is known of each order (its package or cancellation), the
stock. The decisions then read and write the ledger in command order, so a command sees the
packages, cancellations and stock of the commands before it, as it would in the tables.
``apply`` writes it all back, one statement per table.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aggregates.messages import Envelope, ProductItem, SendPackage, order_id_of
from streams.modules.shipment import store
from streams.modules.shipment.cancellation import Cancelled, Known, Shipped
from streams.postgres.db import Connection


@dataclass
class Ledger:
    fresh: set[str]
    """Message ids the inbox took in for this batch and no decision has claimed yet."""
    known: dict[str, Known]
    stock: dict[str, int]
    packages: list[tuple[str, str, tuple[ProductItem, ...]]] = field(default_factory=list)
    cancellations: list[tuple[str, str, str]] = field(default_factory=list)
    taken: Counter[str] = field(default_factory=Counter)
    outbox: defaultdict[str, list[Envelope]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def gather(
        cls, conn: Connection, commands: Sequence[Envelope], *, stock: bool = True
    ) -> Ledger:
        """Records every command in the inbox and locks the stock rows of their products
        (none with ``stock=False``: for refusals, which take no stock)."""
        return cls(
            fresh=store.remember(conn, [c.message_id for c in commands]),
            known=store.shipments_of(conn, (order_id_of(c.data) for c in commands)),
            stock=store.lock_stock(conn, products(commands)) if stock else {},
        )

    def remember(self, message_id: str) -> bool:
        """True the first time a new command asks; False for a duplicate."""
        if message_id not in self.fresh:
            return False
        self.fresh.discard(message_id)
        return True

    def shipment_of(self, order_id: str) -> Known:
        return self.known.get(order_id)

    def send(
        self,
        package_id: str,
        order_id: str,
        items: tuple[ProductItem, ...],
        quantities: dict[str, int],
    ) -> None:
        """A package for ``order_id``, with ``quantities`` taken out of stock."""
        self.known[order_id] = Shipped(package_id)
        self.packages.append((package_id, order_id, items))
        for sku, quantity in quantities.items():
            self.stock[sku] -= quantity
            self.taken[sku] += quantity

    def cancel(self, order_id: str, reason: str, message_id: str) -> None:
        """``order_id`` will never be shipped."""
        self.known[order_id] = Cancelled(reason)
        self.cancellations.append((order_id, reason, message_id))

    def emit(self, topic: str, envelope: Envelope) -> None:
        self.outbox[topic].append(envelope)

    def apply(self, conn: Connection) -> None:
        store.add_packages(conn, self.packages)
        store.cancel_shipments(conn, self.cancellations)
        if self.taken:
            store.take_stock(conn, self.taken)
        for topic, envelopes in self.outbox.items():
            store.append_to_outbox(conn, topic, envelopes)


def products(commands: Iterable[Envelope]) -> set[str]:
    return {
        item.product_id
        for command in commands
        if isinstance(command.data, SendPackage)
        for item in command.data.product_items
    }
