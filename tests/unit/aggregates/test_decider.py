from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from aggregates import cart, payment
from aggregates.cart import OpenedCart
from aggregates.decider import Rejected, fold, handle
from aggregates.messages import AddProduct, CartOpened, OpenCart, ProductItem, RequestPayment

opened = CartOpened(cart_id="c", client_id="x")


def test_folding_no_events_gives_the_initial_state():
    assert fold(cart.decider, []) == cart.initial_state


def test_folding_continues_from_a_given_state():
    state = fold(cart.decider, [opened])
    added = AddProduct(cart_id="c", product_id="p", quantity=1, unit_price=Decimal("2"))
    events, after = handle(cart.decider, state, added)
    assert isinstance(after, OpenedCart)
    assert after.items == (ProductItem(product_id="p", quantity=1, unit_price=Decimal("2.00")),)
    assert fold(cart.decider, events, state) == after


def test_handling_returns_the_events_and_the_state_after_them():
    events, state = handle(cart.decider, cart.initial_state, OpenCart(cart_id="c", client_id="x"))
    assert events == [opened]
    assert state == OpenedCart(cart_id="c", client_id="x", currency="EUR")


def test_handling_a_refused_command_raises_with_a_readable_reason():
    with pytest.raises(Rejected, match="OpenCart is not allowed on open cart c") as rejected:
        handle(cart.decider, fold(cart.decider, [opened]), OpenCart(cart_id="c", client_id="x"))
    assert str(rejected.value) == rejected.value.reason


def test_the_payment_decider_takes_its_time_from_the_context():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    decider = payment.decider(payment.Context(now=now, settlement_delay=timedelta(minutes=5)))
    command = RequestPayment(payment_id="p", order_id="o", amount="1.00")
    _, state = handle(decider, decider.initial_state, command)
    assert state == payment.FinalizedPayment(
        "p", "o", Decimal("1.00"), now, now + timedelta(minutes=5)
    )
