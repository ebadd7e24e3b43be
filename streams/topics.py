"""The topics of the wire contract and their configs."""

from __future__ import annotations

from dataclasses import dataclass

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
    """Every contract topic. Event topics are the source of truth, so they are kept forever."""
    forever = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    return [
        *(TopicSpec(name, forever) for name in EVENT_TOPICS),
        *(TopicSpec(name, week) for name in COMMAND_TOPICS),
        TopicSpec(DEAD_LETTERS, {**forever, "max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}),
    ]
