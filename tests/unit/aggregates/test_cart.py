from decimal import Decimal

import pytest

from aggregates import cart
from aggregates.cart import CancelledCart, FinalizedCart, NoCart, OpenedCart
from aggregates.messages import (
    AddProduct,
    CancelCart,
    CartCancelled,
    CartFinalized,
    CartOpened,
    CommandRejected,
    FinalizeCart,
    OpenCart,
    ProductAdded,
    ProductItem,
    ProductRemoved,
    RemoveProduct,
)
from tests.unit.aggregates.scenario import given

CART = "cart-42"
opened = CartOpened(cart_id=CART, client_id="client-7", currency="EUR")
book_added = ProductAdded(cart_id=CART, product_id="book", quantity=2, unit_price=Decimal("19.99"))
pen_added = ProductAdded(cart_id=CART, product_id="pen", quantity=1, unit_price=Decimal("0.50"))
finalized = CartFinalized(
    cart_id=CART,
    client_id="client-7",
    product_items=(ProductItem(product_id="book", quantity=2, unit_price=Decimal("19.99")),),
    total_price=Decimal("39.98"),
)
cancelled = CartCancelled(cart_id=CART)

NEVER_OPENED: list[object] = []
OPEN_EMPTY = [opened]
OPEN_WITH_BOOKS = [opened, book_added]
FINALIZED = [opened, book_added, finalized]
CANCELLED = [opened, cancelled]


# Accepted


def test_opening_a_cart():
    state = given(cart.decider).when(OpenCart(cart_id=CART, client_id="client-7")).then([opened])
    assert state == OpenedCart(cart_id=CART, client_id="client-7", currency="EUR")


def test_opening_a_cart_keeps_its_currency():
    command = OpenCart(cart_id=CART, client_id="client-7", currency="USD")
    given(cart.decider).when(command).then(
        [CartOpened(cart_id=CART, client_id="client-7", currency="USD")]
    )


def test_adding_a_product_to_an_open_cart():
    command = AddProduct(cart_id=CART, product_id="book", quantity=2, unit_price=Decimal("19.99"))
    state = given(cart.decider, OPEN_EMPTY).when(command).then([book_added])
    assert isinstance(state, OpenedCart)
    assert state.items == (ProductItem(product_id="book", quantity=2, unit_price=Decimal("19.99")),)


def test_adding_more_of_a_product_already_in_the_cart_adds_up():
    command = AddProduct(cart_id=CART, product_id="book", quantity=3, unit_price=Decimal("19.99"))
    state = (
        given(cart.decider, OPEN_WITH_BOOKS)
        .when(command)
        .then(
            [ProductAdded(cart_id=CART, product_id="book", quantity=3, unit_price=Decimal("19.99"))]
        )
    )
    assert isinstance(state, OpenedCart)
    assert [(item.product_id, item.quantity) for item in state.items] == [("book", 5)]


def test_removing_part_of_a_product():
    command = RemoveProduct(cart_id=CART, product_id="book", quantity=1)
    state = (
        given(cart.decider, OPEN_WITH_BOOKS)
        .when(command)
        .then([ProductRemoved(cart_id=CART, product_id="book", quantity=1)])
    )
    assert isinstance(state, OpenedCart)
    assert [(item.product_id, item.quantity) for item in state.items] == [("book", 1)]


def test_removing_all_of_a_product_drops_its_line():
    command = RemoveProduct(cart_id=CART, product_id="book", quantity=2)
    state = (
        given(cart.decider, [*OPEN_WITH_BOOKS, pen_added])
        .when(command)
        .then([ProductRemoved(cart_id=CART, product_id="book", quantity=2)])
    )
    assert isinstance(state, OpenedCart)
    assert [item.product_id for item in state.items] == ["pen"]


def test_finalizing_a_cart_carries_its_items_total_currency_and_payment_method():
    command = FinalizeCart(cart_id=CART, payment_method="card_declined")
    state = (
        given(cart.decider, [*OPEN_WITH_BOOKS, pen_added])
        .when(command)
        .then(
            [
                CartFinalized(
                    cart_id=CART,
                    client_id="client-7",
                    product_items=(
                        ProductItem(product_id="book", quantity=2, unit_price=Decimal("19.99")),
                        ProductItem(product_id="pen", quantity=1, unit_price=Decimal("0.50")),
                    ),
                    total_price=Decimal("40.48"),
                    currency="EUR",
                    payment_method="card_declined",
                )
            ]
        )
    )
    assert state == FinalizedCart(cart_id=CART)


def test_finalizing_pays_by_card_ok_by_default():
    given(cart.decider, OPEN_WITH_BOOKS).when(FinalizeCart(cart_id=CART)).then([finalized])
    assert finalized.payment_method == "card_ok"


