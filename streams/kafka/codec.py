"""The one place where bytes become messages and back, and where bad bytes become dead letters.

Records of an older ``schema_version`` are lifted to the current model as they are decoded
(``from_wire`` runs the upcasters of ``aggregates.upcasting``), so topics kept forever stay
readable; a record of a version newer than this release knows is refused with that reason.
Encoding always writes the current version of each type.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Message as KafkaRecord
from pydantic import ValidationError

from aggregates.messages import (
    MESSAGE_TYPES,
    Envelope,
    Message,
    from_wire,
    order_id_of,
)
from aggregates.upcasting import FutureVersion, current_version

# A valid message is a few hundred bytes; anything this big is refused before parsing.
MAX_VALUE_BYTES = 256 * 1024


class DecodeError(ValueError):
    """Bytes that are not a valid message for the topic they came from."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_WIRE_EXCLUDES: Any = {"data": {"type"}}


def encode(envelope: Envelope) -> bytes:
    """``to_wire(envelope)`` as compact JSON, serialized by pydantic in one pass."""
    return envelope.model_dump_json(exclude=_WIRE_EXCLUDES).encode()


def external(message: Message, message_id: str | None = None) -> Envelope:
    """A message from outside the system (a shop, an operator): a fresh id, now, no cause."""
    return Envelope.wrap(
        message,
        message_id=message_id or str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        correlation_id=order_id_of(message),
        causation_id=None,
    )


def answer(
    event: Message,
    command: Envelope,
    *,
    message_id: str,
    correlation_id: str,
    at: datetime | None = None,
) -> Envelope:
    """``event`` as a module's answer to ``command``: caused by it, and stamped when decided.

    The rule for an event's ``occurred_at``: the time its module decided it (``at``, default
    now), never the command's. Deadlines are the causing message's time plus the next state's
    timeout, and the process manager's commands carry their cause's time; an event stamped
    with its command's time would let a module's backlog eat into the next state's timeout
    (and, followed everywhere, date every message of an order back to its first one). Ids stay
    derived from the command, so a retried decision is still the same message.
    """
    return Envelope.wrap(
        event,
        message_id=message_id,
        occurred_at=at or datetime.now(UTC),
        correlation_id=correlation_id,
        causation_id=command.message_id,
    )


def key_of(envelope: Envelope) -> bytes:
    """The Kafka key of every message of an order's process: the order id as UTF-8."""
    return order_id_of(envelope).encode()


def decode(key: bytes | None, value: bytes | None, accepted: frozenset[str]) -> Envelope:
    """Decode one record of a topic that carries the message types in ``accepted``.

    Raises ``DecodeError`` with a readable reason for anything else.
    """
    return _validated(key, _parsed(value), accepted)


def decode_if_reacting(
    key: bytes | None, value: bytes | None, accepted: frozenset[str], reacting: frozenset[str]
) -> Envelope | None:
    """``decode``, for a record whose type is in ``reacting``; ``None`` for another type.

    The offline fold's lean path (replay, verify): a type the process never reacts to is not
    validated field by field, only as far as its envelope: JSON, a known type that belongs on
    this topic, its data an object of that type, a schema version this release reads, and the
    key its order id. Raises ``DecodeError`` for anything else.
    """
    obj = _parsed(value)
    message_type = obj.get("type") if isinstance(obj, dict) else None
    if message_type in reacting:
        return _validated(key, obj, accepted)
    _check_envelope(key, obj, accepted)
    return None


def _parsed(value: bytes | None) -> Any:
    """The JSON in ``value``. orjson parses (four times faster); what it refuses is given to the
    standard library's parser, which accepts a little more (NaN, integers past 64 bits) and
    words the reason."""
    if value is None:
        raise DecodeError("empty value (tombstone)")
    if len(value) > MAX_VALUE_BYTES:
        raise DecodeError(f"value of {len(value)} bytes exceeds the limit of {MAX_VALUE_BYTES}")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            return json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DecodeError(f"invalid JSON: {error}") from None


def _validated(key: bytes | None, obj: Any, accepted: frozenset[str]) -> Envelope:
    try:
        envelope = from_wire(obj)
    except FutureVersion as error:
        raise DecodeError(f"unknown schema version: {error}") from None
    except ValidationError as error:
        raise DecodeError(f"invalid message: {_summary(error)}") from None
    except ValueError as error:
        raise DecodeError(f"invalid message: {error}") from None
    if envelope.type not in accepted:
        raise DecodeError(f"{envelope.type} does not belong on this topic")
    _check_key(key, order_id_of(envelope))
    return envelope


def _check_envelope(key: bytes | None, obj: Any, accepted: frozenset[str]) -> None:
    """What ``from_wire`` and ``decode`` check of an envelope before its fields."""
    if not isinstance(obj, dict):
        raise DecodeError(f"invalid message: an envelope is a JSON object, not {type(obj)}")
    message_type, data = obj.get("type"), obj.get("data")
    if message_type not in MESSAGE_TYPES:
        raise DecodeError(f"invalid message: unknown message type {message_type!r}")
    if not isinstance(data, dict) or data.get("type", message_type) != message_type:
        raise DecodeError(f"invalid message: data of {message_type} is not its object")
    version = obj.get("schema_version", 1)
    if isinstance(version, int) and not 1 <= version <= current_version(message_type):
        raise DecodeError(f"unknown schema version: {version} of {message_type}")
    if message_type not in accepted:
        raise DecodeError(f"{message_type} does not belong on this topic")
    order_id = obj.get("correlation_id")
    for field in ("order_id", "cart_id"):
        if isinstance(data.get(field), str):
            order_id = data[field]
            break
    _check_key(key, str(order_id))


def _check_key(key: bytes | None, order_id: str) -> None:
    expected_key = order_id.encode()
    if key != expected_key:
        if key is None:
            raise DecodeError(f"key missing: expected the order id {order_id!r}")
        shown = key.decode(errors="replace")
        raise DecodeError(f"key {shown!r} is not the order id {order_id!r}")


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be processed, with everything needed to look at it or replay it."""

    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    redrive_count: int = 0
    """How many times an operator sent this record back to its topic (0: never)."""
    redriven_from: str | None = None
    """The dead letter (``partition:offset`` on ``dead-letters``) of its last redrive."""

    def to_bytes(self, failed_at: datetime | None = None) -> bytes:
        record: dict[str, Any] = {
            "reason": self.reason,
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            "key": _text_or_none(self.key),
            "key_base64": _b64(self.key),
            "value_base64": _b64(self.value),
            "value_bytes": None if self.value is None else len(self.value),
            "failed_at": (failed_at or datetime.now(UTC)).isoformat(),
            "redrive_count": self.redrive_count,
            "redriven_from": self.redriven_from,
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @staticmethod
    def from_bytes(raw: bytes) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(raw)
        return record


def partition_of(record: KafkaRecord) -> int:
    partition = record.partition()
    assert partition is not None, "a consumed record always has a partition"
    return partition


def _summary(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "message"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _text_or_none(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None
