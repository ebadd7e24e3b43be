"""The Faust worker: the order process manager, its timeout timer, and the module services.

    faust -A streams.process.worker worker -l info

The hot path consumes the four events topics and `processes.commands` (co-partitioned by
order id), keeps one record per order in the `processes` table (RocksDB), and sends the
commands the pure state machine decides. Gather, decide, apply. It is the transactional loop
of `streams/process/loop.py` (`HOT_PATH=loop`, the default), or one Faust agent
(`HOT_PATH=agent`): the same decisions (`streams/process/decisions.py`), the same table.

With `COORDINATION=saga` the agent runs the article's stateless saga instead
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
from process_manager import REACTS_TO, is_quarantined, reason_of, saga
from streams import collector, faults
from streams.kafka import dead_letters, routing
from streams.kafka.admin import KafkaAccessError, check_access
from streams.kafka.app import create_app, send_after_changelog
from streams.kafka.codec import encode
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
from streams.process.decisions import Decision, Refused, bound_log, decide, intake, load
from streams.process.loop import ProcessLoop
from streams.process.web import register_routes
from streams.settings import PROCESS_TABLE, get_settings

settings = get_settings()
configure_logging(settings.log_format, settings.log_level)
collector.tune()
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
LOOP_MODE = settings.hot_path == "loop"

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


async def process_orders(stream: Any) -> None:
    async for event in stream.events():
        await on_message(event)


def push_deadlines_soon(batch: list[tuple[bytes, datetime | None]]) -> None:
    """``deadlines.push`` of a batch's deadlines, from the loop's thread: on the event loop,
    which the timer runs on. One call per batch: each call wakes the event loop's thread."""
    app.loop.call_soon_threadsafe(_push_all, batch)


def _push_all(batch: list[tuple[bytes, datetime | None]]) -> None:
    for key, deadline in batch:
        deadlines.push(key, deadline)


if LOOP_MODE:  # Faust's consumer then reads the table's changelog alone
    process_loop = ProcessLoop(
        app,
        processes,
        settings,
        INPUTS,
        timeouts=TIMEOUTS,
        handle=DECIDE,
        push_deadlines=push_deadlines_soon,
    )
    app.on_partitions_revoked.connect(process_loop.on_revoked)
else:  # concurrency 1: higher can commit past in-flight events (#606)
    app.agent(inputs, concurrency=1)(process_orders)


async def on_message(event: Any) -> None:
    record = event.message
    taken = intake(
        record.topic,
        record.partition,
        event.key,
        event.value,
        record.headers,
        app.consumer.topic_partitions(record.topic) or settings.topic_partitions,
        INPUTS[record.topic],
    )
    if isinstance(taken, routing.Forward):
        await send_forward(taken, record)
        return
    if isinstance(taken, Refused):
        await dead_letter(record, event.key, event.value, taken.reason)
        return
    topic_kind = record.topic.removeprefix(settings.topic_prefix)
    if SAGA_MODE:
        await react_as_saga(record, event.key, event.value, taken, topic_kind)
        return
    if taken.type not in REACTS_TO:
        metrics.message(topic_kind, "ignored")
        return
    outcome = apply(event.key, taken, topic_kind).outcome
    if outcome.kind == "failed":  # it broke a process that does not exist: nowhere to park it
        await dead_letter(record, event.key, event.value, f"process failed: {outcome.reason}")


def apply(key: bytes, envelope: Envelope, topic_kind: str) -> Decision:
    decision = decide(
        key, processes.get(key), envelope, topic_kind, timeouts=TIMEOUTS, handle=DECIDE
    )
    record = decision.record
    if record is not None:
        processes[key] = record
        commands = decision.commands()
        if commands:  # never ahead of the record of the state that decided them
            send_after_changelog(
                processes, [(outputs[topic], key, value) for topic, value in commands]
            )
    decision.report(deadlines.push)
    return decision


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
    """Announce passed deadlines to the owning partition; the hot path re-checks and acts.

    A timer must not write the table, so it sends `ProcessTimedOut` to `processes.commands`,
    keyed by order id, which lands on the partition of the agent that owns the process.
    """
    if app.rebalancing or not app.tables.actives_ready:
        return
    changelog = processes.changelog_topic.get_topic_name()
    owned = frozenset(
        tp.partition
        for tp in app.assignor.assigned_actives()
        if tp.topic in INPUTS or tp.topic == changelog  # the loop's Faust reads no input
    )
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
class WorkerThreads(mode.Service):
    """The process loop (``HOT_PATH=loop``), the modules' command handlers and the outbox
    relay, in threads of this worker."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()

    async def on_start(self) -> None:
        components: dict[str, Component] = {}
        if LOOP_MODE:
            components["process_loop"] = process_loop
        if settings.worker_runs_modules:
            components.update(module_components(settings))
        else:
            log.info("module handlers not started here (WORKER_RUNS_MODULES=false)")
        if components:
            start(components, self._stop, settings.stall_exit_after_s)

    async def on_stop(self) -> None:
        self._stop.set()


register_routes(app, processes, settings)
