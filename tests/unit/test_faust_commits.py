"""The offsets a Faust worker commits on a topic with transaction markers, and what a refused
changelog record does (streams/kafka/app.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from intervaltree import IntervalTree

from streams.kafka import app
from streams.kafka.app import add_gap, committable_offset

TP = "orders.events-0"


def consumer_reading(records: list[int], acked: list[int], committed: int) -> Any:
    """A Faust consumer's bookkeeping after it received ``records`` (in order) from
    ``committed`` on and its stream acked ``acked``; gaps recorded as Faust's fetch loop calls
    ``_add_gap``: from the offset after the last record read to the next record's offset."""
    consumer = SimpleNamespace(
        _acked=defaultdict(list, {TP: list(acked)}),
        _acked_index=defaultdict(set, {TP: set(acked)}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {TP: committed}),
    )
    read = committed  # after a seek Faust's read offset is the committed offset
    for offset in records:
        if offset - read > 1:
            asyncio.run(add_gap(consumer, TP, read + 1, offset))
        read = offset
    return consumer


def test_a_commit_passes_every_marker_up_to_the_highest_acked_offset() -> None:
    # Given records 141-142, 144-145 and 147 received and acked, markers at 143 and 146
    records = [141, 142, 144, 145, 147]
    consumer = consumer_reading(records, acked=records, committed=141)

    # When the offset to commit is asked for
    offset = committable_offset(consumer, TP)

    # Then it is past the last acked record, in one commit
    assert offset == 148
    assert consumer._acked[TP] == []


def test_a_record_received_but_not_acked_holds_the_commit_before_it() -> None:
    # Given records 141, 143, 145 and 146 received (markers at 142 and 144), and 145 not acked
    consumer = consumer_reading([141, 143, 145, 146], acked=[141, 143, 146], committed=141)

    # When the offset to commit is asked for
    offset = committable_offset(consumer, TP)

    # Then the commit stops before 145, which may not be processed yet
    assert offset == 145
    assert consumer._acked[TP] == [146]


def test_a_marker_before_a_record_not_acked_yet_is_committed_with_that_record() -> None:
    # Given record 141 acked, then a marker at 142 and record 143, not acked yet
    consumer = consumer_reading([141, 143], acked=[141], committed=141)

    # When the offset to commit is asked for
    # Then 142 and 143 are not committed yet
    assert committable_offset(consumer, TP) == 142

    # When 143 is acked
    consumer._acked[TP].append(143)
    consumer._acked_index[TP].add(143)

    # Then the commit passes the marker and 143
    assert committable_offset(consumer, TP) == 144


def test_nothing_is_committed_while_offsets_after_the_committed_one_are_unaccounted_for() -> None:
    # Given a committed offset of 100 and only 103 acked, with nothing known of 101 and 102
    consumer = SimpleNamespace(
        _acked=defaultdict(list, {TP: [103]}),
        _acked_index=defaultdict(set, {TP: {103}}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {TP: 100}),
    )

    # Then nothing can be committed yet
    assert committable_offset(consumer, TP) is None


def changelog_record(error: Exception | None) -> Any:
    """A changelog record's future, as Faust's producer completes it: acknowledged or refused."""

    async def completed() -> Any:
        future: Any = asyncio.get_running_loop().create_future()
        future.message = SimpleNamespace(channel=SimpleNamespace(get_topic_name=lambda: "t"))
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        return future

    return asyncio.run(completed())


def test_a_refused_changelog_record_ends_the_worker_before_any_commit(monkeypatch: Any) -> None:
    # Given a worker whose process exit is recorded instead of taken
    exits: list[int] = []
    monkeypatch.setattr("streams.kafka.app.os._exit", exits.append)

    # When Kafka acknowledges one changelog record and refuses another
    app._exit_if_refused(changelog_record(None))
    app._exit_if_refused(changelog_record(KafkaTimeoutError()))

    # Then the worker exits once, with the code that says so
    assert exits == [app.EXIT_UNRECORDED]
