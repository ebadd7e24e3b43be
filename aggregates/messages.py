"""Every message of the wire contract, as frozen pydantic models, plus the envelope.

One class per message type; the class name is the wire ``type``. Commands are imperative,
events past tense. ``data`` on the wire carries no ``type`` key: ``to_wire`` drops it and
``from_wire`` puts it back from the envelope before validation.

Money is a ``Decimal`` with at most two decimals, serialized as a string (``"19.99"``).
Timestamps are timezone-aware, normalized to UTC and serialized as ISO-8601 with ``Z``.

Extensions to the contract (the contract allows adding types and fields):

- ``SettlePayment {payment_id, order_id}``: payment command, sent by the settlement timer
  once a finalized payment's settlement delay has passed.
- ``PaymentRequested {payment_id, order_id, amount, payment_method}``: payment event, records
  that a request was accepted (also for ``card_no_response``, which never answers).
- ``ProcessTimedOut {order_id, deadline}``: process command, sent by the timeout timer to the
  partition that owns the process; the process manager re-checks the deadline.
- ``PaymentFinalized.settles_at`` (``schema_version`` 2; version 1 had the optional
  ``settle_after``): when the settlement timer may settle the payment. Older versions are
  lifted on reading (``aggregates.upcasting``).
- ``InitOrder.payment_method`` and ``OrderInitialized.payment_method`` (default ``card_ok``):
  the cart's payment method, carried along so that a stateless saga can request the payment
  from the ``OrderInitialized`` alone.
- ``CommandRejected.order_id``: the order id of the refused command, when known.
- ``CancelShipment {order_id, reason}``: shipment command, sent by the process instead of
  cancelling an order whose package may still be sent; the shipment module decides.
- ``ShipmentCancelled {order_id, reason}``: shipment event, the order was never shipped and
  never will be: a later ``SendPackage`` for it is refused with ``CommandRejected``.
- ``ShipmentCancellationRejected {order_id, package_id, reason}``: shipment event, the
  package had already been sent, so the order goes on to complete.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from aggregates.upcasting import current_version, upcast_envelope

CENT = Decimal("0.01")


def _to_cents(value: Decimal) -> Decimal:
    try:
        cents = value.quantize(CENT)
    except InvalidOperation as error:
        raise ValueError(f"amount {value} is out of range") from error
    if cents != value:
        raise ValueError(f"amount {value} has more than two decimals")
    return cents


def _money_text(value: Decimal) -> str:
    return f"{value:.2f}"


def _to_utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _iso_text(value: datetime) -> str:
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return _to_utc(value).isoformat(timespec=spec).replace("+00:00", "Z")


Money = Annotated[
    Decimal,
    Field(ge=0),
    AfterValidator(_to_cents),
    PlainSerializer(_money_text, return_type=str, when_used="json"),
]
UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(_iso_text, return_type=str, when_used="json"),
]
Id = Annotated[str, Field(min_length=1)]
Quantity = Annotated[int, Field(gt=0, strict=True)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
PaymentMethod = Literal["card_ok", "card_declined", "card_no_response", "card_settles_immediately"]
CancellationReason = Literal[
    "PaymentFailed", "ProductWasOutOfStock", "TimedOut", "ManualCancellation", "ShipmentRefused"
]


class ProductItem(BaseModel):
    """One line of a cart or an order: a product, how many, at what unit price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: Id
    quantity: Quantity
    unit_price: Money


ProductItems = Annotated[tuple[ProductItem, ...], Field(min_length=1)]


