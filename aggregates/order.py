"""The order: initialized from a finalized cart, paid, then completed or cancelled."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from aggregates.decider import Decider, Rejected
from aggregates.messages import (
    CancelOrder,
    CompleteOrder,
    InitOrder,
    OrderCancelled,
    OrderCommand,
    OrderCompleted,
    OrderEvent,
    OrderInitialized,
    OrderPaymentRecorded,
    ProductItem,
    RecordOrderPayment,
)


@dataclass(frozen=True)
class NoOrder:
    """No order has been initialized under this id."""


@dataclass(frozen=True)
class InitializedOrder:
    order_id: str
    client_id: str
    product_items: tuple[ProductItem, ...]
    total_price: Decimal


@dataclass(frozen=True)
class PaidOrder:
    order_id: str
    client_id: str
    product_items: tuple[ProductItem, ...]
    total_price: Decimal
    payment_id: str


@dataclass(frozen=True)
class CompletedOrder:
    order_id: str


@dataclass(frozen=True)
class CancelledOrder:
    order_id: str
    reason: str


Order = NoOrder | InitializedOrder | PaidOrder | CompletedOrder | CancelledOrder

initial_state: Order = NoOrder()


def decide(command: OrderCommand, state: Order) -> list[OrderEvent]:
    """The events ``command`` causes on ``state``; raises ``Rejected`` when it is refused."""
    match state, command:
        case NoOrder(), InitOrder():
            return [
                OrderInitialized(
                    order_id=command.order_id,
                    client_id=command.client_id,
                    product_items=command.product_items,
                    total_price=command.total_price,
                    payment_method=command.payment_method,
                )
            ]
        case InitializedOrder(order_id, _, items, _), RecordOrderPayment(payment_id=payment_id):
            return [
                OrderPaymentRecorded(order_id=order_id, payment_id=payment_id, product_items=items)
            ]
        case PaidOrder(order_id=order_id), CompleteOrder():
            return [OrderCompleted(order_id=order_id)]
        case InitializedOrder(order_id=order_id), CompleteOrder():
            raise Rejected(f"order {order_id} cannot complete: its payment is not recorded")
        case InitializedOrder(order_id=order_id), CancelOrder(reason=reason):
            return [OrderCancelled(order_id=order_id, reason=reason)]
        case PaidOrder(order_id=order_id, payment_id=payment_id), CancelOrder(reason=reason):
            return [OrderCancelled(order_id=order_id, reason=reason, payment_id=payment_id)]
        case _:
            raise Rejected(f"{command.type} is not allowed on {_describe(state)}")


def evolve(state: Order, event: OrderEvent) -> Order:
    """The order after ``event``; events that do not apply leave it unchanged."""
    match state, event:
        case NoOrder(), OrderInitialized():
            return InitializedOrder(
                order_id=event.order_id,
                client_id=event.client_id,
                product_items=event.product_items,
                total_price=event.total_price,
            )
        case InitializedOrder(order_id, client_id, items, total), OrderPaymentRecorded():
            return PaidOrder(order_id, client_id, items, total, payment_id=event.payment_id)
        case PaidOrder(order_id=order_id), OrderCompleted():
            return CompletedOrder(order_id=order_id)
        case InitializedOrder(order_id=order_id) | PaidOrder(order_id=order_id), OrderCancelled():
            return CancelledOrder(order_id=order_id, reason=event.reason)
        case _:
            return state


decider: Decider[OrderCommand, Order, OrderEvent] = Decider(decide, evolve, initial_state)


def _describe(state: Order) -> str:
    match state:
        case NoOrder():
            return "an order that was never initialized"
        case InitializedOrder(order_id=order_id):
            return f"unpaid order {order_id}"
        case PaidOrder(order_id=order_id):
            return f"paid order {order_id}"
        case CompletedOrder(order_id=order_id):
            return f"completed order {order_id}"
        case CancelledOrder(order_id=order_id):
            return f"cancelled order {order_id}"
