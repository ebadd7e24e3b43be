"""The shipment module's decisions: one per command, in the batch's open Postgres transaction.

Each gathers (inbox, package or cancellation, stock), decides (``reservation``,
``cancellation``) and applies (packages, stock, the outbox), with its order locked by the
handler first. The events go through the outbox; each is the answer to its command, with ids
derived from it (``answer_to``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from aggregates.messages import (
    CancelShipment,
    CommandRejected,
    Envelope,
    Message,
    PackageWasSent,
    ProductWasOutOfStock,
    SendPackage,
    ShipmentCancellationRejected,
    ShipmentCancelled,
    deterministic_id,
    order_id_of,
)
from streams.kafka.codec import answer
from streams.kafka.consuming import Consumed
from streams.modules.shipment import store
from streams.modules.shipment.cancellation import answer_cancel, package_refusal
from streams.modules.shipment.reservation import OutOfStock, Reserved, reserve
from streams.postgres.db import Connection

Result = Literal[
    "sent",
    "out_of_stock",
    "cancelled",
    "not_cancelled",
    "rejected",
    "duplicate",
    "dead_letter",
    "forwarded",
]
# commands_decided_total{result}: out of stock and an answered cancellation are decisions too
# (events, not refusals).
DECIDED = {
    "sent": "accepted",
    "out_of_stock": "accepted",
    "cancelled": "accepted",
    "not_cancelled": "accepted",
    "rejected": "rejected",
    "duplicate": "duplicate",
}
# Logged at debug: the everyday outcomes; the others at info.
ROUTINE = frozenset({"sent", "out_of_stock"})


@dataclass(frozen=True)
class Outcome:
    """What one record did; ``event`` is the envelope written to the outbox, if any."""

    record: Consumed
    result: Result
    event: Envelope | None = None
    reason: str | None = None


Decide = Callable[[Connection, Envelope, Consumed], Outcome]


@dataclass(frozen=True)
class Decisions:
    """The decisions of the shipment module, whose events go to ``events_topic``."""

    events_topic: str

    def by_type(self) -> dict[str, Decide]:
        return {"SendPackage": self.send_package, "CancelShipment": self.cancel_shipment}

    def send_package(self, conn: Connection, command: Envelope, record: Consumed) -> Outcome:
        """Gather (inbox, package or cancellation, locked stock), decide (reserve), apply
        (outbox), in ``conn``'s open transaction, with the order locked."""
        assert isinstance(command.data, SendPackage)
        data = command.data
        if not store.remember(conn, command.message_id):
            return Outcome(record, "duplicate")
        refusal = package_refusal(store.shipment_of(conn, data.order_id), data.order_id)
        if refusal is not None:
            return self.reject(conn, command, record, refusal)
        stock = store.lock_stock(conn, (item.product_id for item in data.product_items))
        match reserve(data.product_items, stock):
            case Reserved(quantities=quantities):
                package_id = deterministic_id(command.message_id, "package")
                if not store.add_package(conn, package_id, data.order_id, data.product_items):
                    # The order lock keeps this from happening; the unique order id is the
                    # last guard.
                    reason = f"order {data.order_id} already has a package"
                    return self.reject(conn, command, record, reason)
                store.take_stock(conn, quantities)
                sent = PackageWasSent(
                    package_id=package_id,
                    order_id=data.order_id,
                    product_items=data.product_items,
                )
                return Outcome(record, "sent", self.emit(conn, command, sent))
            case OutOfStock(product_id=product_id, requested=requested, available=available):
                short = ProductWasOutOfStock(
                    order_id=data.order_id,
                    product_id=product_id,
                    requested=requested,
                    available=available,
                )
                return Outcome(record, "out_of_stock", self.emit(conn, command, short))
        raise AssertionError("unreachable")  # pragma: no cover

    def cancel_shipment(self, conn: Connection, command: Envelope, record: Consumed) -> Outcome:
        """Gather (inbox, package), decide (shipped or not), apply (cancellation, outbox), in
        ``conn``'s open transaction, with the order locked."""
        assert isinstance(command.data, CancelShipment)
        data = command.data
        if not store.remember(conn, command.message_id):
            return Outcome(record, "duplicate")
        known = store.shipment_of(conn, data.order_id)
        answer = answer_cancel(known, data)
        match answer:
            case ShipmentCancellationRejected(reason=reason):
                return Outcome(record, "not_cancelled", self.emit(conn, command, answer), reason)
            case ShipmentCancelled(reason=reason):
                if known is None:
                    store.cancel_shipment(conn, data.order_id, reason, command.message_id)
                return Outcome(record, "cancelled", self.emit(conn, command, answer), reason)
        raise AssertionError("unreachable")  # pragma: no cover

    def reject(self, conn: Connection, command: Envelope, record: Consumed, reason: str) -> Outcome:
        rejected = rejection(command, reason)
        return Outcome(record, "rejected", self.emit(conn, command, rejected), reason)

    def emit(self, conn: Connection, command: Envelope, event: Message) -> Envelope:
        """Write ``event`` to the outbox as the answer to ``command``."""
        envelope = answer_to(command, event)
        store.append_to_outbox(conn, self.events_topic, envelope)
        return envelope


def answer_to(command: Envelope, event: Message) -> Envelope:
    """``event`` as the answer to ``command``, with ids derived from it (replays match)."""
    return answer(
        event,
        command,
        message_id=deterministic_id(command.message_id, event.type),
        correlation_id=order_id_of(command.data),
    )


def rejection(command: Envelope, reason: str) -> CommandRejected:
    return CommandRejected(
        command_type=command.type,
        command_message_id=command.message_id,
        reason=reason,
        order_id=order_id_of(command.data),
    )


def products(commands: Iterable[Envelope]) -> set[str]:
    return {
        item.product_id
        for command in commands
        if isinstance(command.data, SendPackage)
        for item in command.data.product_items
    }