class Message(BaseModel):
    """Base of every command and event; ``type`` is the wire name, equal to the class name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str


# Carts


class OpenCart(Message):
    type: Literal["OpenCart"] = "OpenCart"
    cart_id: Id
    client_id: Id
    currency: Currency = "EUR"


class AddProduct(Message):
    type: Literal["AddProduct"] = "AddProduct"
    cart_id: Id
    product_id: Id
    quantity: Quantity
    unit_price: Money


class RemoveProduct(Message):
    type: Literal["RemoveProduct"] = "RemoveProduct"
    cart_id: Id
    product_id: Id
    quantity: Quantity


class FinalizeCart(Message):
    type: Literal["FinalizeCart"] = "FinalizeCart"
    cart_id: Id
    payment_method: PaymentMethod = "card_ok"


class CancelCart(Message):
    type: Literal["CancelCart"] = "CancelCart"
    cart_id: Id


class CartOpened(Message):
    type: Literal["CartOpened"] = "CartOpened"
    cart_id: Id
    client_id: Id
    currency: Currency = "EUR"


class ProductAdded(Message):
    type: Literal["ProductAdded"] = "ProductAdded"
    cart_id: Id
    product_id: Id
    quantity: Quantity
    unit_price: Money


class ProductRemoved(Message):
    type: Literal["ProductRemoved"] = "ProductRemoved"
    cart_id: Id
    product_id: Id
    quantity: Quantity


class CartFinalized(Message):
    type: Literal["CartFinalized"] = "CartFinalized"
    cart_id: Id
    client_id: Id
    product_items: ProductItems
    total_price: Money
    currency: Currency = "EUR"
    payment_method: PaymentMethod = "card_ok"


class CartCancelled(Message):
    type: Literal["CartCancelled"] = "CartCancelled"
    cart_id: Id


# Orders


class InitOrder(Message):
    type: Literal["InitOrder"] = "InitOrder"
    order_id: Id
    client_id: Id
    product_items: ProductItems
    total_price: Money
    payment_method: PaymentMethod = "card_ok"


class RecordOrderPayment(Message):
    type: Literal["RecordOrderPayment"] = "RecordOrderPayment"
    order_id: Id
    payment_id: Id
    finalized_at: UtcDatetime


class CompleteOrder(Message):
    type: Literal["CompleteOrder"] = "CompleteOrder"
    order_id: Id


class CancelOrder(Message):
    type: Literal["CancelOrder"] = "CancelOrder"
    order_id: Id
    reason: CancellationReason


class OrderInitialized(Message):
    type: Literal["OrderInitialized"] = "OrderInitialized"
    order_id: Id
    client_id: Id
    product_items: ProductItems
    total_price: Money
    payment_method: PaymentMethod = "card_ok"


class OrderPaymentRecorded(Message):
    type: Literal["OrderPaymentRecorded"] = "OrderPaymentRecorded"
    order_id: Id
    payment_id: Id
    product_items: ProductItems


class OrderCompleted(Message):
    type: Literal["OrderCompleted"] = "OrderCompleted"
    order_id: Id


class OrderCancelled(Message):
    type: Literal["OrderCancelled"] = "OrderCancelled"
    order_id: Id
    reason: CancellationReason
    payment_id: Id | None = None


# Payments


class RequestPayment(Message):
    type: Literal["RequestPayment"] = "RequestPayment"
    payment_id: Id
    order_id: Id
    amount: Money
    payment_method: PaymentMethod = "card_ok"


class SettlePayment(Message):
    type: Literal["SettlePayment"] = "SettlePayment"
    payment_id: Id
    order_id: Id


class DiscardPayment(Message):
    type: Literal["DiscardPayment"] = "DiscardPayment"
    payment_id: Id
    order_id: Id
    reason: str


class RefundPayment(Message):
    type: Literal["RefundPayment"] = "RefundPayment"
    payment_id: Id
    order_id: Id
    reason: str


class PaymentRequested(Message):
    type: Literal["PaymentRequested"] = "PaymentRequested"
    payment_id: Id
    order_id: Id
    amount: Money
    payment_method: PaymentMethod = "card_ok"


class PaymentFinalized(Message):
    """Schema version 2 (``aggregates.upcasting``): ``settles_at`` replaced version 1's
    optional ``settle_after``."""

    type: Literal["PaymentFinalized"] = "PaymentFinalized"
    payment_id: Id
    order_id: Id
    amount: Money
    finalized_at: UtcDatetime
    settles_at: UtcDatetime


class PaymentFailed(Message):
    type: Literal["PaymentFailed"] = "PaymentFailed"
    payment_id: Id
    order_id: Id
    reason: str


class PaymentSettled(Message):
    type: Literal["PaymentSettled"] = "PaymentSettled"
    payment_id: Id
    order_id: Id


class PaymentDiscarded(Message):
    type: Literal["PaymentDiscarded"] = "PaymentDiscarded"
    payment_id: Id
    order_id: Id


class PaymentDiscardRejected(Message):
    type: Literal["PaymentDiscardRejected"] = "PaymentDiscardRejected"
    payment_id: Id
    order_id: Id
    reason: str


class PaymentRefunded(Message):
    type: Literal["PaymentRefunded"] = "PaymentRefunded"
    payment_id: Id
    order_id: Id
    amount: Money


# Shipments


class SendPackage(Message):
    type: Literal["SendPackage"] = "SendPackage"
    order_id: Id
    product_items: ProductItems


class PackageWasSent(Message):
    type: Literal["PackageWasSent"] = "PackageWasSent"
    package_id: Id
    order_id: Id
    product_items: ProductItems


class CancelShipment(Message):
    type: Literal["CancelShipment"] = "CancelShipment"
    order_id: Id
    reason: str


class ProductWasOutOfStock(Message):
    type: Literal["ProductWasOutOfStock"] = "ProductWasOutOfStock"
    order_id: Id
    product_id: Id
    requested: Quantity
    available: Annotated[int, Field(ge=0, strict=True)]


class ShipmentCancelled(Message):
    type: Literal["ShipmentCancelled"] = "ShipmentCancelled"
    order_id: Id
    reason: str


class ShipmentCancellationRejected(Message):
    type: Literal["ShipmentCancellationRejected"] = "ShipmentCancellationRejected"
    order_id: Id
    package_id: Id
    reason: str


# Processes (operators and timers)


class CancelProcess(Message):
    type: Literal["CancelProcess"] = "CancelProcess"
    order_id: Id
    reason: str
    requested_by: Id


class ResumeProcess(Message):
    """An operator retries a quarantined process: its failing message (``message_id``, named
    so that a fold of the log knows it failed), then the parked ones."""

    type: Literal["ResumeProcess"] = "ResumeProcess"
    order_id: Id
    message_id: Id
    requested_by: Id


class SkipMessage(Message):
    """An operator skips a quarantined process's failing message; the parked ones follow."""

    type: Literal["SkipMessage"] = "SkipMessage"
    order_id: Id
    message_id: Id
    requested_by: Id


