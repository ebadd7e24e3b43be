"""The run checker's invariants, on hand-made event histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aggregates.messages import (
    CartFinalized,
    CartOpened,
    Envelope,
    Message,
    OrderCancelled,
    OrderCompleted,
    OrderInitialized,
    OrderPaymentRecorded,
    PackageWasSent,
    PaymentDiscarded,
    PaymentFailed,
    PaymentFinalized,
    PaymentRefunded,
    PaymentSettled,
    ProcessTimedOut,
    ProductItem,
    ProductWasOutOfStock,
    deterministic_id,
)
from process_manager import DEFAULT_TIMEOUTS, State
from process_manager.process import MAX_APPLIED_IDS
from streams.kafka.topics import PROCESS_INPUTS
from streams.tools.check import (
    LiveRecord,
    double_effects,
    live_record,
    order_violations,
    shipped_quantities,
    stock_violations,
    unapplied,
)
from streams.tools.history import Input, TableRecord, fold_order

T0 = datetime(2026, 11, 26, tzinfo=UTC)
ORDER = "order-1"
ITEMS = (ProductItem(product_id="sku-1", quantity=2, unit_price=Decimal("5.00")),)
PAY = deterministic_id("m1", "payment_id")  # the id the process gives the payment


def history(*messages: Message) -> list[Input]:
    """Inputs in the given order, one second apart, each caused by the one before."""
    inputs = []
    for n, message in enumerate(messages):
        envelope = Envelope.wrap(
            message,
            message_id=f"m{n}",
            occurred_at=T0 + timedelta(seconds=n),
            correlation_id=ORDER,
            causation_id=f"c{n}",
        )
        inputs.append(Input(n, 0, n, ORDER, envelope))
    return inputs


FINALIZED = CartFinalized(cart_id=ORDER, client_id="c", product_items=ITEMS, total_price=10)
INITIALIZED = OrderInitialized(order_id=ORDER, client_id="c", product_items=ITEMS, total_price=10)
PAID = PaymentFinalized(payment_id=PAY, order_id=ORDER, amount=10, finalized_at=T0, settles_at=T0)
RECORDED = OrderPaymentRecorded(order_id=ORDER, payment_id=PAY, product_items=ITEMS)
SENT = PackageWasSent(package_id="pk", order_id=ORDER, product_items=ITEMS)
COMPLETED = OrderCompleted(order_id=ORDER)
OUT_OF_STOCK_CANCEL = OrderCancelled(order_id=ORDER, reason="ProductWasOutOfStock")


def test_a_completed_order_paid_and_shipped_once_is_fine() -> None:
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, SENT, COMPLETED)
    assert order_violations(ORDER, inputs, DEFAULT_TIMEOUTS) == []


def test_an_order_stuck_half_way_is_reported_as_not_terminal() -> None:
    inputs = history(FINALIZED, INITIALIZED)
    assert order_violations(ORDER, inputs, DEFAULT_TIMEOUTS) == [
        "order-1: not terminal, in AwaitingPayment"
    ]


def _payment_held_up_by_a_broker_restart() -> tuple[list[Input], list[str]]:
    """PaymentFinalized stamped before the timeout, but visible (committed) only after it.

    Inputs by record timestamp, as the checker merges them, and the order the worker took
    them in: the timeout first, the payment then merely noted, the order cancelled and the
    payment discarded."""
    topic = {"carts": 0, "orders": 1, "payments": 2, "processes": 4}
    deadline = fold_order(history(FINALIZED, INITIALIZED), DEFAULT_TIMEOUTS).process.deadline  # type: ignore[union-attr]
    late = deadline + timedelta(seconds=1)  # type: ignore[operator]
    steps = [
        ("m0", "carts", 0, T0, FINALIZED),
        ("m1", "orders", 0, T0 + timedelta(seconds=1), INITIALIZED),  # as history() stamps it
        ("m2", "payments", 0, T0, PAID),
        ("m3", "processes", 0, late, ProcessTimedOut(order_id=ORDER, deadline=deadline)),
        ("m4", "orders", 1, late, OrderCancelled(order_id=ORDER, reason="TimedOut")),
        ("m5", "payments", 1, late, PaymentDiscarded(payment_id=PAY, order_id=ORDER)),
    ]
    inputs = [
        Input(
            n,
            topic[name],
            offset,
            ORDER,
            Envelope.wrap(
                message,
                message_id=message_id,
                occurred_at=at,
                correlation_id=ORDER,
                causation_id=f"c{n}",
            ),
        )
        for n, (message_id, name, offset, at, message) in enumerate(steps)
    ]
    return inputs, ["m0", "m1", "m3", "m2", "m4", "m5"]


def test_an_order_that_ended_in_the_order_the_worker_took_its_inputs_in_is_terminal() -> None:
    # Given a payment whose transaction became visible only after the order timed out
    inputs, taken_in = _payment_held_up_by_a_broker_restart()
    assert order_violations(ORDER, inputs, DEFAULT_TIMEOUTS) == [
        "order-1: not terminal, in RecordingPayment"
    ], "by timestamp, the payment comes first"

    # When the checker also has the order the live record took them in
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS, taken_in)

    # Then that fold is terminal and nothing is wrong
    assert violations == []


def test_a_worker_order_against_a_topics_own_order_is_not_used() -> None:
    # Given a claimed order that puts the discard before the payment's finalization
    inputs, _ = _payment_held_up_by_a_broker_restart()
    impossible = ["m0", "m1", "m3", "m5", "m4", "m2"]

    # When the checker judges the order with it
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS, impossible)

    # Then it falls back on the timestamp order, which is not terminal
    assert violations == ["order-1: not terminal, in RecordingPayment"]


def test_an_order_both_completed_and_cancelled_is_reported() -> None:
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, SENT, COMPLETED, OUT_OF_STOCK_CANCEL)
    assert "order-1: both completed and cancelled" in order_violations(
        ORDER, inputs, DEFAULT_TIMEOUTS
    )


def test_a_cancelled_order_whose_payment_was_kept_is_reported() -> None:
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, OUT_OF_STOCK_CANCEL)
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)
    assert any("discarded 0 and refunded 0 times" in v for v in violations)


def test_a_payment_both_discarded_and_refunded_is_reported() -> None:
    discarded = PaymentDiscarded(payment_id=PAY, order_id=ORDER)
    refunded = PaymentRefunded(payment_id=PAY, order_id=ORDER, amount=10)
    settled = PaymentSettled(payment_id=PAY, order_id=ORDER)
    inputs = history(
        FINALIZED, INITIALIZED, PAID, settled, RECORDED, OUT_OF_STOCK_CANCEL, discarded, refunded
    )
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)
    assert any("discarded 1 and refunded 1 times" in v for v in violations)


def test_a_refund_without_settlement_is_reported() -> None:
    refunded = PaymentRefunded(payment_id=PAY, order_id=ORDER, amount=10)
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, OUT_OF_STOCK_CANCEL, refunded)
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)
    assert "order-1: refunded without having settled first" in violations


def test_two_different_events_for_one_command_are_a_double_effect_but_copies_are_not() -> None:
    inputs = history(COMPLETED, COMPLETED)
    same_cause = [i.envelope.model_copy(update={"causation_id": "cmd"}) for i in inputs]
    assert double_effects(same_cause) == ["command cmd caused 2 different OrderCompleted events"]
    assert double_effects([same_cause[0], same_cause[0]]) == []


def test_stock_must_equal_the_seeded_quantity_minus_what_was_shipped_once() -> None:
    sent = history(SENT)[0].envelope
    shipped = shipped_quantities([sent, sent])  # an outbox row published twice ships once
    assert shipped == {"sku-1": 2}
    assert stock_violations({"sku-1": 10}, {"sku-1": 8}, shipped) == []
    assert stock_violations({"sku-1": 10}, {"sku-1": 6}, shipped) == [
        "sku-1: stock 6, but seeded 10 - shipped 2 = 8"
    ]
    assert stock_violations({}, {"sku-2": -1}, shipped) == ["sku-2: negative stock -1"]


# A package sent, and the money given back


def test_a_package_sent_to_an_order_cancelled_with_its_payment_discarded_is_reported() -> None:
    # Given an order cancelled by a timeout whose package was sent all the same (the race a
    # long broker outage opens when nothing asks the shipment module first)
    cancelled = OrderCancelled(order_id=ORDER, reason="TimedOut")
    discarded = PaymentDiscarded(payment_id=PAY, order_id=ORDER)
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, cancelled, SENT, discarded)

    # When the checker judges it
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)

    # Then the customer kept both the goods and the money, whatever the fold made of it
    assert "order-1: its package was sent, yet it ended cancelled with its payment discarded" in (
        violations
    )


def test_shipped_and_refunded_is_reported_when_the_live_process_missed_the_package() -> None:
    # Given the order of the issue: the live process missed PackageWasSent, timed out in
    # AwaitingShipment, cancelled the order and refunded the settled payment
    settled = PaymentSettled(payment_id=PAY, order_id=ORDER)
    cancelled = OrderCancelled(order_id=ORDER, reason="TimedOut")
    refunded = PaymentRefunded(payment_id=PAY, order_id=ORDER, amount=10)
    inputs = history(FINALIZED, INITIALIZED, PAID, settled, RECORDED, SENT, cancelled, refunded)

    # When the checker judges it
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)

    # Then shipped-and-refunded is among its violations
    assert "order-1: its package was sent, yet it ended cancelled with its payment refunded" in (
        violations
    )


def test_an_order_cancelled_out_of_stock_with_its_payment_discarded_is_fine() -> None:
    # Given an order whose products ran out after payment, so no package was ever sent
    out = ProductWasOutOfStock(order_id=ORDER, product_id="sku-1", requested=2, available=0)
    discarded = PaymentDiscarded(payment_id=PAY, order_id=ORDER)
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, out, OUT_OF_STOCK_CANCEL, discarded)

    # When the checker judges it
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS)

    # Then nothing is wrong: nothing was shipped
    assert violations == []


def test_an_order_whose_live_process_ended_escalated_is_reported() -> None:
    # Given a completed history whose live record ended in the operator's state
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, SENT, COMPLETED)
    taken_in = [i.envelope.message_id for i in inputs]

    # When the checker judges it with that live state
    violations = order_violations(ORDER, inputs, DEFAULT_TIMEOUTS, taken_in, "Escalated")

    # Then it is reported: a healthy run never needs an operator
    assert violations == [
        "order-1: ended Escalated: its package was sent to a cancelled process, "
        "which needs an operator"
    ]


def test_an_order_escalated_by_timestamps_but_completed_in_the_workers_order_is_fine() -> None:
    # Given a timeout stamped before the payment's recording, but taken in after it: by
    # timestamp the package meets a cancelling process; in the worker's order the timeout is
    # stale and the order completes
    deadline = T0 + timedelta(seconds=2.5)  # RecordingPayment entered at 2 s, for 0.5 s
    inputs = history(FINALIZED, INITIALIZED, PAID)
    stamped = [
        (ProcessTimedOut(order_id=ORDER, deadline=deadline), "processes.commands", 2.5),
        (RECORDED, "orders.events", 3),
        (SENT, "shipments.events", 4),
        (COMPLETED, "orders.events", 5),
    ]
    for n, (message, topic, at) in enumerate(stamped, start=len(inputs)):
        envelope = Envelope.wrap(
            message,
            message_id=f"m{n}",
            occurred_at=T0 + timedelta(seconds=at),
            correlation_id=ORDER,
            causation_id=f"c{n}",
        )
        inputs.append(Input(int(at * 1000), PROCESS_INPUTS.index(topic), n, ORDER, envelope))
    inputs.sort(key=lambda i: i.timestamp)
    timeouts = {**DEFAULT_TIMEOUTS, State.RecordingPayment: timedelta(seconds=0.5)}
    by_timestamp = fold_order(inputs, timeouts).process
    assert by_timestamp is not None and by_timestamp.state != State.Completed
    taken_in = ["m0", "m1", "m2", "m4", "m3", "m5", "m6"]  # the recording before the timeout

    # When the checker judges it with the live record, which completed
    violations = order_violations(ORDER, inputs, timeouts, taken_in, "Completed")

    # Then the worker's order is the one judged, and nothing is wrong
    assert violations == []


# Every input taken in by the live process


def _on_topic(inputs: list[Input], index: int, topic: str) -> list[Input]:
    """``inputs`` with the ``index``-th one moved to ``topic`` (offset kept)."""
    item = inputs[index]
    moved = Input(item.timestamp, PROCESS_INPUTS.index(topic), item.offset, ORDER, item.envelope)
    return [*inputs[:index], moved, *inputs[index + 1 :]]


def test_an_input_missing_from_the_live_record_is_reported_with_its_topic_and_offset() -> None:
    # Given a completed order whose live record lacks the PackageWasSent it must have applied
    inputs = _on_topic(
        history(FINALIZED, INITIALIZED, PAID, RECORDED, SENT, COMPLETED), 4, "shipments.events"
    )
    applied = ["m0", "m1", "m2", "m3", "m5"]

    # When the checker compares the inputs with the live record
    found = unapplied(ORDER, inputs, applied)

    # Then exactly that message is reported
    assert found == [
        "order-1: PackageWasSent m4 (shipments.events offset 4) was neither applied nor "
        "recorded as ignored by its live process"
    ]


def test_inputs_ignored_and_remembered_count_as_taken_in() -> None:
    # Given a completed order that then hears of a failed payment, which it ignores
    failed = PaymentFailed(payment_id=PAY, order_id=ORDER, reason="late")
    inputs = history(FINALIZED, INITIALIZED, PAID, RECORDED, SENT, COMPLETED, failed)
    folded = fold_order(inputs, DEFAULT_TIMEOUTS).process
    assert folded is not None and folded.state == State.Completed and "m6" in folded.applied

    # When the checker compares the inputs with that record
    found = unapplied(ORDER, inputs, folded.applied)

    # Then nothing is missing: an ignored message remembered is taken in
    assert found == []


def test_timeouts_and_types_the_process_ignores_unread_need_not_be_in_the_record() -> None:
    # Given a timeout that was not due and a cart event the worker skips unread
    opened = CartOpened(cart_id=ORDER, client_id="c")
    early = ProcessTimedOut(order_id=ORDER, deadline=T0)
    inputs = history(opened, FINALIZED, INITIALIZED, early)

    # When the live record lists only the cart and the order
    found = unapplied(ORDER, inputs, ["m1", "m2"])

    # Then nothing is missing
    assert found == []


def test_an_order_with_no_live_record_is_reported_once() -> None:
    inputs = history(FINALIZED, INITIALIZED)
    assert unapplied(ORDER, inputs, None) == [
        "order-1: no live process record, so none of its inputs was applied"
    ]


def test_nothing_is_asserted_for_an_order_with_as_many_inputs_as_a_record_keeps() -> None:
    # Given an order with MAX_APPLIED_IDS inputs, whose record may have dropped the oldest ids
    settled = PaymentSettled(payment_id=PAY, order_id=ORDER)
    inputs = history(FINALIZED, INITIALIZED, *[settled] * (MAX_APPLIED_IDS - 2))
    assert len(inputs) == MAX_APPLIED_IDS

    # When its live record lacks the first ids
    found = unapplied(ORDER, inputs, [i.envelope.message_id for i in inputs][2:])

    # Then nothing is reported; one input fewer, and the missing ones are
    assert found == []
    assert len(unapplied(ORDER, inputs[:-1], [i.envelope.message_id for i in inputs][2:-1])) == 2


def test_a_live_record_in_a_state_this_code_does_not_know_still_reads() -> None:
    # Given a changelog value whose state the checker's State enum may not have yet
    value = b'{"order_id": "order-1", "state": "Escalated", "applied": ["m0", "m1"]}'

    # When the checker reads it
    record = live_record(TableRecord(0, value))

    # Then state and applied ids come through; a deleted record is no record
    assert record == LiveRecord("Escalated", ("m0", "m1"))
    assert live_record(TableRecord(0, None)) is None
