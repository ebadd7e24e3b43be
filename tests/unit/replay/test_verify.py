"""Judging an order: its fold against its live record, allowing another interleaving."""

from __future__ import annotations

from dataclasses import replace

from aggregates.messages import deterministic_id
from process_manager import Process, State
from streams.tools.history import Input, TableRecord, fold_order, merge
from streams.tools.verify import compare, judge, live_order
from tests.unit.process_manager.scenario import HAPPY, ORDER, TIMEOUTS
from tests.unit.replay.log import logged


def record(process: Process | None, partition: int = 3) -> TableRecord:
    return TableRecord(partition, None if process is None else process.model_dump_json().encode())


def timestamp_order(inputs: list[Input]) -> list[Input]:
    topics: list[list[Input]] = [[] for _ in range(5)]
    for item in inputs:
        topics[item.topic_index].append(item)
    return list(merge(topics))


def race() -> tuple[list[Input], Process]:
    """An operator cancels while the payment fails; the worker saw the cancel first.

    The failure's record timestamp is the earlier one, so the timestamp merge applies it first
    and folds another cancellation reason than the worker's.
    """
    triggers = ("CartFinalized", "OrderInitialized", "CancelProcess", "PaymentFailed")
    cart, order, cancel, failed, cancelled = logged(*triggers, "OrderCancelled")
    request = deterministic_id(order.envelope.message_id, "RequestPayment")
    failed = replace(
        failed,
        timestamp=cancel.timestamp - 500,
        envelope=failed.envelope.model_copy(update={"causation_id": request}),
    )
    seen = [cart, order, cancel, failed, cancelled]
    live = fold_order(seen, TIMEOUTS).process
    assert live is not None and live.cancellation_reason == "ManualCancellation"
    return timestamp_order(seen), live


def test_equal_processes_do_not_differ() -> None:
    process = fold_order(logged(*HAPPY), TIMEOUTS).process
    assert process is not None
    assert compare(process, process) == {}


def test_compare_names_the_state_reason_payment_and_applied_ids_that_differ() -> None:
    process = fold_order(logged(*HAPPY), TIMEOUTS).process
    assert process is not None
    other = process.model_copy(
        update={
            "state": State.Cancelled,
            "cancellation_reason": "TimedOut",
            "payment_id": "p-9",
            "applied": (*process.applied[:-1], "ghost"),
        }
    )
    found = compare(process, other)
    assert set(found) == {"state", "cancellation_reason", "payment_id", "applied"}
    assert found["state"] == {"folded": "Completed", "live": "Cancelled"}
    assert found["applied"]["only_live"] == ["ghost"]


def test_the_order_of_applied_ids_and_the_history_are_not_compared() -> None:
    process = fold_order(logged(*HAPPY), TIMEOUTS).process
    assert process is not None
    other = process.model_copy(update={"applied": process.applied[::-1], "history": ()})
    assert compare(process, other) == {}


def test_an_order_folded_as_the_worker_saw_it_matches() -> None:
    inputs = logged(*HAPPY)
    folded = fold_order(inputs, TIMEOUTS)
    verdict = judge(ORDER, inputs, folded, record(folded.process), 3, TIMEOUTS)
    assert verdict.difference is None and not verdict.reordered


def test_a_live_record_explained_by_another_interleaving_is_reordered_not_a_difference() -> None:
    inputs, live = race()
    folded = fold_order(inputs, TIMEOUTS)
    assert folded.process is not None and compare(folded.process, live)  # the merge guessed wrong
    verdict = judge(ORDER, inputs, folded, record(live), 3, TIMEOUTS)
    assert verdict.difference is None and verdict.reordered


def test_the_live_order_is_the_order_the_worker_took_the_messages_in() -> None:
    inputs, live = race()
    found = live_order(inputs, live.applied)
    assert found is not None
    types = [item.envelope.type for item in found]
    assert types.index("PaymentFailed") > types.index("CancelProcess")


def test_a_live_order_that_reads_a_topic_backwards_is_refused() -> None:
    inputs = logged(*HAPPY)
    ids = [item.envelope.message_id for item in inputs]
    same_topic = [i for i, item in enumerate(inputs) if item.topic_index == inputs[1].topic_index]
    assert len(same_topic) >= 2  # e.g. OrderInitialized and OrderPaymentRecorded
    swapped = list(ids)
    a, b = same_topic[0], same_topic[1]
    swapped[a], swapped[b] = swapped[b], swapped[a]
    assert live_order(inputs, ids) is not None
    assert live_order(inputs, swapped) is None


def test_a_live_record_that_never_took_in_a_logged_message_is_a_mismatch() -> None:
    inputs, live = race()
    folded = fold_order(inputs, TIMEOUTS)
    forgetful = live.model_copy(update={"applied": live.applied[:-1]})
    verdict = judge(ORDER, inputs, folded, record(forgetful), 3, TIMEOUTS)
    assert verdict.difference is not None and verdict.difference.kind == "mismatch"


def test_a_tampered_live_state_is_a_mismatch() -> None:
    inputs = logged("CartFinalized", "OrderInitialized", "PaymentFailed", "OrderCancelled")
    folded = fold_order(inputs, TIMEOUTS)
    assert folded.process is not None
    bogus = folded.process.model_copy(update={"state": State.Completed})
    verdict = judge(ORDER, inputs, folded, record(bogus), 3, TIMEOUTS)
    assert verdict.difference is not None
    assert verdict.difference.kind == "mismatch"
    assert set(verdict.difference.fields) == {"state"}


def test_a_live_record_that_applied_an_unlogged_message_is_a_mismatch() -> None:
    inputs = logged(*HAPPY)
    folded = fold_order(inputs, TIMEOUTS)
    assert folded.process is not None
    bogus = folded.process.model_copy(update={"applied": (*folded.process.applied, "ghost")})
    assert live_order(inputs, bogus.applied) is None
    verdict = judge(ORDER, inputs, folded, record(bogus), 3, TIMEOUTS)
    assert verdict.difference is not None and verdict.difference.kind == "mismatch"


def test_missing_unreadable_and_misplaced_records_are_differences() -> None:
    inputs = logged(*HAPPY)
    folded = fold_order(inputs, TIMEOUTS)

    def kind(live: TableRecord | None, partition: int = 3) -> str | None:
        difference = judge(ORDER, inputs, folded, live, partition, TIMEOUTS).difference
        return None if difference is None else difference.kind

    assert kind(None) == "missing_live"
    assert kind(TableRecord(3, None)) == "missing_live"  # deleted
    assert kind(TableRecord(3, b"{not json")) == "unreadable_live"
    assert kind(record(folded.process, partition=5)) == "wrong_partition"
    no_cart = fold_order(inputs[1:], TIMEOUTS)
    assert judge(ORDER, inputs[1:], no_cart, record(folded.process), 3, TIMEOUTS).difference
