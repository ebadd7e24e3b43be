"""What one input record asks of the process manager, whichever path delivers it.

Both hot paths (the Faust agent and the transactional loop, ``streams/process/loop.py``) take
a record in the same way: ``intake`` says whether it is forwarded, dead-lettered or decoded,
and ``decide`` runs the pure state machine on the order's stored record. What differs between
the paths is only how the record and the commands leave, and when ``Decision.report`` runs
(the loop reports after its transaction commits, so that no log line tells of an aborted
transition).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregates.messages import Envelope
from process_manager import (
    OPERATOR_ACTIONS,
    TRANSITIONS,
    Outcome,
    Process,
    Timeouts,
    reason_of,
    step,
    trigger_of,
)
from streams.kafka import routing
from streams.kafka.codec import DecodeError, decode, encode
from streams.kafka.topics import COMMAND_TOPIC
from streams.observability import metrics
from streams.observability.logs import get_logger

log = get_logger("streams.process.worker")


@dataclass(frozen=True)
class Refused:
    """A record that cannot be decoded: it goes to the dead letters with ``reason``."""

    reason: str


def intake(
    topic: str,
    partition: int,
    key: bytes | None,
    value: bytes | None,
    headers: routing.RawHeaders,
    partitions: int,
    accepted: Any,
) -> routing.Forward | Refused | Envelope:
    """Forward a record that is on another key's partition, refuse one that does not decode,
    else the decoded envelope."""
    forward = routing.misrouted(topic, partition, key, value, headers, partitions)
    if forward is not None:
        return forward
    try:
        return decode(key, value, accepted)
    except DecodeError as error:
        return Refused(error.reason)


def load(raw: bytes | None) -> Process | None:
    return None if raw is None else Process.model_validate_json(raw)


def dump(process: Process) -> bytes:
    return process.model_dump_json().encode()


def bound_log(key: bytes, envelope: Envelope) -> Any:
    """The worker's logger with the message's order, correlation, causation, id and type."""
    return log.bind(
        order_id=key.decode(),
        correlation_id=envelope.correlation_id,
        causation_id=envelope.causation_id,
        message_id=envelope.message_id,
        message_type=envelope.type,
    )


@dataclass(frozen=True)
class Decision:
    """The state machine's outcome for one message, and what it asks to be written and sent."""

    key: bytes
    envelope: Envelope
    topic_kind: str
    current: Process | None
    outcome: Outcome

    @property
    def changed(self) -> Process | None:
        """The order's new record, or None when the stored one stands.

        An ignored message changes the record too: its id is remembered. A duplicate writes
        the record again: a worker killed after its RocksDB write but before the changelog
        write reached Kafka restarts with a record the changelog lacks (found by chaos).
        """
        process, outcome = self.outcome.process, self.outcome
        if process is None:
            return None
        if process is self.current and outcome.kind != "duplicate" and not outcome.commands:
            return None
        return process

    @property
    def record(self) -> bytes | None:
        """``changed`` as the table stores it."""
        process = self.changed
        return None if process is None else dump(process)

    def commands(self) -> list[tuple[str, bytes]]:
        """(topic name without prefix, value) of every command, keyed by the order id."""
        return [(COMMAND_TOPIC[c.type], encode(c)) for c in self.outcome.commands]

    def report(self, push_deadline: Callable[[bytes, datetime | None], None]) -> None:
        """Count it, log it, and index the new deadline of an applied transition."""
        outcome, envelope = self.outcome, self.envelope
        metrics.message(self.topic_kind, outcome.kind)
        bound = bound_log(self.key, envelope)
        if outcome.kind == "failed":
            bound.error("process failed", reason=outcome.reason)
        elif outcome.kind == "applied" and outcome.process is not None:
            push_deadline(self.key, outcome.process.deadline)
            from_state = self.current.state if self.current else None
            if (from_state, trigger_of(envelope.data)) in TRANSITIONS:  # not a fact merely noted
                metrics.transition(from_state, outcome.process.state)
            (bound.info if envelope.type in OPERATOR_ACTIONS else bound.debug)(
                "transition",
                from_state=from_state,
                to_state=outcome.process.state,
                commands=[c.type for c in outcome.commands],
                reason=outcome.reason,
            )
        elif outcome.kind == "quarantined":
            bound.warning("process quarantined", reason=outcome.reason)
        elif outcome.kind == "duplicate":
            bound.info("duplicate message; owed commands re-sent", commands=len(outcome.commands))
        else:
            bound.info("message ignored", reason=outcome.reason)


def decide(
    key: bytes,
    stored: bytes | None,
    envelope: Envelope,
    topic_kind: str,
    *,
    timeouts: Timeouts,
    handle: Any,
) -> Decision:
    """``step`` on the order's stored record; an unreadable record fails the message (there is
    no record to park it on: it goes to the dead letters)."""
    try:
        current = load(stored)
    except Exception as error:
        reason = f"process record unreadable: {reason_of(error)}"
        return Decision(key, envelope, topic_kind, None, Outcome("failed", None, (), reason))
    return decide_on(key, current, envelope, topic_kind, timeouts=timeouts, handle=handle)


def decide_on(
    key: bytes,
    current: Process | None,
    envelope: Envelope,
    topic_kind: str,
    *,
    timeouts: Timeouts,
    handle: Any,
) -> Decision:
    """``decide`` on a record already read."""
    outcome = step(current, envelope, timeouts=timeouts, decide=handle)
    return Decision(key, envelope, topic_kind, current, outcome)
