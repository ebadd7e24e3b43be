"""Standby table partitions keep every changelog record they fetched across a recovery's end.

faust-streaming 0.15.3 reads changelog records, for active and standby table partitions alike,
through one queue (``TableManager.changelog_queue``) that flow control clears whenever it
resumes (``clear_on_resume``). A recovery resumes the standby partitions, and only then, in
``Recovery.on_recovery_completed``, seeks the streams to their committed offsets and resumes
flow control, which clears that queue: every standby record fetched in between is gone, while
the consumer's position has moved past it. The standby takes the next record it gets as the
next one, writes it and its offset to RocksDB, and so claims every record below it. Once that
worker is promoted, its recovery starts from that offset and the dropped records never come.

Found by the cluster chaos run (seed 101): the promoted worker's RocksDB partition 6 lacked
every key of changelog offsets 289-746, the backlog its standby had fetched while the stream
seek waited on a node that had just come back; those orders answered 404 and their later
events found no process.

The changelog queue is kept out of that one resume. Nothing stale can be in it then: the
revocation that began the rebalance cleared it, and every record put in it since was fetched
after this recovery's own seeks.
"""

from __future__ import annotations

from typing import Any

from faust.tables import recovery as faust_recovery

_faust_on_recovery_completed = faust_recovery.Recovery.on_recovery_completed


async def on_recovery_completed(recovery: Any, generation_id: int = 0) -> None:
    """Faust's end of recovery, with the changelog queue left out of flow control's clear."""
    queue = recovery.tables.changelog_queue
    managed = recovery.app.flow_control._queues
    managed.discard(queue)
    try:
        await _faust_on_recovery_completed(recovery, generation_id)
    finally:
        managed.add(queue)


def use_lossless_standbys() -> None:
    """Keep the standby records that a recovery's final resume would drop
    (``on_recovery_completed``)."""
    faust_recovery.Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign,assignment]
