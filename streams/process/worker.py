"""The Faust worker: the order process manager, its timeout timer, and the module services.

    faust -A streams.process.worker worker -l info

One agent consumes the four events topics and `processes.commands` (co-partitioned by order
id), keeps one record per order in the `processes` table (RocksDB), and sends the commands the
pure state machine decides. Gather, decide, apply: nothing else happens in the agent.

With `COORDINATION=saga` the same agent runs the article's stateless saga instead
(`process_manager.saga`): each event's command from that event alone. No table is declared (so
none is created, restored or written), no deadline timer runs, and the process views answer
that this mode keeps no process state.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import mode

from aggregates.messages import Envelope, ProcessTimedOut, deterministic_id
from process_manager import (
    OPERATOR_ACTIONS,
    REACTS_TO,
    TRANSITIONS,
    Outcome,
    Process,
    is_quarantined,
    reason_of,
    saga,
    step,
    trigger_of,
)
from streams import faults
from streams.kafka import dead_letters, routing
from streams.kafka.admin import KafkaAccessError, check_access
from streams.kafka.app import create_app, send_after_changelog
from streams.kafka.codec import DecodeError, decode, encode
from streams.kafka.consuming import Consumed
from streams.kafka.topics import (
    ACCEPTED_TYPES,
    COMMAND_TOPIC,
    DEAD_LETTERS,
    PROCESS_COMMANDS,
    PROCESS_INPUTS,
    durability,
)
from streams.modules.runner import Component, module_components, start
from streams.observability import metrics
from streams.observability.logs import configure_logging, get_logger
from streams.process.deadlines import DeadlineIndex
from streams.process.web import register_routes
from streams.settings import PROCESS_TABLE, get_settings

settings = get_settings()
configure_logging(settings.log_format, settings.log_level)
log = get_logger("streams.process.worker")

# Refused credentials end the worker here with one line, not in endless client retries; the
# cluster's size gives the replication of the topics Faust creates (its table changelog).
try:
    _brokers = check_access(settings, say=log.warning)
except KafkaAccessError as error:
    raise SystemExit(f"kafka: {error}") from None
settings = settings.model_copy(
    update={
        "topic_replication_factor": durability(
            _brokers, settings.topic_replication_factor
        ).replication_factor
    }
)
app = create_app(settings)
SAGA_MODE = settings.coordination == "saga"
if SAGA_MODE:
    log.info("coordination: the stateless saga (no process table, no timeouts)")

INPUTS = {settings.topic(name): ACCEPTED_TYPES[name] for name in PROCESS_INPUTS}
inputs = app.topic(*INPUTS, key_type=bytes, value_type=bytes)
outputs = {
    name: app.topic(settings.topic(name), key_type=bytes, value_type=bytes)
    for name in {*COMMAND_TOPIC.values(), DEAD_LETTERS}
}
# Where a record on the wrong partition goes again: the same input topic, by full name.
forwards = {topic: app.topic(topic, key_type=bytes, value_type=bytes) for topic in INPUTS}
# bytes keys and values: the changelog uses the raw serializer, like the input topics (#514).
processes: Any = None
if not SAGA_MODE:  # a table declared is a changelog created and restored: the saga has none
    processes = app.Table(
        PROCESS_TABLE, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
    )
TIMEOUTS = settings.timeouts()  # the same ones verify and replay fold with
DECIDE = faults.faulty_handle()  # process_manager.handle, unless a test injects a fault
deadlines = DeadlineIndex()


def load(raw: bytes | None) -> Process | None:
    return None if raw is None else Process.model_validate_json(raw)


@app.agent(inputs, concurrency=1)  # concurrency 1: higher can commit past in-flight events (#606)
async def process_orders(stream: Any) -> None:
    async for event in stream.events():
        await on_message(event)


async def on_message(event: Any) -> None:
    record = event.message
    forward = routing.misrouted(
        record.topic,
        record.partition,
        event.key,
        event.value,
        record.headers,
        app.consumer.topic_partitions(record.topic) or settings.topic_partitions,
    )
    if forward is not None:
        await send_forward(forward, record)
        return
    try:
        envelope = decode(event.key, event.value, INPUTS[record.topic])
    except DecodeError as error:
        await dead_letter(record, event.key, event.value, error.reason)
        return
    topic_kind = record.topic.removeprefix(settings.topic_prefix)
    if SAGA_MODE:
        await react_as_saga(record, event.key, event.value, envelope, topic_kind)
        return
    if envelope.type not in REACTS_TO:
        metrics.message(topic_kind, "ignored")
        return
    outcome = await apply(event.key, envelope, topic_kind)
    if outcome.kind == "failed":  # it broke a process that does not exist: nowhere to park it
        await dead_letter(record, event.key, event.value, f"process failed: {outcome.reason}")


def bound_log(key: bytes, envelope: Envelope) -> Any:
    """The worker's logger with the message's order, correlation, causation, id and type."""
    return log.bind(
        order_id=key.decode(),
        correlation_id=envelope.correlation_id,
        causation_id=envelope.causation_id,
        message_id=envelope.message_id,
        message_type=envelope.type,
    )


async def apply(key: bytes, envelope: Envelope, topic_kind: str) -> Outcome:
    bound = bound_log(key, envelope)
    try:
        current = load(processes.get(key))
    except Exception as error:  # no record to park the message on: it goes to the dead letters
        reason = f"process record unreadable: {reason_of(error)}"
        bound.error("process record unreadable", reason=reason)
        metrics.message(topic_kind, "failed")
        return Outcome("failed", None, (), reason)
    outcome = step(current, envelope, timeouts=TIMEOUTS, decide=DECIDE)
    metrics.message(topic_kind, outcome.kind)
    if outcome.process is not None and (
        outcome.process is not current or outcome.kind == "duplicate" or outcome.commands
    ):
        # An ignored message changes the record too: its id is remembered. A duplicate writes
        # the record again: a worker killed after its RocksDB write but before the changelog
        # write reached Kafka restarts with a record the changelog lacks (found by chaos).
        processes[key] = outcome.process.model_dump_json().encode()
        if outcome.commands:  # never ahead of the record of the state that decided them
            send_after_changelog(
                processes,
                [(outputs[COMMAND_TOPIC[c.type]], key, encode(c)) for c in outcome.commands],
            )
    if outcome.kind == "applied" and outcome.process is not None:
        deadlines.push(key, outcome.process.deadline)
        from_state = current.state if current else None
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
    return outcome


async def react_as_saga(
    record: Any, key: bytes, value: bytes, envelope: Envelope, topic_kind: str
) -> None:
    """The saga's command for one event, sent; nothing is read or written but the topics."""
    bound = bound_log(key, envelope)
    try:
        commands = saga.react(envelope)
    except Exception as error:  # a saga keeps nothing to park the message on
        metrics.message(topic_kind, "failed")
        await dead_letter(record, key, value, f"saga failed: {reason_of(error)}")
        return
    metrics.message(topic_kind, "applied" if commands else "ignored")
    bound.debug("saga reaction", commands=[c.type for c in commands])
    for command in commands:
        await outputs[COMMAND_TOPIC[command.type]].send(key=key, value=encode(command))