def test_cancelling_an_open_cart():
    state = given(cart.decider, OPEN_WITH_BOOKS).when(CancelCart(cart_id=CART)).then([cancelled])
    assert state == CancelledCart(cart_id=CART)


def test_total_price_is_rounded_to_the_cent():
    items = (
        ProductItem(product_id="a", quantity=3, unit_price=Decimal("0.10")),
        ProductItem(product_id="b", quantity=1, unit_price=Decimal("5")),
    )
    assert str(cart.total_price(items)) == "5.30"


# Refused

open_cart = OpenCart(cart_id=CART, client_id="client-7")
add_book = AddProduct(cart_id=CART, product_id="book", quantity=1, unit_price=Decimal("19.99"))
remove_book = RemoveProduct(cart_id=CART, product_id="book", quantity=1)
finalize = FinalizeCart(cart_id=CART)
cancel = CancelCart(cart_id=CART)


@pytest.mark.parametrize(
    ("history", "command", "reason"),
    [
        (OPEN_EMPTY, open_cart, "OpenCart is not allowed on open cart"),
        (FINALIZED, open_cart, "OpenCart is not allowed on finalized cart"),
        (CANCELLED, open_cart, "OpenCart is not allowed on cancelled cart"),
        (NEVER_OPENED, add_book, "AddProduct is not allowed on a cart that was never opened"),
        (FINALIZED, add_book, "AddProduct is not allowed on finalized cart"),
        (CANCELLED, add_book, "AddProduct is not allowed on cancelled cart"),
        (NEVER_OPENED, remove_book, "RemoveProduct is not allowed on a cart that was never"),
        (FINALIZED, remove_book, "RemoveProduct is not allowed on finalized cart"),
        (CANCELLED, remove_book, "RemoveProduct is not allowed on cancelled cart"),
        (NEVER_OPENED, finalize, "FinalizeCart is not allowed on a cart that was never opened"),
        (FINALIZED, finalize, "FinalizeCart is not allowed on finalized cart"),
        (CANCELLED, finalize, "FinalizeCart is not allowed on cancelled cart"),
        (NEVER_OPENED, cancel, "CancelCart is not allowed on a cart that was never opened"),
        (FINALIZED, cancel, "CancelCart is not allowed on finalized cart"),
        (CANCELLED, cancel, "CancelCart is not allowed on cancelled cart"),
    ],
    ids=lambda value: getattr(value, "type", None),
)
def test_a_command_out_of_place_is_rejected(history, command, reason):
    given(cart.decider, history).when(command).then_rejects(reason)


def test_adding_to_a_finalized_cart_is_rejected():
    given(cart.decider, FINALIZED).when(add_book).then_rejects("finalized cart cart-42")


def test_opening_a_cart_twice_is_rejected():
    given(cart.decider, OPEN_EMPTY).when(open_cart).then_rejects("OpenCart is not allowed")


def test_adding_a_product_at_another_price_is_rejected():
    command = AddProduct(cart_id=CART, product_id="book", quantity=1, unit_price=Decimal("9.99"))
    given(cart.decider, OPEN_WITH_BOOKS).when(command).then_rejects("book is in the cart at 19.99")


def test_removing_more_than_the_cart_holds_is_rejected():
    command = RemoveProduct(cart_id=CART, product_id="book", quantity=3)
    given(cart.decider, OPEN_WITH_BOOKS).when(command).then_rejects(
        "cannot remove 3 of book: the cart holds 2"
    )


def test_removing_a_product_not_in_the_cart_is_rejected():
    command = RemoveProduct(cart_id=CART, product_id="pen", quantity=1)
    given(cart.decider, OPEN_WITH_BOOKS).when(command).then_rejects("the cart holds 0")


def test_finalizing_an_empty_cart_is_rejected():
    given(cart.decider, OPEN_EMPTY).when(finalize).then_rejects("cannot finalize an empty cart")


def test_finalizing_a_cart_emptied_by_removals_is_rejected():
    removed = ProductRemoved(cart_id=CART, product_id="book", quantity=2)
    given(cart.decider, [*OPEN_WITH_BOOKS, removed]).when(finalize).then_rejects("empty cart")


# Evolve


def test_a_command_rejection_does_not_change_the_cart():
    rejected = CommandRejected(command_type="AddProduct", command_message_id="m-1", reason="no")
    assert (
        given(cart.decider, [*OPEN_WITH_BOOKS, rejected]).state
        == given(cart.decider, OPEN_WITH_BOOKS).state
    )


def test_events_that_do_not_apply_leave_the_cart_unchanged():
    assert cart.evolve(NoCart(), book_added) == NoCart()
    assert cart.evolve(FinalizedCart(cart_id=CART), cancelled) == FinalizedCart(cart_id=CART)
