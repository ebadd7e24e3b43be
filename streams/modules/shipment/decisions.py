"""The shipment module's decisions: one per command, on the batch's ``Ledger``.

Each reads the ledger (inbox, package or cancellation, stock), decides (``reservation``,
``cancellation``) and writes the ledger (package, stock, cancellation, the outbox), which the
handler then applies to the tables in the batch's transaction. The events go through the
outbox; each is the answer to its command, with ids derived from it (``answer_to``).
"""

from __future__ import annotations

from collections.abc import Callable
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
from streams.modules.shipment.cancellation import answer_cancel, package_refusal
from streams.modules.shipment.ledger import Ledger
from streams.modules.shipment.reservation import OutOfStock, Reserved, reserve

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


Decide = Callable[[Ledger, Envelope, Consumed], Outcome]


@dataclass(frozen=True)
class Decisions:
    """The decisions of the shipment module, whose events go to ``events_topic``."""

    events_topic: str

    def by_type(self) -> dict[str, Decide]:
        return {"SendPackage": self.send_package, "CancelShipment": self.cancel_shipment}

    def send_package(self, ledger: Ledger, command: Envelope, record: Consumed) -> Outcome:
        """Read (inbox, package or cancellation, stock), decide (reserve), write (package,
        stock, outbox)."""
        assert isinstance(command.data, SendPackage)
        data = command.data
        if not ledger.remember(command.message_id):
            return Outcome(record, "duplicate")
        refusal = package_refusal(ledger.shipment_of(data.order_id), data.order_id)
        if refusal is not None:
            return self.reject(ledger, command, record, refusal)
        match reserve(data.product_items, ledger.stock):
            case Reserved(quantities=quantities):
                package_id = deterministic_id(command.message_id, "package")
                ledger.send(package_id, data.order_id, data.product_items, quantities)
                sent = PackageWasSent(
                    package_id=package_id,
                    order_id=data.order_id,
                    product_items=data.product_items,
                )
                return Outcome(record, "sent", self.emit(ledger, command, sent))
            case OutOfStock(product_id=product_id, requested=requested, available=available):
                short = ProductWasOutOfStock(
                    order_id=data.order_id,
                    product_id=product_id,
                    requested=requested,
                    available=available,
                )
                return Outcome(record, "out_of_stock", self.emit(ledger, command, short))
        raise AssertionError("unreachable")  # pragma: no cover

    def cancel_shipment(self, ledger: Ledger, command: Envelope, record: Consumed) -> Outcome:
        """Read (inbox, package), decide (shipped or not), write (cancellation, outbox)."""
        assert isinstance(command.data, CancelShipment)
        data = command.data
        if not ledger.remember(command.message_id):
            return Outcome(record, "duplicate")
        known = ledger.shipment_of(data.order_id)
        answer = answer_cancel(known, data)
        match answer:
            case ShipmentCancellationRejected(reason=reason):
                return Outcome(record, "not_cancelled", self.emit(ledger, command, answer), reason)
            case ShipmentCancelled(reason=reason):
                if known is None:
                    ledger.cancel(data.order_id, reason, command.message_id)
                return Outcome(record, "cancelled", self.emit(ledger, command, answer), reason)
        raise AssertionError("unreachable")  # pragma: no cover

    def reject(self, ledger: Ledger, command: Envelope, record: Consumed, reason: str) -> Outcome:
        rejected = rejection(command, reason)
        return Outcome(record, "rejected", self.emit(ledger, command, rejected), reason)

    def emit(self, ledger: Ledger, command: Envelope, event: Message) -> Envelope:
        """Write ``event`` to the outbox as the answer to ``command``."""
        envelope = answer_to(command, event)
        ledger.emit(self.events_topic, envelope)
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
