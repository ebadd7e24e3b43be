import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from aggregates import messages as m
from aggregates.messages import (
    MESSAGE_TYPES,
    Envelope,
    deterministic_id,
    from_wire,
    order_id_of,
    to_wire,
)

ORDER = "cart-42"
NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
ITEMS = (m.ProductItem(product_id="book", quantity=2, unit_price=Decimal("19.99")),)

SAMPLES: list[m.Message] = [
    m.OpenCart(cart_id=ORDER, client_id="client-7"),
    m.AddProduct(cart_id=ORDER, product_id="book", quantity=2, unit_price=Decimal("19.99")),
    m.RemoveProduct(cart_id=ORDER, product_id="book", quantity=1),
    m.FinalizeCart(cart_id=ORDER, payment_method="card_no_response"),
    m.CancelCart(cart_id=ORDER),
    m.CartOpened(cart_id=ORDER, client_id="client-7", currency="USD"),
    m.ProductAdded(cart_id=ORDER, product_id="book", quantity=2, unit_price=Decimal("19.99")),
    m.ProductRemoved(cart_id=ORDER, product_id="book", quantity=1),
    m.CartFinalized(
        cart_id=ORDER, client_id="client-7", product_items=ITEMS, total_price=Decimal("39.98")
    ),
    m.CartCancelled(cart_id=ORDER),
    m.InitOrder(order_id=ORDER, client_id="c", product_items=ITEMS, total_price=Decimal("39.98")),
    m.RecordOrderPayment(order_id=ORDER, payment_id="pay-1", finalized_at=NOW),
    m.CompleteOrder(order_id=ORDER),
    m.CancelOrder(order_id=ORDER, reason="TimedOut"),
    m.OrderInitialized(
        order_id=ORDER, client_id="c", product_items=ITEMS, total_price=Decimal("39.98")
    ),
    m.OrderPaymentRecorded(order_id=ORDER, payment_id="pay-1", product_items=ITEMS),
    m.OrderCompleted(order_id=ORDER),
    m.OrderCancelled(order_id=ORDER, reason="PaymentFailed", payment_id="pay-1"),
    m.RequestPayment(payment_id="pay-1", order_id=ORDER, amount=Decimal("39.98")),
    m.SettlePayment(payment_id="pay-1", order_id=ORDER),
    m.DiscardPayment(payment_id="pay-1", order_id=ORDER, reason="TimedOut"),
    m.RefundPayment(payment_id="pay-1", order_id=ORDER, reason="ProductWasOutOfStock"),
    m.PaymentRequested(
        payment_id="pay-1",
        order_id=ORDER,
        amount=Decimal("39.98"),
        payment_method="card_settles_immediately",
    ),
    m.PaymentFinalized(
        payment_id="pay-1",
        order_id=ORDER,
        amount=Decimal("39.98"),
        finalized_at=NOW,
        settles_at=NOW + timedelta(seconds=30),
    ),
    m.PaymentFailed(payment_id="pay-1", order_id=ORDER, reason="card_declined"),
    m.PaymentSettled(payment_id="pay-1", order_id=ORDER),
    m.PaymentDiscarded(payment_id="pay-1", order_id=ORDER),
    m.PaymentDiscardRejected(payment_id="pay-1", order_id=ORDER, reason="already settled"),
    m.PaymentRefunded(payment_id="pay-1", order_id=ORDER, amount=Decimal("39.98")),
    m.SendPackage(order_id=ORDER, product_items=ITEMS),
    m.PackageWasSent(package_id="pkg-1", order_id=ORDER, product_items=ITEMS),
    m.ProductWasOutOfStock(order_id=ORDER, product_id="book", requested=2, available=0),
    m.CancelShipment(order_id=ORDER, reason="TimedOut"),
    m.ShipmentCancelled(order_id=ORDER, reason="TimedOut"),
    m.ShipmentCancellationRejected(
        order_id=ORDER, package_id="pkg-1", reason="package pkg-1 was already sent"
    ),
    m.CancelProcess(order_id=ORDER, reason="customer called", requested_by="operator-1"),
    m.ProcessTimedOut(order_id=ORDER, deadline=NOW),
    m.ResumeProcess(order_id=ORDER, message_id="m-1", requested_by="operator-1"),
    m.SkipMessage(order_id=ORDER, message_id="m-1", requested_by="operator-1"),
    m.CommandRejected(
        command_type="AddProduct", command_message_id="m-1", reason="finalized", order_id=ORDER
    ),
]


def wrap(message: m.Message) -> Envelope:
    return Envelope.wrap(
        message, message_id="m-2", occurred_at=NOW, correlation_id=ORDER, causation_id="m-1"
    )