class ProcessTimedOut(Message):
    type: Literal["ProcessTimedOut"] = "ProcessTimedOut"
    order_id: Id
    deadline: UtcDatetime


# Every module


class CommandRejected(Message):
    type: Literal["CommandRejected"] = "CommandRejected"
    command_type: Id
    command_message_id: Id
    reason: str
    order_id: Id | None = None


# Unions per module

CartCommand = Annotated[
    OpenCart | AddProduct | RemoveProduct | FinalizeCart | CancelCart,
    Field(discriminator="type"),
]
CartEvent = Annotated[
    CartOpened | ProductAdded | ProductRemoved | CartFinalized | CartCancelled | CommandRejected,
    Field(discriminator="type"),
]
OrderCommand = Annotated[
    InitOrder | RecordOrderPayment | CompleteOrder | CancelOrder,
    Field(discriminator="type"),
]
OrderEvent = Annotated[
    OrderInitialized | OrderPaymentRecorded | OrderCompleted | OrderCancelled | CommandRejected,
    Field(discriminator="type"),
]
PaymentCommand = Annotated[
    RequestPayment | SettlePayment | DiscardPayment | RefundPayment,
    Field(discriminator="type"),
]
PaymentEvent = Annotated[
    PaymentRequested
    | PaymentFinalized
    | PaymentFailed
    | PaymentSettled
    | PaymentDiscarded
    | PaymentDiscardRejected
    | PaymentRefunded
    | CommandRejected,
    Field(discriminator="type"),
]
ShipmentCommand = Annotated[
    SendPackage | CancelShipment,
    Field(discriminator="type"),
]
ShipmentEvent = Annotated[
    PackageWasSent
    | ProductWasOutOfStock
    | ShipmentCancelled
    | ShipmentCancellationRejected
    | CommandRejected,
    Field(discriminator="type"),
]
ProcessCommand = Annotated[
    CancelProcess | ProcessTimedOut | ResumeProcess | SkipMessage,
    Field(discriminator="type"),
]

AnyMessage = Annotated[
    OpenCart
    | AddProduct
    | RemoveProduct
    | FinalizeCart
    | CancelCart
    | CartOpened
    | ProductAdded
    | ProductRemoved
    | CartFinalized
    | CartCancelled
    | InitOrder
    | RecordOrderPayment
    | CompleteOrder
    | CancelOrder
    | OrderInitialized
    | OrderPaymentRecorded
    | OrderCompleted
    | OrderCancelled
    | RequestPayment
    | SettlePayment
    | DiscardPayment
    | RefundPayment
    | PaymentRequested
    | PaymentFinalized
    | PaymentFailed
    | PaymentSettled
    | PaymentDiscarded
    | PaymentDiscardRejected
    | PaymentRefunded
    | SendPackage
    | CancelShipment
    | PackageWasSent
    | ProductWasOutOfStock
    | ShipmentCancelled
    | ShipmentCancellationRejected
    | CancelProcess
    | ProcessTimedOut
    | ResumeProcess
    | SkipMessage
    | CommandRejected,
    Field(discriminator="type"),
]

MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls for cls in get_args(get_args(AnyMessage)[0])
}


# Envelope


class Envelope(BaseModel):
    """The JSON object that travels on every topic: metadata around one message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: Id
    type: str
    schema_version: int = Field(default=1, ge=1)
    occurred_at: UtcDatetime
    correlation_id: Id
    causation_id: str | None
    data: AnyMessage

    @model_validator(mode="before")
    @classmethod
    def _current_version(cls, obj: Any) -> Any:
        """Lift older data to the current version of its type, wherever an envelope is read
        (the wire, and the envelopes a process record keeps); a message object is current."""
        if not isinstance(obj, Mapping):
            return obj
        if isinstance(obj.get("data"), Message):
            return {"schema_version": current_version(obj["data"].type), **obj}
        return upcast_envelope(obj)

    @model_validator(mode="after")
    def _type_matches_data(self) -> Self:
        if self.type != self.data.type:
            raise ValueError(f"envelope type {self.type!r} does not match data {self.data.type!r}")
        if self.schema_version != current_version(self.type):
            raise ValueError(
                f"{self.type} is at schema_version {current_version(self.type)}, "
                f"not {self.schema_version}"
            )
        return self

    @classmethod
    def wrap(
        cls,
        message: Message,
        *,
        message_id: str,
        occurred_at: datetime,
        correlation_id: str,
        causation_id: str | None,
    ) -> Envelope:
        """Put ``message`` in an envelope whose ``type`` is the message's type."""
        return cls.model_validate(
            {
                "message_id": message_id,
                "type": message.type,
                "schema_version": current_version(message.type),
                "occurred_at": occurred_at,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "data": message,
            }
        )


def to_wire(envelope: Envelope) -> dict[str, Any]:
    """The JSON-able form of ``envelope``: ``data`` without ``type``, money and times as text."""
    wire = envelope.model_dump(mode="json")
    wire["data"].pop("type")
    return wire


def from_wire(obj: Mapping[str, Any]) -> Envelope:
    """Validate a decoded JSON object into an ``Envelope``.

    Data of an older ``schema_version`` is lifted to the current one first
    (``aggregates.upcasting``). Raises ``ValueError`` (``pydantic.ValidationError`` is one)
    with a readable message for a non-object, an unknown type, a missing or wrong field, and
    ``FutureVersion`` (a ``ValueError`` too) for a version newer than this release reads.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"an envelope is a JSON object, not {type(obj).__name__}")
    message_type = obj.get("type")
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {message_type!r}")
    data = obj.get("data")
    if not isinstance(data, Mapping):
        raise ValueError(f"data of {message_type} must be a JSON object")
    if data.get("type", message_type) != message_type:
        raise ValueError(f"data type {data['type']!r} does not match envelope {message_type!r}")
    lifted = upcast_envelope(obj)
    return Envelope.model_validate({**lifted, "data": {**lifted["data"], "type": message_type}})


NAMESPACE = uuid.UUID("5c0d7a52-6f0e-4b8e-9a4e-2f3c1d0b9e71")
_NAMESPACE_BYTES = NAMESPACE.bytes


def deterministic_id(cause_message_id: str, step: str) -> str:
    """The id of the message that ``step`` emits because of ``cause_message_id``.

    The same cause and step always give the same id, so replays and retries are idempotent.
    It is ``str(uuid.uuid5(NAMESPACE, f"{cause_message_id}:{step}"))``, computed without the
    ``UUID`` object, which took most of the time (a unit test compares the two).
    """
    name = f"{cause_message_id}:{step}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def order_id_of(message: Message | Envelope) -> str:
    """The order id (equal to the cart id) that keys ``message`` on every topic.

    For an envelope it is the data's order id, falling back to its ``correlation_id``.
    """
    if isinstance(message, Envelope):
        try:
            return order_id_of(message.data)
        except ValueError:
            return message.correlation_id
    for field in _order_fields(type(message)):
        value = getattr(message, field)
        if isinstance(value, str):
            return value
    raise ValueError(f"{message.type} carries no order id")


@functools.cache
def _order_fields(cls: type[Message]) -> tuple[str, ...]:
    """Which of ``order_id`` and ``cart_id`` the class declares (a missing attribute costs
    pydantic an exception, and ``model_fields`` a deprecation check, on every call)."""
    return tuple(f for f in ("order_id", "cart_id") if f in cls.model_fields)
