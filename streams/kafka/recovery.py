"""The end of a table recovery, reordered so that it drops no fetched record, and found on a
changelog written in transactions too (``active_remaining``; faust-streaming 0.15.3).

``Recovery.on_recovery_completed`` resumed the stream partitions, then sought them to their
committed offsets (one request per partition, slow against a node that has just come back),
then resumed flow control, which clears every queue registered to be cleared on resume.

- **Standby table records were lost (proven).** Active and standby changelog records share one
  queue (``TableManager.changelog_queue``), which that clear emptied after the standby
  partitions had been resumed. The standby took the next record as the next one and stored its
  offset: once promoted, the worker restored from there. Cluster chaos seed 101: 260 orders of
  partition 6 answered 404; the promoted worker's RocksDB lacked every key of changelog offsets
  289-746 and its write-ahead log began with the records at 747-754.
  ``tests/integration/test_standby_promotion.py`` fails without this module (64 of 480
  processes never served) and passes with it.
- **Inputs fetched before their partition's seek** could be dropped by the same clear, and were
  where no offset was committed yet, since nothing sought such a partition (``seek_streams``).
  Here the stream partitions are sought first and resumed only after the clear, so nothing is
  fetched for them before. Cluster chaos seed 303, before this order, committed ``carts.events``
  partition 0 from 226 to 1066 while its new owner's seek ran, and 1,013 carts on partitions
  0-3 never made a process; how those records were skipped is not established, and no test
  here reproduces it.

The changelog queue is left out of the clear: nothing stale is in it then, since the
revocation that began the rebalance cleared it and every record put in it since was fetched
after this recovery's own seeks. The rest is Faust's method as it is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faust.tables import recovery as faust_recovery
from faust.transport.drivers.aiokafka import ensure_aiokafka_TP


async def on_recovery_completed(recovery: Any, generation_id: int = 0) -> None:
    """Faust's end of recovery: seek the streams, resume flow control (keeping the changelog
    queue), and only then resume the stream partitions."""
    app, consumer = recovery.app, recovery.app.consumer
    recovery.log.info("Restore complete!")
    await app.on_rebalance_complete.send()
    recovery._set_recovery_ended()
    callbacks = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                recovery.actives_for_table[table], recovery.standbys_for_table[table]
            )
        )
        for table in recovery.tables.values()
    ]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if app.consumer_generation_id != generation_id:
        recovery.log.warning(
            f"Recovery rebalancing again app id {app.consumer_generation_id} param {generation_id}"
        )
        return
    if assignment:
        recovery.log.info("Seek stream partitions to committed offsets.")
        streams = {tp for tp in assignment if not recovery._is_changelog_tp(tp)}
        await recovery._wait(
            seek_streams(consumer, streams), timeout=app.conf.broker_request_timeout
        )
    resume_keeping(app.flow_control, recovery.tables.changelog_queue)
    consumer.resume_partitions({tp for tp in assignment if not recovery._is_changelog_tp(tp)})
    recovery.completed.set()
    consumer.resume_flow()
    await app._fetcher.maybe_start()
    recovery.tables.on_actives_ready()
    if not app.assignor.assigned_standbys():
        recovery.tables.on_standbys_ready()
    app.on_rebalance_end()
    recovery.log.info("Worker ready")


async def seek_streams(consumer: Any, streams: set[Any]) -> None:
    """Faust's seek of the stream partitions to their committed offsets, and of those with none
    to their beginning (``auto_offset_reset=earliest``).

    aiokafka seeks only partitions with a committed offset, and leaves the others where its
    fetcher got to. It fetches as soon as a partition is assigned, before the recovery pauses
    it, and those records never reach the stream: Faust drops them with the queues of the old
    assignment. So a partition nobody had committed yet began at its second fetch. Measured
    (``tests/integration/test_kill_mid_drain.py``): a worker killed before its first commit,
    with 2,500 carts per partition waiting; its successor began every partition at offset
    2,369 (1 MiB of ~430-byte records, aiokafka's fetch size per partition), committed them
    to their ends, and offsets 0-2,368 were never taken in.
    """
    await consumer.perform_seek()
    never = [tp for tp in streams if consumer._committed_offset.get(tp) is None]
    if never:
        await consumer._thread.seek_to_beginning(*map(ensure_aiokafka_TP, never))
        for tp in never:
            consumer._read_offset[tp] = None


def resume_keeping(flow_control: Any, queue: Any) -> None:
    """Resume flow control, which clears its queues, all but ``queue``."""
    managed = flow_control._queues
    managed.discard(queue)
    try:
        flow_control.resume()
    finally:
        managed.add(queue)


def use_lossless_recovery_end() -> None:
    """Replace Faust's ``Recovery.on_recovery_completed`` with ``on_recovery_completed``."""
    faust_recovery.Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign,assignment]


_faust_active_remaining = faust_recovery.Recovery.active_remaining

# The records the consumer has fetched can still be on their way to the recovery's queue; so a
# fetch position past the highwater counts only once no changelog record came for this long
# (the recovery checks again after every 5 s without one). Without it, a first version declared
# a restore done with 1 of 500 keys applied (bench/spike/README.md).
QUIET_S = 4.0


def active_remaining(recovery: Any) -> Any:
    """Faust's records left to restore per active changelog partition, where a partition whose
    consumer has fetched past the highwater, with no record for ``QUIET_S``, has none left.

    Faust restores until it has seen offset ``highwater - 1``. On a changelog written in
    Kafka transactions (``streams/process/loop.py``) that offset is a commit marker, which no
    consumer receives, so the restore waited for ever ("No event received for active tp").
    Faust's own fix (``detect_aborted_tx``) runs only in its exactly_once mode.
    """
    remaining = _faust_active_remaining(recovery)
    received = recovery._active_events_received_at.values()
    if time.monotonic() - max(received, default=0.0) < QUIET_S:
        return remaining
    for tp, left in list(remaining.items()):
        if left <= 0:
            continue
        position = _fetch_position(recovery.app, tp)
        if position is not None and position > recovery.active_highwaters[tp]:
            recovery.active_offsets[tp] = recovery.active_highwaters[tp]
            remaining[tp] = 0
    return remaining


def _fetch_position(app: Any, tp: Any) -> int | None:
    """The aiokafka consumer's fetch position of ``tp``, or None (a plain read of the state
    of Faust's consumer thread)."""
    subscription = app.consumer._thread._ensure_consumer()._subscription
    if not subscription.is_assigned(tp):
        return None
    state = subscription.subscription.assignment.state_value(tp)
    return int(state.position) if state is not None and state.has_valid_position else None


def use_marker_safe_restore() -> None:
    """Replace Faust's ``Recovery.active_remaining`` with ``active_remaining``."""
    faust_recovery.Recovery.active_remaining = active_remaining  # type: ignore[method-assign,assignment]
