"""The warehouse rule: all or nothing, a missing stock row is zero, never negative."""

from decimal import Decimal

from aggregates.messages import ProductItem
from streams.modules.shipment.reservation import OutOfStock, Reserved, reserve


def item(product_id: str, quantity: int) -> ProductItem:
    return ProductItem(product_id=product_id, quantity=quantity, unit_price=Decimal("1.00"))


def test_a_package_that_fits_reserves_every_item() -> None:
    # Given enough stock, when reserving, then every item is taken
    assert reserve([item("a", 2), item("b", 1)], {"a": 2, "b": 5}) == Reserved({"a": 2, "b": 1})


def test_the_first_short_product_is_named_with_requested_and_available() -> None:
    # Given b and c both short, when reserving, then b (first in the package) is named
    result = reserve([item("a", 1), item("b", 3), item("c", 9)], {"a": 5, "b": 1, "c": 0})
    assert result == OutOfStock("b", requested=3, available=1)


def test_a_product_with_no_stock_row_has_zero_stock() -> None:
    assert reserve([item("ghost", 1)], {}) == OutOfStock("ghost", requested=1, available=0)


def test_a_product_listed_twice_needs_the_sum_of_its_lines() -> None:
    # Given 3 units and two lines of 2, when reserving, then the package is short by one
    assert reserve([item("a", 2), item("a", 2)], {"a": 3}) == OutOfStock("a", 4, 3)
    assert reserve([item("a", 2), item("a", 1)], {"a": 3}) == Reserved({"a": 3})


def test_exactly_the_last_units_fit() -> None:
    assert reserve([item("a", 3)], {"a": 3}) == Reserved({"a": 3})
