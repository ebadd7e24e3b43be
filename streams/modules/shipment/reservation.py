"""The warehouse rule, pure: reserve every item of a package or none of them.

A product with no stock row has zero stock, and stock never goes negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aggregates.messages import ProductItem


@dataclass(frozen=True)
class Reserved:
    """Every item fits: take ``quantities`` (product id -> units) out of stock."""

    quantities: dict[str, int]


@dataclass(frozen=True)
class OutOfStock:
    """The first product (in the package's order) whose stock is short."""

    product_id: str
    requested: int
    available: int


Reservation = Reserved | OutOfStock


def requested_quantities(items: Iterable[ProductItem]) -> dict[str, int]:
    """Units per product, in the package's order; a product listed twice counts twice."""
    totals: dict[str, int] = {}
    for item in items:
        totals[item.product_id] = totals.get(item.product_id, 0) + item.quantity
    return totals


def reserve(items: Iterable[ProductItem], stock: Mapping[str, int]) -> Reservation:
    requested = requested_quantities(items)
    for product_id, quantity in requested.items():
        available = stock.get(product_id, 0)
        if quantity > available:
            return OutOfStock(product_id, quantity, max(available, 0))
    return Reserved(requested)