def wire(message: m.Message) -> dict:
    return json.loads(json.dumps(to_wire(wrap(message))))


def test_every_message_type_has_a_sample():
    assert sorted(type(sample).__name__ for sample in SAMPLES) == sorted(MESSAGE_TYPES)


def test_every_class_is_named_after_its_wire_type():
    assert all(cls.__name__ == cls.model_fields["type"].default for cls in MESSAGE_TYPES.values())


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: message.type)
def test_a_message_survives_the_wire(message):
    envelope = wrap(message)
    assert from_wire(json.loads(json.dumps(to_wire(envelope)))) == envelope


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: message.type)
def test_data_on_the_wire_carries_no_type(message):
    obj = wire(message)
    assert obj["type"] == message.type
    assert "type" not in obj["data"]


def test_the_envelope_on_the_wire_matches_the_contract():
    obj = wire(m.AddProduct(cart_id=ORDER, product_id="book", quantity=2, unit_price="19.9"))
    assert obj == {
        "message_id": "m-2",
        "type": "AddProduct",
        "schema_version": 1,
        "occurred_at": "2026-11-26T01:00:00.000Z",
        "correlation_id": ORDER,
        "causation_id": "m-1",
        "data": {"cart_id": ORDER, "product_id": "book", "quantity": 2, "unit_price": "19.90"},
    }


def test_amounts_and_items_are_decimal_strings_on_the_wire():
    obj = wire(SAMPLES[8])
    assert obj["data"]["total_price"] == "39.98"
    assert obj["data"]["product_items"] == [
        {"product_id": "book", "quantity": 2, "unit_price": "19.99"}
    ]


def test_times_are_utc_with_z_on_the_wire():
    paris = timezone(timedelta(hours=1))
    message = m.RecordOrderPayment(
        order_id=ORDER, payment_id="p", finalized_at=datetime(2026, 11, 26, 2, 0, 0, 123456, paris)
    )
    assert message.finalized_at.tzinfo == UTC
    assert wire(message)["data"]["finalized_at"] == "2026-11-26T01:00:00.123456Z"


def test_an_external_command_has_no_causation():
    obj = {**wire(m.CancelCart(cart_id=ORDER)), "causation_id": None}
    assert from_wire(obj).causation_id is None


# Refused on the wire


def test_an_unknown_type_is_refused():
    obj = {**wire(m.CancelCart(cart_id=ORDER)), "type": "LaunchRocket"}
    with pytest.raises(ValueError, match="unknown message type 'LaunchRocket'"):
        from_wire(obj)


def test_a_missing_field_is_refused():
    obj = wire(m.OpenCart(cart_id=ORDER, client_id="client-7"))
    del obj["data"]["client_id"]
    with pytest.raises(ValidationError, match="client_id\n  Field required"):
        from_wire(obj)


def test_a_missing_envelope_field_is_refused():
    obj = wire(m.CancelCart(cart_id=ORDER))
    del obj["occurred_at"]
    with pytest.raises(ValidationError, match="occurred_at"):
        from_wire(obj)


def test_a_field_of_the_wrong_type_is_refused():
    obj = wire(SAMPLES[1])
    obj["data"]["quantity"] = "many"
    with pytest.raises(ValidationError, match="quantity"):
        from_wire(obj)


def test_an_unknown_field_is_refused():
    obj = wire(m.CancelCart(cart_id=ORDER))
    obj["data"]["coupon"] = "FREE"
    with pytest.raises(ValidationError, match="coupon"):
        from_wire(obj)


def test_data_that_is_not_an_object_is_refused():
    obj = {**wire(m.CancelCart(cart_id=ORDER)), "data": ["cart-42"]}
    with pytest.raises(ValueError, match="data of CancelCart must be a JSON object"):
        from_wire(obj)


def test_an_envelope_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match="not list"):
        from_wire([])  # type: ignore[arg-type]


def test_data_whose_type_contradicts_the_envelope_is_refused():
    obj = wire(m.CancelCart(cart_id=ORDER))
    obj["data"]["type"] = "OpenCart"
    with pytest.raises(ValueError, match="does not match envelope"):
        from_wire(obj)


def test_an_envelope_whose_type_contradicts_its_data_is_refused():
    with pytest.raises(ValidationError, match="does not match data"):
        Envelope(
            message_id="m",
            type="OpenCart",
            occurred_at=NOW,
            correlation_id=ORDER,
            causation_id=None,
            data=m.CancelCart(cart_id=ORDER),
        )


def test_a_naive_time_is_refused():
    obj = {**wire(m.CancelCart(cart_id=ORDER)), "occurred_at": "2026-11-26T01:00:00"}
    with pytest.raises(ValidationError, match="timezone"):
        from_wire(obj)


# Values