async def send_forward(forward: routing.Forward, record: Any) -> None:
    try:
        await forwards[forward.topic].send(
            key=forward.key,
            value=forward.value,
            partition=forward.partition,
            headers=forward.headers,  # type: ignore[arg-type]  # from aiokafka: (str, bytes)
        )
    except Exception as error:  # the record must not vanish: it goes to the dead letters
        reason = routing.unforwardable_reason(forward, record.partition, error)
        await dead_letter(record, forward.key, forward.value, reason)
        return
    routing.log_forward(forward, record.partition, record.offset)
    metrics.forwarded(forward.topic)


async def dead_letter(record: Any, key: bytes | None, value: bytes | None, reason: str) -> None:
    headers = routing.as_headers(record.headers)  # a redrive's count goes on with the letter
    consumed = Consumed(record.topic, record.partition, record.offset, key, value, headers)
    await outputs[DEAD_LETTERS].send(key=key, value=dead_letters.letter(consumed, reason))
    metrics.dead_letter(record.topic)


async def check_deadlines() -> None:
    """Announce passed deadlines to the owning partition; the agent re-checks and acts.

    A timer must not write the table, so it sends `ProcessTimedOut` to `processes.commands`,
    keyed by order id, which lands on the partition of the agent that owns the process.
    """
    if app.rebalancing or not app.tables.actives_ready:
        return
    owned = frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic in INPUTS)
    if deadlines.needs_rebuild(owned):
        # With RocksDB, items() covers only the actively assigned partitions.
        deadlines.rebuild(owned, _stored_deadlines())
    now = datetime.now(UTC)
    for key, deadline in deadlines.due(now):
        process = load(processes.get(key))
        if process is None or process.deadline != deadline:
            continue
        if is_quarantined(process):  # it waits for an operator, not for its deadline; once
            deadlines.withhold(key, deadline)  # released with that deadline, it is due again
            continue
        timed_out = Envelope.wrap(
            ProcessTimedOut(order_id=process.order_id, deadline=deadline),
            message_id=deterministic_id(f"{process.order_id}:{deadline.isoformat()}", "timeout"),
            occurred_at=now,
            correlation_id=process.order_id,
            causation_id=None,
        )
        await outputs[PROCESS_COMMANDS].send(key=key, value=encode(timed_out))
        metrics.timeout_fired()
        log.info(
            "deadline passed",
            order_id=process.order_id,
            correlation_id=timed_out.correlation_id,
            causation_id=timed_out.causation_id,
            message_id=timed_out.message_id,
            message_type=timed_out.type,
            state=process.state,
            deadline=deadline,
        )


if not SAGA_MODE:  # the saga has no time: nothing ends an order that stopped
    app.timer(interval=settings.timeout_check_interval_s)(check_deadlines)


def _stored_deadlines() -> list[tuple[bytes, datetime]]:
    found = []
    for key, raw in processes.items():
        process = load(raw)
        if process is not None and process.deadline is not None:
            found.append((key, process.deadline))
    return found


@app.service
class ModuleServices(mode.Service):
    """The modules' command handlers and the outbox relay, in threads of this worker."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._components: dict[str, Component] = {}

    async def on_start(self) -> None:
        if not settings.worker_runs_modules:
            log.info("module handlers not started here (WORKER_RUNS_MODULES=false)")
            return
        self._components = module_components(settings)
        start(self._components, self._stop, settings.stall_exit_after_s)

    async def on_stop(self) -> None:
        self._stop.set()


register_routes(app, processes, settings)
