"""The Faust application factory: one place that maps Settings onto Faust's settings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
from faust.tables import base as faust_tables
from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.utils.functional import consecutive_numbers

from streams.faults import (
    CHANGELOG_EVENT_DELAY,
    CHANGELOG_PUBLISH_DELAY,
    delay_point,
)
from streams.kafka.membership import use_rejoin_on_rebalance
from streams.kafka.recovery import use_lossless_recovery_end, use_marker_safe_restore
from streams.observability.logs import get_logger
from streams.settings import Settings

log = get_logger(__name__)
MiB = 1024 * 1024

# Faust's RocksDB defaults are sized for a big server (2 GiB block cache, 3 x 64 MiB write
# buffers, per partition). With 8 partitions per table on a 2-core, 24 GiB box, bound them.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * MiB,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * MiB,
    "block_cache_size": 16 * MiB,
    "block_cache_compressed_size": 0,
    "max_open_files": 256,
}


# Faust asks aiokafka for fetch_max_wait_ms=1500. aiokafka keeps one fetch in flight per broker
# and leaves out of it the partitions whose records are still buffered; once they are consumed,
# their next records wait for that fetch, which the broker holds until another partition has
# data or this time passes. With 40 input partitions on one broker that wait paced the process
# manager: 38 orders/s with the CPU half idle, 60 with 100 ms (bench, 1 worker, same machine).
FETCH_MAX_WAIT_MS = 100


def _read_committed(create: Any) -> Any:
    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        # aiokafka builds its fetcher from these attributes in start(), after construction.
        consumer._isolation_level = "read_committed"
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    create_worker_consumer.read_committed = True  # type: ignore[attr-defined]
    return create_worker_consumer


def use_read_committed() -> None:
    """Make Faust workers read only committed records (and fetch with FETCH_MAX_WAIT_MS).

    The command handlers append events in Kafka transactions; an aborted transaction's events
    must never reach the process manager. Faust reads read_committed only in its own
    exactly_once mode, which we do not use (faust-streaming #177, #323), so its worker
    consumer is wrapped here.
    """
    thread = faust_aiokafka.AIOKafkaConsumerThread
    if not getattr(thread._create_worker_consumer, "read_committed", False):
        thread._create_worker_consumer = _read_committed(  # type: ignore[method-assign]
            thread._create_worker_consumer
        )


_faust_getmany = faust_aiokafka.AIOKafkaConsumerThread.getmany


async def getmany(thread: Any, active_partitions: Any, timeout: float) -> Any:
    """Faust's fetch of the records of ``active_partitions``, given a copy of that set.

    Faust passes its consumer's own set of active partitions, which it changes in place as it
    pauses and resumes partitions, and aiokafka reads it only once records arrive, returning
    the records of every partition when it is empty. A fetch that waited across the end of an
    active restore (which pauses every restored partition) thus returned, and consumed, the
    records of the standby partitions just sought to their beginning; Faust dropped them,
    since they were not active, and the standby went on from the next fetch. Measured with
    ``tests/integration/test_standby_promotion.py`` beside two or three busy-looping processes:
    6 of 15 runs failed before (the promoted worker's store held 6-9 of ~60 processes per
    former standby partition, the first record it took in followed that partition's highwater
    at the standby start, and it restored nothing once promoted), 0 of 18 after.
    faust-streaming #212 reports the same symptom for global tables.
    """
    snapshot = None if active_partitions is None else set(active_partitions)
    return await _faust_getmany(thread, snapshot, timeout)


def use_snapshot_fetches() -> None:
    """Make each Faust fetch ask for the partitions active when it began (``getmany``)."""
    faust_aiokafka.AIOKafkaConsumerThread.getmany = getmany  # type: ignore[method-assign,assignment]


_faust_add_gap = faust_consumer.Consumer._add_gap


async def add_gap(consumer: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """Record the offsets a Faust consumer never received (transaction markers, aborted
    records) between the last record read and the next one, ``offset_to``.

    Faust records ``offset_to`` in the gap too, though it is a record to be processed (and
    acked) like any other: a gap could then commit it before it was processed, and its
    duplicate in the acked offsets ends every run of consecutive offsets (see
    ``committable_offset``).
    """
    await _faust_add_gap(consumer, tp, offset_from, offset_to - 1)


def committable_offset(consumer: Any, tp: Any) -> int | None:
    """The offset a Faust consumer may commit for ``tp``: past the first run of acked offsets,
    counting the offsets it never received (gaps) as acked; ``None`` when there is none.

    Faust's own ``Consumer._new_offset`` merged the gaps into the acked offsets with
    duplicates, and a duplicate ends a run, so each commit advanced past one gap only
    (robinhood/faust#625). On a topic written in transactions a marker follows every few
    records, so the group's committed offsets fell thousands of records behind, and a
    restarted worker consumed them all again.
    """
    acked = consumer._acked[tp]
    if not acked:
        return None
    top = max(acked)
    gap = consumer._gap[tp]
    offsets = set(acked)
    if gap:
        for interval in gap.overlap(0, top + 1):
            offsets.update(range(interval.begin, min(interval.end, top + 1)))
        gap.chop(0, top + 1)
    ordered = sorted(offsets)
    committed = consumer._committed_offset[tp]
    # After a seek Faust's read offset is the committed offset itself, so an offset never
    # received right there is not recorded as a gap: allow that one, as Faust does.
    if committed and ordered[0] - committed > 1:
        acked[:] = ordered
        return None
    batch = next(consecutive_numbers(ordered))
    acked[:] = ordered[len(batch) :]
    consumer._acked_index[tp].difference_update(batch)
    return int(batch[-1]) + 1


def use_gap_safe_commits() -> None:
    """Make Faust consumers commit past transaction markers at once (``add_gap``,
    ``committable_offset``)."""
    faust_consumer.Consumer._add_gap = add_gap  # type: ignore[method-assign,assignment]
    faust_consumer.Consumer._new_offset = committable_offset  # type: ignore[method-assign,assignment]


_faust_send_pending = faust_producer.ProducerBuffer._send_pending


async def send_pending(buffer: Any, fut: Any) -> None:
    """Hand one buffered message (a table's changelog record) to the producer, counting it as
    in flight meanwhile (it has left the buffer's queue but is not in the producer yet), and
    as handed once done (``flush``)."""
    buffer.in_flight = getattr(buffer, "in_flight", 0) + 1
    try:
        if fut.message.channel.get_topic_name().endswith("-changelog"):
            await delay_point(CHANGELOG_PUBLISH_DELAY)
        await _faust_send_pending(buffer, fut)
    finally:
        buffer.in_flight -= 1
        buffer.handed = getattr(buffer, "handed", 0) + 1


async def flush(buffer: Any) -> None:
    """Wait until every send deferred so far (``send_after_changelog``) is in the producer, and
    every message in the buffer now was handed to it.

    Faust commits a consumer's offsets after ``app.producer.flush()``, which drains this
    buffer (table changelog records) and then the producer. Faust's own buffer flush returns
    after the first 0.1 s without a send, with records still queued: offsets were committed
    before the changelog records of the inputs they cover, and a worker killed then lost
    those records for good (chaos; tests/integration/test_durable_commits.py). Waiting for an
    empty buffer instead held commits for as long as inputs kept coming (51 s in the bench's
    drain): the buffer is first in, first out, so the messages in it now are enough.
    """
    await asyncio.gather(*_deferred(buffer))
    target = getattr(buffer, "handed", 0) + buffer.size + getattr(buffer, "in_flight", 0)
    while getattr(buffer, "handed", 0) < target:
        if buffer.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        buffer.message_sent.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=1.0)


def use_full_flush() -> None:
    """Make Faust commit an input's offset only after its table writes are in the producer
    (``flush``), which the producer's own flush then waits to see acknowledged."""
    buffer = faust_producer.ProducerBuffer
    buffer._send_pending = send_pending  # type: ignore[method-assign,assignment]
    buffer.flush = flush  # type: ignore[method-assign,assignment]


_faust_send_changelog = faust_tables.Collection.send_changelog

EXIT_UNRECORDED = 75  # EX_TEMPFAIL: Kafka refused a table's changelog record


def send_changelog(table: Any, *args: Any, **kwargs: Any) -> Any:
    """Faust's changelog send, keeping the record's future on the table (``send_after_changelog``),
    and ending the worker if Kafka refuses the record.

    Faust only logs a refused changelog record, and then commits the offsets of the inputs
    that wrote it: their effect lived on in this worker's RocksDB alone, and the partition's
    next owner never saw it. Exiting first leaves those inputs uncommitted, so that the next
    owner takes them in again.
    """
    future = _faust_send_changelog(table, *args, **kwargs)
    future.add_done_callback(_exit_if_refused)
    table.last_changelog_record = future
    return future


def _exit_if_refused(future: Any) -> None:
    if future.cancelled() or future.exception() is None:
        return
    error = future.exception()
    topic = future.message.channel.get_topic_name()
    _exit(f"changelog record refused by Kafka ({topic}): {type(error).__name__}: {error}")


def _exit(reason: str) -> None:
    log.critical(
        "exiting before any further commit, so that the inputs are taken in again",
        reason=reason,
        exit_code=EXIT_UNRECORDED,
    )
    sys.stderr.flush()
    os._exit(EXIT_UNRECORDED)


def send_after_changelog(table: Any, sends: Sequence[tuple[Any, bytes, bytes]]) -> None:
    """Send ``sends`` (topic, key, value) once Kafka has acknowledged the table's last changelog
    record, without holding the agent up; a commit waits until they are in the producer
    (``flush``).

    Faust sends a table's changelog records from a buffer, after whatever the agent sends
    itself: a worker killed in between had sent the commands of a state its changelog never
    got, and the partition's next owner restored the process a state behind its own commands.
    """
    record = table.last_changelog_record
    deferred = _deferred(table.app.producer.buffer)
    handed = asyncio.get_running_loop().create_future()
    deferred.add(handed)

    def done(_: Any) -> None:
        deferred.discard(handed)
        handed.set_result(None)

    def send(_: Any) -> None:
        if record.cancelled() or record.exception() is not None:  # the worker exits
            done(None)
            return
        asyncio.ensure_future(_send_all(sends)).add_done_callback(done)

    record.add_done_callback(send)


async def _send_all(sends: Sequence[tuple[Any, bytes, bytes]]) -> None:
    try:
        for topic, key, value in sends:
            await topic.send(key=key, value=value)
    except Exception as error:  # not in the producer: the input must be taken in again
        _exit(f"a send after a changelog record failed: {type(error).__name__}: {error}")


def _deferred(buffer: Any) -> set[asyncio.Future[None]]:
    """The sends of ``send_after_changelog`` not yet in the producer."""
    if not hasattr(buffer, "deferred"):
        buffer.deferred = set()
    deferred: set[asyncio.Future[None]] = buffer.deferred
    return deferred


def use_tracked_changelog_writes() -> None:
    """Make each table keep its last changelog record's future (``send_after_changelog``) and
    end the worker on a refused record (``send_changelog``)."""
    faust_tables.Collection.send_changelog = send_changelog  # type: ignore[method-assign,assignment]


_faust_on_changelog_event = faust_tables.Collection.on_changelog_event


async def on_changelog_event(table: Any, event: Any) -> None:
    """Faust's hook for each changelog record a recovery takes in, which a test can make slow
    (``CHANGELOG_EVENT_DELAY``), as a busy event loop does."""
    await delay_point(CHANGELOG_EVENT_DELAY)
    await _faust_on_changelog_event(table, event)


def create_app(settings: Settings, app_id: str | None = None, **overrides: Any) -> faust.App:
    """A Faust app wired to the configured Kafka, RocksDB store and web bind address.

    Keys are raw bytes everywhere (the order id as UTF-8), in topics and in table changelogs
    alike, so that table_route hashes keys the way the changelog partitions them (#514).
    """
    options: dict[str, Any] = {
        "version": settings.app_version,
        "broker": f"kafka://{settings.kafka_bootstrap_servers}",
        "broker_credentials": settings.faust_credentials(),
        "store": "rocksdb://",
        "rocksdb_options": ROCKSDB_OPTIONS,
        "datadir": str(Path(settings.data_dir) / "faust"),
        "topic_partitions": settings.topic_partitions,
        # streams/worker.py sets it from the cluster's size when it is not configured.
        "topic_replication_factor": settings.topic_replication_factor or 1,
        "topic_allow_declare": True,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "web_bind": settings.web_bind,
        "web_port": settings.web_port,
        # `faust worker --web-port` (or --web-host) rebuilds canonical_url from web_host and
        # web_port, and Faust's web_host defaults to the machine's name, which every network
        # namespace shares and which resolves to loopback: workers on hosts of their own all
        # announced that name to the assignor, so table_route and the fan-out found no peer.
        "web_host": settings.web_host_name(),
        "canonical_url": settings.canonical_url(),
        "web_enabled": True,
        # Faust's own /table/ and /router/ views dump raw records (client ids, amounts) to
        # anyone who can reach the port; the process views (streams/process/web.py) replace them.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "stream_wait_empty": False,
        # A killed worker's partitions move after 10 s rather than Faust's default 60 s, and a
        # restarted worker rejoins under its static identity without a full rebalance.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 3.0,
        "consumer_group_instance_id": settings.faust_member_id(app_id or settings.app_id),
        # A worker that joins before its broker knows the partitions of freshly created topics
        # (right after a broker start) is assigned nothing, and only a metadata refresh that
        # finds them rebalances: aiokafka's default age of 5 min left one idle that long.
        "consumer_metadata_max_age_ms": 15_000,
    }
    options.update(overrides)
    use_read_committed()
    use_snapshot_fetches()
    use_gap_safe_commits()
    use_full_flush()
    use_tracked_changelog_writes()
    use_lossless_recovery_end()
    use_marker_safe_restore()
    use_rejoin_on_rebalance()
    faust_tables.Collection.on_changelog_event = on_changelog_event  # type: ignore[method-assign,assignment]
    return faust.App(app_id or settings.app_id, **options)