@pytest.mark.parametrize("amount", ["1.999", "-0.01", "NaN", "Infinity", "abc", "1e30"])
def test_a_bad_amount_is_refused(amount):
    with pytest.raises(ValidationError, match="amount"):
        m.RequestPayment(payment_id="p", order_id=ORDER, amount=amount)


def test_an_amount_is_kept_to_the_cent():
    assert m.RequestPayment(payment_id="p", order_id=ORDER, amount="7").amount == Decimal("7.00")
    assert str(m.RequestPayment(payment_id="p", order_id=ORDER, amount="7.10").amount) == "7.10"


@pytest.mark.parametrize("quantity", [0, -1, True])
def test_a_quantity_must_be_a_positive_integer(quantity):
    with pytest.raises(ValidationError, match="quantity"):
        m.RemoveProduct(cart_id=ORDER, product_id="book", quantity=quantity)


def test_a_finalized_cart_has_items():
    with pytest.raises(ValidationError, match="product_items"):
        m.CartFinalized(cart_id=ORDER, client_id="c", product_items=(), total_price="0")


def test_an_unknown_payment_method_is_refused():
    with pytest.raises(ValidationError, match="payment_method"):
        m.FinalizeCart(cart_id=ORDER, payment_method="cash")


def test_an_unknown_cancellation_reason_is_refused():
    with pytest.raises(ValidationError, match="reason"):
        m.CancelOrder(order_id=ORDER, reason="Boredom")


def test_defaults_follow_the_contract():
    assert m.OpenCart(cart_id=ORDER, client_id="c").currency == "EUR"
    assert m.FinalizeCart(cart_id=ORDER).payment_method == "card_ok"
    assert m.OrderCancelled(order_id=ORDER, reason="TimedOut").payment_id is None


def test_messages_are_frozen():
    message = m.CancelCart(cart_id=ORDER)
    with pytest.raises(ValidationError, match="frozen"):
        message.cart_id = "other"  # type: ignore[misc]


def test_a_module_union_reads_its_own_messages_by_type():
    adapter = TypeAdapter(m.PaymentEvent)
    event = adapter.validate_python({"type": "PaymentSettled", "payment_id": "p", "order_id": "o"})
    assert event == m.PaymentSettled(payment_id="p", order_id="o")
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "CartOpened", "cart_id": "c", "client_id": "x"})


def test_the_shipment_unions_read_the_cancellation_messages_by_type():
    command = TypeAdapter(m.ShipmentCommand).validate_python(
        {"type": "CancelShipment", "order_id": "o", "reason": "TimedOut"}
    )
    assert command == m.CancelShipment(order_id="o", reason="TimedOut")
    event = TypeAdapter(m.ShipmentEvent).validate_python(
        {"type": "ShipmentCancellationRejected", "order_id": "o", "package_id": "p", "reason": "r"}
    )
    assert event == m.ShipmentCancellationRejected(order_id="o", package_id="p", reason="r")
    with pytest.raises(ValidationError):
        TypeAdapter(m.ShipmentCommand).validate_python({"type": "ShipmentCancelled"})


def test_command_rejected_belongs_to_every_module():
    rejected = SAMPLES[-1].model_dump()
    for union in (m.CartEvent, m.OrderEvent, m.PaymentEvent, m.ShipmentEvent):
        assert TypeAdapter(union).validate_python(rejected) == SAMPLES[-1]


# Ids and keys


def test_deterministic_ids_depend_only_on_cause_and_step():
    first = deterministic_id("m-1", "InitOrder")
    assert first == deterministic_id("m-1", "InitOrder")
    assert first != deterministic_id("m-1", "RequestPayment")
    assert first != deterministic_id("m-2", "InitOrder")
    assert uuid.UUID(first).version == 5


@pytest.mark.parametrize(
    ("cause", "step"),
    [("m-1", "InitOrder"), ("", ""), ("ä€😀", "0:Ö"), ("x" * 300, "1:PaymentRequested")],
)
def test_a_deterministic_id_is_the_uuid5_of_cause_and_step(cause, step):
    assert deterministic_id(cause, step) == str(uuid.uuid5(m.NAMESPACE, f"{cause}:{step}"))


@pytest.mark.parametrize("message", SAMPLES[:-1], ids=lambda message: message.type)
def test_every_message_is_keyed_by_its_order(message):
    assert order_id_of(message) == ORDER
    assert order_id_of(wrap(message)) == ORDER


def test_a_rejection_without_an_order_id_has_no_key_but_its_envelope_does():
    rejected = m.CommandRejected(command_type="X", command_message_id="m", reason="r")
    with pytest.raises(ValueError, match="carries no order id"):
        order_id_of(rejected)
    assert order_id_of(wrap(rejected)) == ORDER
