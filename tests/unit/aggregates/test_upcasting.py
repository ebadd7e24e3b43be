"""Schema evolution: old records are lifted to the current model, future ones refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from aggregates.messages import (
    MESSAGE_TYPES,
    CancelCart,
    Envelope,
    PaymentFinalized,
    from_wire,
    to_wire,
)
from aggregates.upcasting import CURRENT_VERSIONS, UPCASTERS, FutureVersion, current_version
from process_manager import Process, Quarantine, State
from streams.kafka.codec import DecodeError, answer, decode, encode, external
from streams.kafka.topics import ACCEPTED_TYPES
from tests.fixtures.recorded import release_0_1_0

PAYMENTS = ACCEPTED_TYPES["payments.events"]


def recorded_payment_finalized() -> list[tuple[bytes, bytes]]:
    return [(r.key, r.value) for r in release_0_1_0() if r.type == "PaymentFinalized"]


def test_every_older_version_of_every_type_has_an_upcaster() -> None:
    assert set(CURRENT_VERSIONS) <= set(MESSAGE_TYPES)
    missing = [
        (message_type, version)
        for message_type, current in CURRENT_VERSIONS.items()
        for version in range(1, current)
        if (message_type, version) not in UPCASTERS
    ]
    assert not missing


def test_a_recorded_version_1_payment_finalized_reads_as_the_current_model() -> None:
    # Given the PaymentFinalized records release 0.1.0 wrote, at schema_version 1
    records = recorded_payment_finalized()
    assert len(records) == 2
    for key, value in records:
        raw = json.loads(value)
        assert raw["schema_version"] == 1 and "settle_after" in raw["data"]

        # When the codec decodes one
        envelope = decode(key, value, PAYMENTS)

        # Then it is the current model, its settle_after now settles_at, nothing else changed
        assert envelope.schema_version == current_version("PaymentFinalized") == 2
        assert isinstance(envelope.data, PaymentFinalized)
        assert envelope.data.settles_at == datetime.fromisoformat(raw["data"]["settle_after"])
        assert envelope.message_id == raw["message_id"]
        assert envelope.data.finalized_at == datetime.fromisoformat(raw["data"]["finalized_at"])


def test_a_version_1_record_is_written_back_as_version_2() -> None:
    key, value = recorded_payment_finalized()[0]
    wire = to_wire(decode(key, value, PAYMENTS))
    assert wire["schema_version"] == 2
    assert "settle_after" not in wire["data"]
    assert wire["data"]["settles_at"] == json.loads(value)["data"]["settle_after"]


def test_a_version_1_record_without_settle_after_settles_when_finalized() -> None:
    key, value = recorded_payment_finalized()[0]
    raw = json.loads(value)
    del raw["data"]["settle_after"]
    envelope = from_wire(raw)
    assert isinstance(envelope.data, PaymentFinalized)
    assert envelope.data.settles_at == envelope.data.finalized_at


def test_a_record_without_schema_version_is_version_1() -> None:
    key, value = recorded_payment_finalized()[0]
    raw = json.loads(value)
    del raw["schema_version"]
    assert isinstance(decode(key, json.dumps(raw).encode(), PAYMENTS).data, PaymentFinalized)


def test_a_version_2_record_reads_as_it_is() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    message = PaymentFinalized(
        payment_id="p-1",
        order_id="o-1",
        amount=Decimal("10.00"),
        finalized_at=now,
        settles_at=now + timedelta(seconds=5),
    )
    envelope = external(message)
    value = encode(envelope)
    assert json.loads(value)["schema_version"] == 2
    assert decode(b"o-1", value, PAYMENTS) == envelope


def test_a_future_version_is_refused_with_that_version_in_the_reason() -> None:
    key, value = recorded_payment_finalized()[0]
    raw = {**json.loads(value), "schema_version": 3}
    with pytest.raises(DecodeError, match="schema_version 3 of PaymentFinalized is newer") as info:
        decode(key, json.dumps(raw).encode(), PAYMENTS)
    assert "up to 2" in info.value.reason
    with pytest.raises(FutureVersion):
        from_wire(raw)


def test_a_future_version_of_an_unchanged_type_is_refused_too() -> None:
    raw = json.loads(encode(external(CancelCart(cart_id="cart-1"))))
    raw["schema_version"] = 2
    with pytest.raises(DecodeError, match="schema_version 2 of CancelCart is newer"):
        decode(b"cart-1", json.dumps(raw).encode(), ACCEPTED_TYPES["carts.commands"])


def test_version_0_is_refused() -> None:
    key, value = recorded_payment_finalized()[0]
    raw = {**json.loads(value), "schema_version": 0}
    with pytest.raises(DecodeError, match="schema_version 0"):
        decode(key, json.dumps(raw).encode(), PAYMENTS)


def test_writers_stamp_the_current_version() -> None:
    # The payment module answers with Envelope.wrap through the codec's answer
    now = datetime(2026, 12, 1, tzinfo=UTC)
    command = external(CancelCart(cart_id="o-1"))
    event = PaymentFinalized(
        payment_id="p", order_id="o-1", amount=Decimal("1.00"), finalized_at=now, settles_at=now
    )
    envelope = answer(event, command, message_id="m", correlation_id="o-1", at=now)
    assert envelope.schema_version == 2


def test_an_envelope_that_claims_an_older_version_for_a_current_message_is_refused() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    event = PaymentFinalized(
        payment_id="p", order_id="o-1", amount=Decimal("1.00"), finalized_at=now, settles_at=now
    )
    with pytest.raises(ValidationError, match="at schema_version 2, not 1"):
        Envelope(
            message_id="m",
            type="PaymentFinalized",
            schema_version=1,
            occurred_at=now,
            correlation_id="o-1",
            causation_id=None,
            data=event,
        )


def test_a_process_record_that_keeps_a_version_1_envelope_still_loads() -> None:
    # Given a process record of release 0.1.0 quarantined on a PaymentFinalized of version 1
    key, value = recorded_payment_finalized()[0]
    v1 = json.loads(value)
    stored = {
        "order_id": key.decode(),
        "state": "AwaitingPayment",
        "deadline": None,
        "client_id": "client-1",
        "product_items": [{"product_id": "sku", "quantity": 1, "unit_price": "10.00"}],
        "total_price": "10.00",
        "currency": "EUR",
        "payment_method": "card_ok",
        "quarantine": {
            "message": {**v1, "data": {**v1["data"], "type": "PaymentFinalized"}},
            "reason": "RuntimeError: boom",
        },
    }
    # When the new release loads it, then the kept message is the current model
    process = Process.model_validate_json(json.dumps(stored))
    assert process.state == State.AwaitingPayment
    assert isinstance(process.quarantine, Quarantine)
    assert process.quarantine.message.schema_version == 2
    assert isinstance(process.quarantine.message.data, PaymentFinalized)
