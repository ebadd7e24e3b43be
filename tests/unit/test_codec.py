"""The codec's fast paths against the plain ones: the same JSON out, the same verdicts in."""

from __future__ import annotations

import json

import pytest

from aggregates import messages as m
from aggregates.messages import MESSAGE_TYPES, order_id_of, to_wire
from streams.kafka.codec import DecodeError, decode, encode
from tests.unit.aggregates.test_messages import SAMPLES, wrap

EVERY_TYPE = frozenset(MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: message.type)
def test_encode_writes_the_wire_form_as_compact_json(message):
    envelope = wrap(message)
    encoded = encode(envelope)
    assert json.loads(encoded) == to_wire(envelope)
    assert encoded == json.dumps(to_wire(envelope), separators=(",", ":")).encode()


def test_text_beyond_ascii_is_written_as_utf8_and_read_back():
    envelope = wrap(m.OpenCart(cart_id="cart-ä", client_id="Zoë 😀"))
    encoded = encode(envelope)
    assert "Zoë 😀".encode() in encoded
    assert decode("cart-ä".encode(), encoded, EVERY_TYPE) == envelope


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: message.type)
def test_decode_reads_what_encode_wrote(message):
    envelope = wrap(message)
    assert decode(order_id_of(envelope).encode(), encode(envelope), EVERY_TYPE) == envelope


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"NaN", "invalid message"),  # orjson refuses it; the standard parser reads a float
        (b'{"type": 1e999}', "invalid message"),
        (b"[" + b"9" * 30 + b"]", "invalid message"),  # an integer past 64 bits
    ],
)
def test_what_orjson_refuses_gets_the_standard_parsers_verdict(value, reason):
    with pytest.raises(DecodeError, match=reason):
        decode(b"cart-42", value, EVERY_TYPE)
