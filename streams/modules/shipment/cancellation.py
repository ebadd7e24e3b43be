"""The shipment rule, pure: an order is shipped or its shipment cancelled, never both.

The module knows one of three things about an order (``Known``): nothing yet, the package it
sent (``Shipped``), or that its shipment was cancelled (``Cancelled``). A ``CancelShipment``
cancels the shipment unless a package was sent; a ``SendPackage`` for a cancelled order (or
one that already has a package) is refused. Stock is reserved only when a package is sent, so
a cancelled shipment has nothing to release.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregates.messages import CancelShipment, ShipmentCancellationRejected, ShipmentCancelled


@dataclass(frozen=True)
class Shipped:
    """The order's package was sent."""

    package_id: str


@dataclass(frozen=True)
class Cancelled:
    """The order's shipment was cancelled before any package was sent."""

    reason: str


Known = Shipped | Cancelled | None


def answer_cancel(
    known: Known, command: CancelShipment
) -> ShipmentCancelled | ShipmentCancellationRejected:
    """The answer to ``command``: rejected with the package sent, cancelled otherwise (with the
    reason first recorded, when it already was)."""
    match known:
        case Shipped(package_id=package_id):
            return ShipmentCancellationRejected(
                order_id=command.order_id,
                package_id=package_id,
                reason=f"package {package_id} was already sent",
            )
        case Cancelled(reason=reason):
            return ShipmentCancelled(order_id=command.order_id, reason=reason)
        case None:
            return ShipmentCancelled(order_id=command.order_id, reason=command.reason)
    raise AssertionError("unreachable")  # pragma: no cover


def package_refusal(known: Known, order_id: str) -> str | None:
    """Why a ``SendPackage`` for ``order_id`` is refused, or ``None`` when it may be sent."""
    match known:
        case Shipped(package_id=package_id):
            return f"order {order_id} already has package {package_id}"
        case Cancelled(reason=reason):
            return f"the shipment of order {order_id} was cancelled ({reason})"
    return None
