"""The flows of the issue, told as given/when/then, with the data the commands carry."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from aggregates.messages import (
    CancelOrder,
    CancelShipment,
    CartOpened,
    CommandRejected,
    DiscardPayment,
    Envelope,
    InitOrder,
    PaymentRequested,
    PaymentSettled,
    ProcessTimedOut,
    RecordOrderPayment,
    RefundPayment,
    RequestPayment,
    SendPackage,
    ShipmentCancelled,
    deterministic_id,
)
from process_manager import REACTS_TO, Process, State, handle, resume
from process_manager.process import MAX_APPLIED_IDS
from tests.unit.process_manager.scenario import (
    CLIENT,
    DISCARDING,
    HAPPY,
    ITEMS,
    LATER,
    ORDER,
    T0,
    TIMEOUTS,
    TOTAL,
    envelope,
    given,
    given_state,
    remembered,
    when,
)


def commands_of(*triggers: str) -> list[str]:
    """The command types each history entry of ``given(*triggers)`` sent, flattened."""
    return [c.type for entry in given(*triggers).history for c in entry.commands]


# Happy path


def test_a_finalized_cart_initializes_the_order_with_the_carts_content() -> None:
    outcome = when(None, "CartFinalized")

    assert outcome.process is not None and outcome.process.state == State.AwaitingOrder
    assert [c.data for c in outcome.commands] == [
        InitOrder(order_id=ORDER, client_id=CLIENT, product_items=ITEMS, total_price=TOTAL)
    ]


def test_an_initialized_order_requests_the_carts_total_with_its_payment_method() -> None:
    outcome = when(given("CartFinalized", method="card_settles_immediately"), "OrderInitialized")

    [command] = outcome.commands
    assert command.data == RequestPayment(
        payment_id=deterministic_id("when", "payment_id"),
        order_id=ORDER,
        amount=TOTAL,
        payment_method="card_settles_immediately",
    )
    assert outcome.process is not None
    assert outcome.process.payment_id == deterministic_id("when", "payment_id")


def test_a_finalized_payment_is_recorded_on_the_order_then_the_package_is_sent() -> None:
    process = given(*HAPPY[:3])
    assert process.payment_id is not None
    [record] = process.owed
    assert record.data == RecordOrderPayment(
        order_id=ORDER, payment_id=process.payment_id, finalized_at=T0 + timedelta(seconds=2)
    )

    outcome = when(process, "OrderPaymentRecorded")

    assert [c.data for c in outcome.commands] == [SendPackage(order_id=ORDER, product_items=ITEMS)]


def test_the_happy_path_completes_the_order() -> None:
    process = given(*HAPPY)

    assert process.state == State.Completed
    assert process.deadline is None
    assert commands_of(*HAPPY) == [
        "InitOrder",
        "RequestPayment",
        "RecordOrderPayment",
        "SendPackage",
        "CompleteOrder",
    ]
    assert [(e.from_state, e.to_state) for e in process.history] == [
        (None, State.AwaitingOrder),
        (State.AwaitingOrder, State.AwaitingPayment),
        (State.AwaitingPayment, State.RecordingPayment),
        (State.RecordingPayment, State.AwaitingShipment),
        (State.AwaitingShipment, State.Completing),
        (State.Completing, State.Completed),
    ]


def test_a_settlement_after_completion_is_noted_without_a_move() -> None:
    outcome = when(given(*HAPPY), "PaymentSettled")

    assert outcome.kind == "applied"
    assert outcome.commands == ()
    assert outcome.process is not None
    assert outcome.process.state == State.Completed
    assert outcome.process.payment_settled
    assert outcome.process.history[-1].from_state == State.Completed


def test_a_settlement_while_shipping_is_noted_and_keeps_the_deadline() -> None:
    process = given(*HAPPY[:4])

    outcome = when(process, "PaymentSettled")

    assert outcome.process is not None
    assert outcome.process.state == State.AwaitingShipment
    assert outcome.process.deadline == process.deadline
    assert outcome.process.owed == process.owed


# Payment failed


def test_a_declined_payment_cancels_the_order_and_needs_no_compensation() -> None:
    process = given("CartFinalized", "OrderInitialized", "PaymentFailed", "OrderCancelled")

    assert process.state == State.Cancelled
    assert process.cancellation_reason == "PaymentFailed"
    assert commands_of("CartFinalized", "OrderInitialized", "PaymentFailed", "OrderCancelled") == [
        "InitOrder",
        "RequestPayment",
        "CancelOrder",
    ]


# Out of stock


def test_out_of_stock_after_payment_cancels_the_order_then_discards_the_payment() -> None:
    process = given(*HAPPY[:4], "ProductWasOutOfStock")
    [cancel] = process.owed
    assert cancel.data == CancelOrder(order_id=ORDER, reason="ProductWasOutOfStock")

    outcome = when(process, "OrderCancelled")

    assert outcome.process is not None and process.payment_id is not None
    assert outcome.process.state == State.DiscardingPayment
    assert [c.data for c in outcome.commands] == [
        DiscardPayment(payment_id=process.payment_id, order_id=ORDER, reason="ProductWasOutOfStock")
    ]
    discarded = when(outcome.process, "PaymentDiscarded", message_id="discarded")
    assert discarded.process is not None and discarded.process.state == State.Cancelled


def test_out_of_stock_after_settlement_refunds_the_payment() -> None:
    triggers = (*HAPPY[:4], "PaymentSettled", "ProductWasOutOfStock", "OrderCancelled")
    process = given(*triggers, "PaymentDiscardRejected")
    assert process.payment_settled
    assert process.state == State.RefundingPayment
    assert [c.data for c in process.owed] == [
        RefundPayment(payment_id=process.payment_id, order_id=ORDER, reason="ProductWasOutOfStock")
    ]

    assert given(*triggers, "PaymentDiscardRejected", "PaymentRefunded").state == State.Cancelled


# Timeouts


def test_an_unanswered_payment_times_out_then_cancels_the_order_and_discards_the_payment() -> None:
    process = given("CartFinalized", "OrderInitialized", "ProcessTimedOut")

    assert process.state == State.CancellingOrderWithPayment
    assert process.cancellation_reason == "TimedOut"
    assert [c.data for c in process.owed] == [CancelOrder(order_id=ORDER, reason="TimedOut")]
    after = given("CartFinalized", "OrderInitialized", "ProcessTimedOut", "OrderCancelled")
    assert [c.type for c in after.owed] == ["DiscardPayment"]


def test_a_timeout_before_its_deadline_does_nothing() -> None:
    process = given(*HAPPY[:2])
    assert process.deadline is not None
    early = Envelope.wrap(
        ProcessTimedOut(order_id=ORDER, deadline=process.deadline),
        message_id="early",
        occurred_at=process.deadline - timedelta(microseconds=1),
        correlation_id=ORDER,
        causation_id=None,
    )

    outcome = handle(process, early, timeouts=TIMEOUTS)

    assert outcome.kind == "ignored"
    assert outcome.process == process


def test_a_timeout_for_an_older_deadline_does_nothing() -> None:
    process = given(*HAPPY[:2])
    old = Envelope.wrap(
        ProcessTimedOut(order_id=ORDER, deadline=T0),
        message_id="old-timeout",
        occurred_at=T0 + timedelta(hours=1),
        correlation_id=ORDER,
        causation_id=None,
    )

    outcome = handle(process, old, timeouts=TIMEOUTS)

    assert outcome.kind == "ignored"
    assert "stale" in outcome.reason


def test_deadlines_follow_the_configured_timeouts() -> None:
    cause = envelope(None, "CartFinalized", message_id="c", at=T0)
    timeouts = {State.AwaitingOrder: timedelta(seconds=5)}

    outcome = handle(None, cause, timeouts=timeouts)

    assert outcome.process is not None
    assert outcome.process.deadline == T0 + timedelta(seconds=5)


def test_a_timeout_while_compensating_sends_the_command_again_under_a_new_id() -> None:
    process = given(*HAPPY[:3], "CancelProcess", "OrderCancelled")
    [first] = process.owed

    outcome = when(process, "ProcessTimedOut", message_id="timeout")

    assert outcome.process is not None
    assert outcome.process.state == State.DiscardingPayment
    [again] = outcome.commands
    assert again.data == first.data
    assert again.message_id == deterministic_id("timeout", "DiscardPayment") != first.message_id
    assert outcome.process.deadline is not None and process.deadline is not None
    assert outcome.process.deadline > process.deadline


def test_a_timeout_after_the_process_ended_does_nothing() -> None:
    done = given(*HAPPY)
    timeout = Envelope.wrap(
        ProcessTimedOut(order_id=ORDER, deadline=T0),
        message_id="t",
        occurred_at=LATER,
        correlation_id=ORDER,
        causation_id=None,
    )

    assert handle(done, timeout, timeouts=TIMEOUTS).kind == "ignored"


# Cancelling while a package may be on its way: the shipment module decides


def test_a_timeout_while_shipping_asks_the_shipment_module_and_cancels_nothing_yet() -> None:
    # Given a paid order whose SendPackage is in flight (or queued behind a module that is down)
    process = given(*HAPPY[:4])

    # When its deadline passes
    outcome = when(process, "ProcessTimedOut", message_id="timeout")

    # Then it asks the shipment module to cancel the shipment; the order is not cancelled
    assert outcome.process is not None
    assert outcome.process.state == State.CancellingShipment
    assert outcome.process.cancellation_reason == "TimedOut"
    [command] = outcome.commands
    assert command.data == CancelShipment(order_id=ORDER, reason="TimedOut")
    assert command.message_id == deterministic_id("timeout", "CancelShipment")


def test_a_timeout_while_the_package_ships_completes_the_order_and_never_refunds() -> None:
    # Given a paid order that timed out while its package was being sent
    race = (*HAPPY[:4], "ProcessTimedOut")

    # When the package was sent after all, and the order completes
    process = given(*race, "PackageWasSent", "OrderCompleted")

    # Then the order is completed and not cancelled: no CancelOrder, discard or refund was sent
    assert process.state == State.Completed
    assert process.cancellation_reason is None
    assert commands_of(*race, "PackageWasSent", "OrderCompleted") == [
        "InitOrder",
        "RequestPayment",
        "RecordOrderPayment",
        "SendPackage",
        "CancelShipment",
        "CompleteOrder",
    ]
    # And the module's refusal of the cancellation, arriving after, changes nothing
    assert when(process, "ShipmentCancellationRejected").kind == "ignored"


def test_a_refused_shipment_cancellation_completes_the_order() -> None:
    # Given an operator's cancel that reached the shipment module after the package went out
    process = given(*HAPPY[:4], "CancelProcess")
    assert process.cancellation_reason == "ManualCancellation"

    # When the module answers that the package was already sent
    outcome = when(process, "ShipmentCancellationRejected")

    # Then the order completes, with no cancellation reason, and the PackageWasSent that
    # follows changes nothing
    assert outcome.process is not None
    assert outcome.process.state == State.Completing
    assert outcome.process.cancellation_reason is None
    assert [c.data.type for c in outcome.commands] == ["CompleteOrder"]
    assert when(outcome.process, "PackageWasSent", message_id="sent").kind == "ignored"


def test_a_shipment_cancelled_before_its_package_cancels_the_order_and_compensates() -> None:
    # Given a timeout whose CancelShipment reached the module before the SendPackage did
    process = given(*HAPPY[:4], "ProcessTimedOut")

    # When the module answers ShipmentCancelled
    outcome = when(process, "ShipmentCancelled")

    # Then the order is cancelled for the timeout, and then the payment is discarded
    assert outcome.process is not None
    assert outcome.process.state == State.CancellingOrderWithPayment
    assert [c.data for c in outcome.commands] == [CancelOrder(order_id=ORDER, reason="TimedOut")]
    triggers = (*HAPPY[:4], "ProcessTimedOut", "ShipmentCancelled", "OrderCancelled")
    assert given(*triggers, "PaymentDiscarded").state == State.Cancelled
    assert commands_of(*triggers, "PaymentDiscarded")[-3:] == [
        "CancelShipment",
        "CancelOrder",
        "DiscardPayment",
    ]


def test_the_refusal_of_a_send_package_after_a_cancelled_shipment_changes_nothing() -> None:
    # Given a cancelled shipment whose order is being cancelled
    process = given(*HAPPY[:4], "ProcessTimedOut", "ShipmentCancelled")
    send_package = process.history[3].commands[0]
    assert send_package.type == "SendPackage"

    # When the module refuses the SendPackage that reached it after the cancellation
    refused = Envelope.wrap(
        CommandRejected(
            command_type="SendPackage",
            command_message_id=send_package.message_id,
            reason="the shipment was cancelled (TimedOut)",
            order_id=ORDER,
        ),
        message_id="refused",
        occurred_at=LATER,
        correlation_id=ORDER,
        causation_id=send_package.message_id,
    )
    outcome = handle(process, refused, timeouts=TIMEOUTS)

    # Then nothing changes and nothing is sent: the compensation goes on
    assert outcome.kind == "ignored"
    assert outcome.commands == ()


def test_out_of_stock_while_cancelling_the_shipment_cancels_with_the_first_reason() -> None:
    # Given an operator's cancel while the package was being sent
    process = given(*HAPPY[:4], "CancelProcess")

    # When the module answers the SendPackage with out of stock first
    outcome = when(process, "ProductWasOutOfStock")

    # Then the order is cancelled (nothing shipped), for the reason that started it
    assert outcome.process is not None
    assert outcome.process.state == State.CancellingOrderWithPayment
    assert [c.data for c in outcome.commands] == [
        CancelOrder(order_id=ORDER, reason="ManualCancellation")
    ]
    # And the ShipmentCancelled that follows changes nothing
    assert when(outcome.process, "ShipmentCancelled", message_id="c").kind == "ignored"


def test_a_timeout_while_cancelling_the_shipment_asks_again_and_decides_nothing() -> None:
    # Given a shipment cancellation the module has not answered (it is down)
    process = given(*HAPPY[:4], "CancelProcess")
    [first] = process.owed

    # When the deadline passes
    outcome = when(process, "ProcessTimedOut", message_id="timeout")

    # Then CancelShipment is sent again under a new id, with the same reason; nothing else
    assert outcome.process is not None
    assert outcome.process.state == State.CancellingShipment
    assert outcome.process.cancellation_reason == "ManualCancellation"
    [again] = outcome.commands
    assert again.data == first.data == CancelShipment(order_id=ORDER, reason="ManualCancellation")
    assert again.message_id == deterministic_id("timeout", "CancelShipment") != first.message_id
    assert outcome.process.deadline is not None and process.deadline is not None
    assert outcome.process.deadline > process.deadline


def test_an_operator_cancel_while_cancelling_the_shipment_does_nothing() -> None:
    assert when(given(*HAPPY[:4], "ProcessTimedOut"), "CancelProcess").kind == "ignored"


@pytest.mark.parametrize("trigger", ["ShipmentCancelled", "ShipmentCancellationRejected"])
def test_a_shipment_answer_arriving_twice_changes_nothing(trigger: str) -> None:
    # Given a process that took the module's answer in
    process = given(*HAPPY[:4], "ProcessTimedOut")
    answer = envelope(process, trigger, message_id="answer", at=LATER)
    first = handle(process, answer, timeouts=TIMEOUTS)
    assert first.kind == "applied"

    # When the same answer arrives again (the outbox relay publishes at least once)
    again = handle(first.process, answer, timeouts=TIMEOUTS)

    # Then nothing changes, and only the commands owed are sent again, with their first ids
    assert again.kind == "duplicate"
    assert again.process == first.process
    assert again.commands == first.commands


def test_a_shipment_answer_outside_a_cancellation_is_ignored() -> None:
    # Given a process waiting for its package, and one that completed
    for process in (given(*HAPPY[:4]), given(*HAPPY)):
        # When a stray ShipmentCancelled arrives, then nothing changes
        stray = Envelope.wrap(
            ShipmentCancelled(order_id=ORDER, reason="TimedOut"),
            message_id="stray",
            occurred_at=LATER,
            correlation_id=ORDER,
            causation_id=None,
        )
        outcome = handle(process, stray, timeouts=TIMEOUTS)
        assert outcome.kind == "ignored" and outcome.commands == ()


# A package that meets a cancelled process: an operator decides


@pytest.mark.parametrize(
    "cancelled",
    [
        pytest.param((*HAPPY[:3], "CancelProcess"), id="CancellingOrderWithPayment"),
        pytest.param((*HAPPY[:3], "CancelProcess", "OrderCancelled"), id="DiscardingPayment"),
        pytest.param(
            (*HAPPY[:3], "CancelProcess", "OrderCancelled", "PaymentDiscarded"), id="Cancelled"
        ),
    ],
)
def test_a_package_sent_to_a_cancelled_process_is_escalated_never_ignored(
    cancelled: tuple[str, ...],
) -> None:
    # Given a process whose cancellation was under way or done
    process = given(*cancelled)

    # When a PackageWasSent arrives (the protocol keeps this from happening)
    outcome = when(process, "PackageWasSent", message_id="sent")

    # Then the process is escalated to an operator, with the cause on its record
    assert outcome.kind == "applied"
    assert outcome.process is not None
    assert outcome.process.state == State.Escalated
    assert outcome.process.deadline is None
    assert outcome.commands == ()
    assert outcome.process.cancellation_reason == "ManualCancellation"
    assert outcome.process.escalation == (
        f"PackageWasSent (package pkg-1) sent arrived in {process.state} (cancellation reason "
        "ManualCancellation): the goods went out for an order being cancelled; an operator "
        "settles the order and its payment"
    )
    # And nothing moves it any more, not even a timeout or a late payment
    for trigger in ("PaymentDiscarded", "PaymentSettled", "OrderCancelled"):
        later = when(outcome.process, trigger, message_id=f"later-{trigger}")
        assert later.process is not None and later.process.state == State.Escalated
        assert later.commands == ()


def test_a_package_sent_twice_to_a_cancelled_process_changes_nothing_the_second_time() -> None:
    process = given(*DISCARDING, "PaymentDiscarded")
    sent = envelope(process, "PackageWasSent", message_id="sent", at=LATER)
    first = handle(process, sent, timeouts=TIMEOUTS)

    again = handle(first.process, sent, timeouts=TIMEOUTS)

    assert again.kind == "duplicate"
    assert again.process == first.process
    assert again.commands == ()


# Operators


def test_an_operator_cancels_a_paid_order_with_manual_cancellation() -> None:
    process = given(*HAPPY[:3], "CancelProcess")

    assert process.state == State.CancellingOrderWithPayment
    assert [c.data for c in process.owed] == [
        CancelOrder(order_id=ORDER, reason="ManualCancellation")
    ]


def test_an_operator_cancels_before_the_order_exists_and_no_payment_is_ever_requested() -> None:
    process = given("CartFinalized", "CancelProcess")

    late = when(process, "OrderInitialized")

    assert late.kind == "ignored"
    assert late.process == remembered(process, "when")
    assert late.commands == ()


def test_an_operator_cannot_cancel_once_the_package_is_sent() -> None:
    outcome = when(given(*HAPPY[:5]), "CancelProcess")

    assert outcome.kind == "ignored"


def test_an_operator_cancel_while_already_cancelling_does_nothing() -> None:
    assert when(given("CartFinalized", "CancelProcess"), "CancelProcess").kind == "ignored"


# Rejections


def test_a_cancel_rejected_because_the_order_never_existed_still_ends_cancelled() -> None:
    process = given("CartFinalized", "CancelProcess", "CommandRejected(CancelOrder)")

    assert process.state == State.Cancelled


def test_a_rejected_cancel_of_a_paid_order_still_compensates_the_payment() -> None:
    process = given(*HAPPY[:3], "CancelProcess", "CommandRejected(CancelOrder)")

    assert [c.type for c in process.owed] == ["DiscardPayment"]


def test_a_rejection_of_a_command_that_is_not_owed_is_ignored() -> None:
    process = given("CartFinalized", "CancelProcess")
    stale = Envelope.wrap(
        CommandRejected(
            command_type="CancelOrder", command_message_id="elsewhere", reason="no", order_id=ORDER
        ),
        message_id="r",
        occurred_at=LATER,
        correlation_id=ORDER,
        causation_id=None,
    )

    assert handle(process, stale, timeouts=TIMEOUTS).kind == "ignored"


def test_a_refused_refund_ends_the_compensation() -> None:
    process = given(*HAPPY[:3], "CancelProcess", "OrderCancelled", "PaymentDiscardRejected")

    refused = when(process, "CommandRejected(RefundPayment)")

    assert refused.process is not None and refused.process.state == State.Cancelled


# Late success after cancellation


def test_a_late_payment_after_cancellation_is_discarded_never_kept() -> None:
    cancelled = given(*HAPPY[:2], "ProcessTimedOut", "OrderCancelled", "PaymentDiscarded")
    assert cancelled.state == State.Cancelled

    outcome = when(cancelled, "PaymentFinalized")

    assert outcome.process is not None
    assert outcome.process.state == State.DiscardingPayment
    assert [c.data for c in outcome.commands] == [
        DiscardPayment(payment_id=cancelled.payment_id, order_id=ORDER, reason="TimedOut")
    ]


def test_a_late_settlement_after_cancellation_is_refunded() -> None:
    cancelled = given(*HAPPY[:3], "CancelProcess", "OrderCancelled", "PaymentDiscarded")

    outcome = when(cancelled, "PaymentSettled")

    assert [c.type for c in outcome.commands] == ["RefundPayment"]


def test_a_late_payment_for_a_cancelled_process_that_never_asked_for_one_is_ignored() -> None:
    cancelled = given("CartFinalized", "CancelProcess", "OrderCancelled")

    assert when(cancelled, "PaymentFinalized").kind == "ignored"


def test_payment_events_of_another_payment_are_ignored() -> None:
    process = given(*HAPPY[:2])
    other = Envelope.wrap(
        PaymentSettled(payment_id="someone-else", order_id=ORDER),
        message_id="x",
        occurred_at=LATER,
        correlation_id=ORDER,
        causation_id=None,
    )

    assert handle(process, other, timeouts=TIMEOUTS).kind == "ignored"


def test_messages_before_the_cart_is_finalized_are_ignored() -> None:
    outcome = when(None, "OrderCompleted")

    assert outcome.kind == "ignored"
    assert outcome.process is None


def test_a_second_finalized_cart_for_the_same_order_is_ignored() -> None:
    assert when(given("CartFinalized"), "CartFinalized", message_id="again").kind == "ignored"


# Crash recovery


def test_a_duplicate_resends_the_commands_owed_now_with_their_first_ids() -> None:
    process = given(*HAPPY[:3])
    owed = process.owed

    # given-0 (the CartFinalized) arrives again, long after its own InitOrder was answered
    again = handle(
        process, envelope(None, "CartFinalized", message_id="given-0", at=LATER), timeouts=TIMEOUTS
    )

    assert again.kind == "duplicate"
    assert again.commands == owed == tuple(resume(process))


def test_resume_owes_nothing_once_the_process_has_ended() -> None:
    assert resume(given(*HAPPY)) == []


def test_applied_message_ids_are_bounded_but_recent_ones_still_deduplicate() -> None:
    process = given(*HAPPY[:4])
    for n in range(MAX_APPLIED_IDS + 5):
        settled = Envelope.wrap(
            PaymentSettled(payment_id=process.payment_id or "", order_id=ORDER),
            message_id=f"s{n}",
            occurred_at=LATER,
            correlation_id=ORDER,
            causation_id=None,
        )
        process = process.model_copy(update={"payment_settled": False})
        outcome = handle(process, settled, timeouts=TIMEOUTS)
        assert outcome.process is not None
        process = outcome.process

    assert len(process.applied) == MAX_APPLIED_IDS
    assert process.applied[-1] == f"s{MAX_APPLIED_IDS + 4}"


def test_a_process_survives_a_round_trip_through_json() -> None:
    process = given(*HAPPY[:3], "CancelProcess")

    assert Process.model_validate_json(process.model_dump_json()) == process


@pytest.mark.parametrize("state", [None, *State])
def test_a_message_type_outside_reacts_to_is_ignored_in_every_state(state: State | None) -> None:
    # Given a process in any state (the worker skips these types before loading the process)
    process = given_state(state)
    skipped = [
        CartOpened(cart_id=ORDER, client_id="c"),
        PaymentRequested(payment_id="p", order_id=ORDER, amount=Decimal("1.00")),
    ]
    for message in skipped:
        assert message.type not in REACTS_TO
        # When one arrives, then nothing changes and nothing is sent
        cause = Envelope.wrap(
            message,
            message_id=f"m-{message.type}",
            occurred_at=LATER,
            correlation_id=ORDER,
            causation_id=None,
        )
        outcome = handle(process, cause, timeouts=TIMEOUTS)
        assert outcome.kind == "ignored" and not outcome.commands
        assert outcome.process == process


def test_a_message_ignored_once_stays_ignored_when_delivered_again_later() -> None:
    # Given a payment that finalized while the process was already cancelling (ignored there)
    cancelling = given(*HAPPY[:2], "CancelProcess")
    late = when(cancelling, "PaymentFinalized", message_id="late-payment")
    assert late.kind == "ignored"
    cancelled = when(late.process, "OrderCancelled", message_id="cancelled").process
    discarded = when(cancelled, "PaymentDiscarded", message_id="discarded").process
    assert discarded is not None and discarded.state == State.Cancelled

    # When the broker delivers that payment again after the process was cancelled
    again = handle(discarded, late_payment(cancelling), timeouts=TIMEOUTS)

    # Then it is a duplicate: no late-success compensation is started for it a second time
    assert again.kind == "duplicate"
    assert again.process == discarded


def late_payment(process: Process) -> Envelope:
    return envelope(process, "PaymentFinalized", message_id="late-payment", at=LATER)


def test_a_timeout_while_completing_resends_complete_order_and_cancels_nothing() -> None:
    # Given a process whose package was sent, waiting for the order to complete
    completing = given(*HAPPY[:5])

    # When its deadline passes
    outcome = when(completing, "ProcessTimedOut")

    # Then CompleteOrder is sent again, and the order is not marked as cancelled
    assert outcome.process is not None and outcome.process.state == State.Completing
    assert [c.type for c in outcome.commands] == ["CompleteOrder"]
    assert outcome.process.cancellation_reason is None


# A shipment command the module gave up on (a poison command)


def test_a_refused_send_package_asks_the_shipment_module_before_cancelling() -> None:
    # Given a paid order whose SendPackage the shipment module could not process
    process = given(*HAPPY[:4])

    # When the module answers with CommandRejected(SendPackage)
    outcome = when(process, "CommandRejected(SendPackage)", message_id="refused")

    # Then the process asks the module to cancel the shipment, for ShipmentRefused: the module,
    # not the process, knows whether a package went out
    assert outcome.process is not None
    assert outcome.process.state == State.CancellingShipment
    assert outcome.process.cancellation_reason == "ShipmentRefused"
    [command] = outcome.commands
    assert command.data == CancelShipment(order_id=ORDER, reason="ShipmentRefused")


def test_a_refused_send_package_then_cancelled_shipment_refunds_a_settled_payment() -> None:
    # Given a settled payment and a SendPackage the module refused (and recorded as never to ship)
    refused = (*HAPPY[:4], "PaymentSettled", "CommandRejected(SendPackage)")

    # When the module cancels the shipment, the order is cancelled and the discard refused
    then = (*refused, "ShipmentCancelled", "OrderCancelled", "PaymentDiscardRejected")
    process = given(*then, "PaymentRefunded")

    # Then the order is cancelled for ShipmentRefused, and the settled money refunded
    assert process.state == State.Cancelled
    assert process.cancellation_reason == "ShipmentRefused"
    assert commands_of(*then)[-4:] == [
        "CancelShipment",
        "CancelOrder",
        "DiscardPayment",
        "RefundPayment",
    ]


def test_a_refused_cancel_shipment_escalates_since_nobody_knows_whether_goods_went_out() -> None:
    # Given a process waiting for the shipment module's answer to its CancelShipment
    process = given(*HAPPY[:4], "ProcessTimedOut")

    # When the module answers that it could not process the CancelShipment
    outcome = when(process, "CommandRejected(CancelShipment)", message_id="refused")

    # Then the process stops for an operator, with the module's reason on the record
    assert outcome.process is not None
    assert outcome.process.state == State.Escalated
    assert outcome.process.cancellation_reason == "TimedOut"
    assert outcome.process.escalation is not None
    assert "CancelShipment" in outcome.process.escalation
    assert "refused" in outcome.process.escalation
    assert outcome.commands == ()
