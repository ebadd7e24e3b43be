"""The topics of the wire contract and their configs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from aggregates import messages as m

EVENT_TOPICS = ("carts.events", "orders.events", "payments.events", "shipments.events")
COMMAND_TOPICS = (
    "carts.commands",
    "orders.commands",
    "payments.commands",
    "shipments.commands",
    "processes.commands",
)
DEAD_LETTERS = "dead-letters"
# Dead letters keep the raw value (base64), so they may be larger than the record that failed.
DEAD_LETTER_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str]


def contract_topics() -> list[TopicSpec]:
    """Every contract topic, with its configs.

    Event topics are the source of truth, so they are kept forever; so is `processes.commands`,
    because its timeouts and operator cancels are inputs of the process that replay and verify
    fold. The other command topics keep a week.
    """
    forever = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    kept_forever = (*EVENT_TOPICS, "processes.commands")
    return [
        *(TopicSpec(name, forever) for name in kept_forever),
        *(TopicSpec(name, week) for name in COMMAND_TOPICS if name not in kept_forever),
        TopicSpec(DEAD_LETTERS, {**forever, "max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}),
    ]


@dataclass(frozen=True)
class Durability:
    """How many copies of every topic the cluster keeps, and the topic configs that go with it."""

    replication_factor: int
    config: dict[str, str]


def durability(brokers: int, replication_factor: int | None = None) -> Durability:
    """Replication 3, two in sync for a write, no unclean leader, on three brokers or more;
    one copy (the broker's defaults) on fewer. ``replication_factor`` overrides the count."""
    factor = replication_factor or (3 if brokers >= 3 else 1)
    if factor < 3:
        return Durability(factor, {})
    config = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
    return Durability(factor, config)


def _names(union: Any) -> frozenset[str]:
    members = get_args(get_args(union)[0]) if get_args(union) else (union,)
    return frozenset(cls.__name__ for cls in members)


ACCEPTED_TYPES: dict[str, frozenset[str]] = {
    "carts.commands": _names(m.CartCommand),
    "carts.events": _names(m.CartEvent),
    "orders.commands": _names(m.OrderCommand),
    "orders.events": _names(m.OrderEvent),
    "payments.commands": _names(m.PaymentCommand),
    "payments.events": _names(m.PaymentEvent),
    "shipments.commands": _names(m.ShipmentCommand),
    "shipments.events": _names(m.ShipmentEvent),
    "processes.commands": _names(m.ProcessCommand),
}
"""The message types each contract topic carries; anything else is a dead letter there."""

COMMAND_TOPIC: dict[str, str] = {
    message_type: topic
    for topic, types in ACCEPTED_TYPES.items()
    if topic.endswith(".commands")
    for message_type in types
}
"""The commands topic of each command type."""
