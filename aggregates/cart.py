"""The shopping cart: opened, filled, then finalized (which makes an order) or cancelled."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from aggregates.decider import Decider, Rejected
from aggregates.messages import (
    CENT,
    AddProduct,
    CancelCart,
    CartCancelled,
    CartCommand,
    CartEvent,
    CartFinalized,
    CartOpened,
    FinalizeCart,
    OpenCart,
    ProductAdded,
    ProductItem,
    ProductRemoved,
    RemoveProduct,
)


@dataclass(frozen=True)
class NoCart:
    """No cart has been opened under this id."""


@dataclass(frozen=True)
class OpenedCart:
    cart_id: str
    client_id: str
    currency: str
    items: tuple[ProductItem, ...] = ()


@dataclass(frozen=True)
class FinalizedCart:
    cart_id: str


@dataclass(frozen=True)
class CancelledCart:
    cart_id: str


Cart = NoCart | OpenedCart | FinalizedCart | CancelledCart

initial_state: Cart = NoCart()


def total_price(items: tuple[ProductItem, ...]) -> Decimal:
    """The sum of quantity times unit price, to the cent."""
    return sum((item.quantity * item.unit_price for item in items), Decimal(0)).quantize(CENT)


def decide(command: CartCommand, state: Cart) -> list[CartEvent]:
    """The events ``command`` causes on ``state``; raises ``Rejected`` when it is refused."""
    match state, command:
        case NoCart(), OpenCart(cart_id=cart_id, client_id=client_id, currency=currency):
            return [CartOpened(cart_id=cart_id, client_id=client_id, currency=currency)]
        case OpenedCart(items=items), AddProduct():
            _check_price(items, command)
            return [
                ProductAdded(
                    cart_id=command.cart_id,
                    product_id=command.product_id,
                    quantity=command.quantity,
                    unit_price=command.unit_price,
                )
            ]
        case OpenedCart(items=items), RemoveProduct(product_id=product_id, quantity=quantity):
            in_cart = _quantity_of(items, product_id)
            if quantity > in_cart:
                raise Rejected(
                    f"cannot remove {quantity} of {product_id}: the cart holds {in_cart}"
                )
            return [
                ProductRemoved(cart_id=command.cart_id, product_id=product_id, quantity=quantity)
            ]
        case OpenedCart(items=()), FinalizeCart():
            raise Rejected("cannot finalize an empty cart")
        case OpenedCart(cart_id, client_id, currency, items), FinalizeCart(payment_method=method):
            return [
                CartFinalized(
                    cart_id=cart_id,
                    client_id=client_id,
                    product_items=items,
                    total_price=total_price(items),
                    currency=currency,
                    payment_method=method,
                )
            ]
        case OpenedCart(cart_id=cart_id), CancelCart():
            return [CartCancelled(cart_id=cart_id)]
        case _:
            raise Rejected(f"{command.type} is not allowed on {_describe(state)}")


def evolve(state: Cart, event: CartEvent) -> Cart:
    """The cart after ``event``; events that do not apply leave it unchanged."""
    match state, event:
        case NoCart(), CartOpened(cart_id=cart_id, client_id=client_id, currency=currency):
            return OpenedCart(cart_id=cart_id, client_id=client_id, currency=currency)
        case OpenedCart(items=items), ProductAdded(product_id=product_id, quantity=quantity):
            item = ProductItem(
                product_id=product_id, quantity=quantity, unit_price=event.unit_price
            )
            return _with_items(state, _add(items, item))
        case OpenedCart(items=items), ProductRemoved(product_id=product_id, quantity=quantity):
            return _with_items(state, _remove(items, product_id, quantity))
        case OpenedCart(cart_id=cart_id), CartFinalized():
            return FinalizedCart(cart_id=cart_id)
        case OpenedCart(cart_id=cart_id), CartCancelled():
            return CancelledCart(cart_id=cart_id)
        case _:
            return state


decider: Decider[CartCommand, Cart, CartEvent] = Decider(decide, evolve, initial_state)


def _describe(state: Cart) -> str:
    match state:
        case NoCart():
            return "a cart that was never opened"
        case OpenedCart(cart_id=cart_id):
            return f"open cart {cart_id}"
        case FinalizedCart(cart_id=cart_id):
            return f"finalized cart {cart_id}"
        case CancelledCart(cart_id=cart_id):
            return f"cancelled cart {cart_id}"


def _check_price(items: tuple[ProductItem, ...], command: AddProduct) -> None:
    for item in items:
        if item.product_id == command.product_id and item.unit_price != command.unit_price:
            raise Rejected(
                f"{command.product_id} is in the cart at {item.unit_price}, "
                f"not {command.unit_price}"
            )


def _quantity_of(items: tuple[ProductItem, ...], product_id: str) -> int:
    return sum(item.quantity for item in items if item.product_id == product_id)


def _with_items(cart: OpenedCart, items: tuple[ProductItem, ...]) -> OpenedCart:
    return OpenedCart(cart.cart_id, cart.client_id, cart.currency, items)


def _add(items: tuple[ProductItem, ...], new: ProductItem) -> tuple[ProductItem, ...]:
    if all(item.product_id != new.product_id for item in items):
        return (*items, new)
    return tuple(
        _resized(item, item.quantity + new.quantity) if item.product_id == new.product_id else item
        for item in items
    )


def _remove(
    items: tuple[ProductItem, ...], product_id: str, quantity: int
) -> tuple[ProductItem, ...]:
    return tuple(
        _resized(item, item.quantity - quantity) if item.product_id == product_id else item
        for item in items
        if item.product_id != product_id or item.quantity > quantity
    )


def _resized(item: ProductItem, quantity: int) -> ProductItem:
    return ProductItem(product_id=item.product_id, quantity=quantity, unit_price=item.unit_price)
