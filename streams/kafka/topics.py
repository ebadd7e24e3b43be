"""The topics of the wire contract, who reads them, and their configs.

This module owns every topic name (without the configured prefix: ``Settings.topic`` adds it);
everything else asks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, get_args

from aggregates import messages as m

MODULES: Final = ("carts", "orders", "payments", "shipments")
"""The modules a process commands; each has its `<module>.commands` and `<module>.events`."""
AGGREGATES: Final = ("carts", "orders", "payments")
"""The event-sourced modules among them; one loop handles their commands. Shipments is CRUD."""
PROCESS_COMMANDS: Final = "processes.commands"
"""The process manager's own commands: timeouts and operators' actions."""
DEAD_LETTERS: Final = "dead-letters"
DEAD_LETTER_REDRIVES: Final = "dead-letters.redrives"
"""The audit of redrives: which dead letter an operator sent back, where, when, who."""
# Dead letters keep the raw value (base64), so they may be larger than the record that failed.
DEAD_LETTER_MAX_BYTES = 8 * 1024 * 1024


def commands_of(module: str) -> str:
    """The topic of ``module``'s commands, which its command handler consumes."""
    return f"{module}.commands"


def events_of(module: str) -> str:
    """The topic of ``module``'s events, which the process manager and the read model consume."""
    return f"{module}.events"


EVENT_TOPICS: Final = tuple(events_of(module) for module in MODULES)
COMMAND_TOPICS: Final = (*(commands_of(module) for module in MODULES), PROCESS_COMMANDS)
PROCESS_INPUTS: Final = (*EVENT_TOPICS, PROCESS_COMMANDS)
"""What the process manager consumes (co-partitioned by order id), in the order that breaks
timestamp ties when replay and verify merge them."""
READ_MODEL_INPUTS: Final = EVENT_TOPICS
"""What the read model projects."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str]


def contract_topics() -> list[TopicSpec]:
    """Every contract topic, with its configs.

    Event topics are the source of truth, so they are kept forever; so is `processes.commands`,
    because its timeouts and operator cancels are inputs of the process that replay and verify
    fold. The other command topics keep a week. Dead letters and the audit of their redrives
    are kept forever.
    """
    forever = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    kept_forever = PROCESS_INPUTS
    return [
        *(TopicSpec(name, forever) for name in kept_forever),
        *(TopicSpec(name, week) for name in COMMAND_TOPICS if name not in kept_forever),
        TopicSpec(DEAD_LETTERS, {**forever, "max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}),
        TopicSpec(DEAD_LETTER_REDRIVES, forever),
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
    commands_of("carts"): _names(m.CartCommand),
    events_of("carts"): _names(m.CartEvent),
    commands_of("orders"): _names(m.OrderCommand),
    events_of("orders"): _names(m.OrderEvent),
    commands_of("payments"): _names(m.PaymentCommand),
    events_of("payments"): _names(m.PaymentEvent),
    commands_of("shipments"): _names(m.ShipmentCommand),
    events_of("shipments"): _names(m.ShipmentEvent),
    PROCESS_COMMANDS: _names(m.ProcessCommand),
}
"""The message types each contract topic carries; anything else is a dead letter there."""

COMMAND_TOPIC: dict[str, str] = {
    message_type: topic
    for topic, types in ACCEPTED_TYPES.items()
    if topic.endswith(".commands")
    for message_type in types
}
"""The commands topic of each command type."""
