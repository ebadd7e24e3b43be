"""The offline fold: topics merged by timestamp, orders folded through the pure core."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta

from process_manager import DEFAULT_TIMEOUTS, State
from streams.kafka import groups
from streams.kafka.app import create_app
from streams.process.fold import trace
from streams.settings import Settings
from streams.tools.history import Input, by_order, fold_order, merge
from streams.tools.progress import Progress
from tests.unit.process_manager.scenario import DISCARDING, HAPPY, TIMEOUTS, given
from tests.unit.replay.log import logged


def per_topic(inputs: list[Input]) -> list[list[Input]]:
    topics: list[list[Input]] = [[] for _ in range(5)]
    for item in inputs:
        topics[item.topic_index].append(item)
    return topics


def ids(inputs: list[Input]) -> list[str]:
    return [item.envelope.message_id for item in inputs]


def test_merge_interleaves_the_topics_by_record_timestamp() -> None:
    inputs = logged(*HAPPY)
    assert ids(list(merge(per_topic(inputs)))) == ids(inputs)


def test_merge_keeps_each_topics_own_order_even_when_its_timestamps_go_back() -> None:
    first, second = logged("CartFinalized", "OrderInitialized")[1], logged(*HAPPY)[3]
    late = replace(second, timestamp=first.timestamp - 10_000)  # same topic, later offset
    merged = list(merge([[], [first, late], [], [], []]))
    assert merged == [first, late]


def test_merge_breaks_timestamp_ties_by_topic_order() -> None:
    cart, order = logged("CartFinalized", "OrderInitialized")
    tied = replace(order, timestamp=cart.timestamp)
    # carts.events comes before orders.events in PROCESS_INPUTS, whatever list holds which
    assert list(merge([[tied], [cart]])) == [cart, tied]


def test_by_order_groups_the_inputs_of_each_order_in_their_order() -> None:
    a = logged(*HAPPY[:2], order_id="a")
    b = logged(*HAPPY[:3], order_id="b")
    mixed = [a[0], b[0], b[1], a[1], b[2]]
    assert by_order(mixed) == {"a": a, "b": b}


def test_the_fold_reaches_the_process_the_worker_reached() -> None:
    folded = fold_order(logged(*HAPPY), TIMEOUTS)
    expected = given(*HAPPY)
    assert folded.process is not None
    assert folded.process.state == State.Completed
    assert folded.process.applied == tuple(f"cart-42-{n}" for n in range(len(HAPPY)))
    assert folded.process.history[-1].to_state == expected.history[-1].to_state


def test_a_message_that_arrives_twice_is_folded_once() -> None:
    inputs = logged(*HAPPY)
    once = fold_order(inputs, TIMEOUTS)
    twice = fold_order([*inputs[:3], inputs[2], *inputs[3:], inputs[0]], TIMEOUTS)
    assert twice == once


def test_an_order_without_a_finalized_cart_folds_to_no_process() -> None:
    inputs = logged(*HAPPY)[1:]
    assert fold_order(inputs, TIMEOUTS).process is None


def test_the_fold_uses_the_timeouts_it_is_given() -> None:
    inputs = logged("CartFinalized")
    short = {**DEFAULT_TIMEOUTS, State.AwaitingOrder: timedelta(seconds=4)}
    process = fold_order(inputs, short).process
    assert process is not None and process.deadline is not None
    assert process.deadline == inputs[0].envelope.occurred_at + timedelta(seconds=4)


def test_the_workers_timeouts_are_the_configured_ones_over_the_defaults() -> None:
    settings = Settings(process_timeouts={"AwaitingPayment": 30})
    timeouts = settings.timeouts()
    assert timeouts[State.AwaitingPayment] == timedelta(seconds=30)
    assert timeouts[State.AwaitingOrder] == DEFAULT_TIMEOUTS[State.AwaitingOrder]
    every = Settings(process_timeouts={}, process_timeout_all_s=4).timeouts()
    assert set(every.values()) == {timedelta(seconds=4)}


def test_the_names_are_those_faust_gives_the_group_and_the_changelog() -> None:
    for version in (1, 2, 7):
        settings = Settings(app_id="orderflow", app_version=version)
        app = create_app(settings)
        table = app.Table("processes", key_type=bytes, value_type=bytes, partitions=8)
        assert groups.process_manager(settings, version) == app.conf.id  # the consumer group id
        assert settings.process_changelog_topic(version) == table.changelog_topic.get_topic_name()
    assert Settings(app_id="shop").process_changelog_topic(2) == "shop-v2-processes-changelog"
    assert Settings(app_id="shop").faust_app_id(1) == "shop"


def test_the_progress_bar_shows_the_share_done_the_count_and_the_rate() -> None:
    # Given a bar on a stream that is no terminal (a log, a pipe)
    stream = io.StringIO()
    bar = Progress("verify", 100, stream)
    # When half is done, then all of it, and it finishes
    bar.advance(50)
    bar.advance(50)
    elapsed = bar.finish()
    # Then it is drawn once, with the label, the share, the count and the rate
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert line.startswith("verify ")
    assert "100%" in line and "100/100 events" in line and "events/s" in line
    assert elapsed >= 0 and bar.done == 100


def test_the_progress_bar_grows_its_total_to_what_was_done() -> None:
    stream = io.StringIO()
    bar = Progress("replay", 10, stream, unit="terminal", rate_unit="orders")
    bar.update(12)
    bar.finish()
    assert "12/12 terminal" in stream.getvalue() and "orders/s" in stream.getvalue()


def test_fold_order_ends_with_the_process_the_trace_ends_with() -> None:
    for triggers in (HAPPY, DISCARDING, (*HAPPY[:2], "ProcessTimedOut", *HAPPY[2:])):
        inputs = logged(*triggers)
        steps = list(trace(inputs, TIMEOUTS))
        assert fold_order(inputs, TIMEOUTS).process == steps[-1].process is not None
