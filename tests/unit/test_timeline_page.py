"""The timeline of one order, as the CLI and the process page show it (no Kafka: the fold and
the rendering of inputs a test logs)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from process_manager import State
from streams.process.fold import trace
from streams.process.timeline import Position, Timeline, entry_of, parse_time
from streams.process.ui.pages import process_page
from tests.unit.process_manager.scenario import TIMEOUTS, given
from tests.unit.replay.log import logged

DECLINED = ("CartFinalized", "OrderInitialized", "PaymentFailed", "OrderCancelled")


def declined_timeline() -> Timeline:
    inputs = logged(*DECLINED)
    late = replace(logged(*DECLINED, "PaymentFailed")[-1], offset=9)  # a late copy, new id
    steps = list(trace([*inputs, late], TIMEOUTS))
    return Timeline("cart-42", 3, "the end", [entry_of(s, 3) for s in steps], steps[-1].after)


def test_every_input_is_an_entry_with_its_outcome() -> None:
    entries = declined_timeline().entries
    assert [e.describe() for e in entries] == [
        "applied: (start) -> AwaitingOrder",
        "applied: AwaitingOrder -> AwaitingPayment",
        "applied: AwaitingPayment -> CancellingOrder",
        "applied: CancellingOrder -> Cancelled",
        "ignored: no transition for PaymentFailed in Cancelled",
    ]
    assert [c for c, _ in entries[2].commands] == ["CancelOrder"]
    assert entries[2].position == "payments.events:3:0"


def test_the_process_page_shows_the_timeline_with_ignored_messages_and_the_at_control() -> None:
    process = given(*DECLINED)
    page = process_page(process, False, True, declined_timeline(), {"at": "2026-11-26T01:00:02Z"})
    table = page.split('id="timeline"')[1]
    assert "no transition for PaymentFailed in Cancelled" in table
    assert 'value="2026-11-26T01:00:02Z"' in page and 'id="at"' in page
    assert "state <b>Cancelled</b>" in page


def test_the_process_page_falls_back_to_the_history_when_the_topics_cannot_be_read() -> None:
    process = given(*DECLINED)
    page = process_page(process, False, True, "the topics could not be read: timed out")
    assert "the topics could not be read: timed out; the record's history instead" in page
    assert page.count("<tr>") - 1 >= len(process.history)
    assert State.Cancelled.value in page.split('id="timeline"')[1]


def test_a_position_names_an_input_topic_with_or_without_its_prefix() -> None:
    assert Position.parse("t-1.orders.events:3:42") == Position("orders.events", 3, 42)
    assert Position.parse("processes.commands:0:7") == Position("processes.commands", 0, 7)
    for bad in ("orders.events:3", "orders.commands:3:1", "orders.events:x:1"):
        with pytest.raises(ValueError):
            Position.parse(bad)


def test_a_time_without_a_zone_is_utc() -> None:
    assert parse_time("2026-12-03T08:00:00") == datetime(2026, 12, 3, 8, tzinfo=UTC)
    assert parse_time("2026-12-03T08:00:00Z") == datetime(2026, 12, 3, 8, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_time("yesterday")
