from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from aggregates import payment
from aggregates.messages import (
    CommandRejected,
    DiscardPayment,
    PaymentDiscarded,
    PaymentDiscardRejected,
    PaymentFailed,
    PaymentFinalized,
    PaymentRefunded,
    PaymentRequested,
    PaymentSettled,
    RefundPayment,
    RequestPayment,
    SettlePayment,
    from_wire,
)
from aggregates.payment import (
    Context,
    DiscardedPayment,
    FailedPayment,
    FinalizedPayment,
    NoPayment,
    PendingPayment,
    RefundedPayment,
    SettledPayment,
)
from tests.unit.aggregates.scenario import given

PAY = "pay-1"
ORDER = "cart-42"
AMOUNT = Decimal("39.98")
NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
DELAY = timedelta(seconds=30)
decider = payment.decider(Context(now=NOW, settlement_delay=DELAY))


def request(method="card_ok"):
    return RequestPayment(payment_id=PAY, order_id=ORDER, amount=AMOUNT, payment_method=method)


def requested(method="card_ok"):
    return PaymentRequested(payment_id=PAY, order_id=ORDER, amount=AMOUNT, payment_method=method)


finalized = PaymentFinalized(
    payment_id=PAY, order_id=ORDER, amount=AMOUNT, finalized_at=NOW, settles_at=NOW + DELAY
)
settled = PaymentSettled(payment_id=PAY, order_id=ORDER)
failed = PaymentFailed(payment_id=PAY, order_id=ORDER, reason="card_declined")
discarded = PaymentDiscarded(payment_id=PAY, order_id=ORDER)
refunded = PaymentRefunded(payment_id=PAY, order_id=ORDER, amount=AMOUNT)

NONE: list[object] = []
PENDING = [requested("card_no_response")]
FINALIZED = [requested(), finalized]
SETTLED = [requested(), finalized, settled]
FAILED = [requested("card_declined"), failed]
DISCARDED = [requested(), finalized, discarded]
DISCARDED_IN_ADVANCE = [discarded]
REFUNDED = [*SETTLED, refunded]

settle = SettlePayment(payment_id=PAY, order_id=ORDER)
discard = DiscardPayment(payment_id=PAY, order_id=ORDER, reason="TimedOut")
refund = RefundPayment(payment_id=PAY, order_id=ORDER, reason="ProductWasOutOfStock")


# The simulated gateway


def test_card_ok_is_finalized_now_and_settles_after_the_delay():
    state = given(decider).when(request("card_ok")).then([requested("card_ok"), finalized])
    assert state == FinalizedPayment(PAY, ORDER, AMOUNT, NOW, settle_after=NOW + DELAY)


def test_a_declined_card_fails():
    state = given(decider).when(request("card_declined")).then([requested("card_declined"), failed])
    assert state == FailedPayment(PAY, ORDER, "card_declined")


def test_a_card_with_no_response_stays_pending():
    state = given(decider).when(request("card_no_response")).then([requested("card_no_response")])
    assert state == PendingPayment(PAY, ORDER, AMOUNT, "card_no_response")


def test_a_card_that_settles_immediately_is_finalized_and_settled_at_once():
    state = (
        given(decider)
        .when(request("card_settles_immediately"))
        .then(
            [
                requested("card_settles_immediately"),
                PaymentFinalized(
                    payment_id=PAY,
                    order_id=ORDER,
                    amount=AMOUNT,
                    finalized_at=NOW,
                    settles_at=NOW,
                ),
                settled,
            ]
        )
    )
    assert state == SettledPayment(PAY, ORDER, AMOUNT)


def test_settling_a_finalized_payment():
    state = given(decider, FINALIZED).when(settle).then([settled])
    assert state == SettledPayment(PAY, ORDER, AMOUNT)


def test_a_finalized_payment_is_due_for_settlement_only_after_the_delay():
    state = given(decider, FINALIZED).state
    assert not payment.is_due_for_settlement(state, NOW + DELAY - timedelta(seconds=1))
    assert payment.is_due_for_settlement(state, NOW + DELAY)
    assert not payment.is_due_for_settlement(given(decider, SETTLED).state, NOW + DELAY)


def test_a_version_1_finalized_payment_without_settle_after_is_due_at_once():
    # Given a PaymentFinalized of schema_version 1 whose optional settle_after is missing
    v1 = {
        "message_id": "m-1",
        "type": "PaymentFinalized",
        "schema_version": 1,
        "occurred_at": "2026-11-26T01:00:00Z",
        "correlation_id": ORDER,
        "causation_id": None,
        "data": {
            "payment_id": PAY,
            "order_id": ORDER,
            "amount": "39.98",
            "finalized_at": "2026-11-26T01:00:00Z",
        },
    }
    # When it is read, then it settles at its finalization time
    bare = from_wire(v1).data
    state = given(decider, [requested(), bare]).state
    assert isinstance(state, FinalizedPayment)
    assert payment.is_due_for_settlement(state, NOW)


# Compensation: discard until settled, refund after


def test_discarding_a_pending_payment():
    state = given(decider, PENDING).when(discard).then([discarded])
    assert state == DiscardedPayment(PAY, ORDER)


def test_discarding_a_finalized_unsettled_payment():
    state = given(decider, FINALIZED).when(discard).then([discarded])
    assert state == DiscardedPayment(PAY, ORDER)


def test_discarding_before_the_request_arrives_discards_in_advance():
    state = given(decider).when(discard).then([discarded])
    assert state == DiscardedPayment(PAY, ORDER)


def test_a_request_after_a_discard_in_advance_is_rejected():
    given(decider, DISCARDED_IN_ADVANCE).when(request()).then_rejects("discarded payment pay-1")


def test_discarding_a_settled_payment_is_an_event_not_a_rejection():
    state = (
        given(decider, SETTLED)
        .when(discard)
        .then([PaymentDiscardRejected(payment_id=PAY, order_id=ORDER, reason="already settled")])
    )
    assert state == SettledPayment(PAY, ORDER, AMOUNT)


def test_refunding_a_settled_payment_refunds_its_amount():
    state = given(decider, SETTLED).when(refund).then([refunded])
    assert state == RefundedPayment(PAY, ORDER, AMOUNT)


def test_a_payment_is_never_refunded_twice():
    given(decider, REFUNDED).when(refund).then_rejects("refunded payment pay-1")


def test_a_discarded_payment_is_never_refunded():
    given(decider, DISCARDED).when(refund).then_rejects("discarded payment pay-1")


def test_a_late_settlement_after_a_discard_is_rejected():
    given(decider, DISCARDED).when(settle).then_rejects("discarded payment pay-1")


def test_a_command_for_another_payment_is_rejected():
    other = DiscardPayment(payment_id="pay-2", order_id=ORDER, reason="TimedOut")
    given(decider, FINALIZED).when(other).then_rejects("names payment pay-2, not pay-1")


# Refused


@pytest.mark.parametrize(
    ("history", "command", "reason"),
    [
        (PENDING, request(), "RequestPayment is not allowed on pending payment"),
        (FINALIZED, request(), "RequestPayment is not allowed on unsettled payment"),
        (SETTLED, request(), "RequestPayment is not allowed on settled payment"),
        (FAILED, request(), "RequestPayment is not allowed on failed payment"),
        (DISCARDED, request(), "RequestPayment is not allowed on discarded payment"),
        (DISCARDED_IN_ADVANCE, request(), "RequestPayment is not allowed on discarded payment"),
        (REFUNDED, request(), "RequestPayment is not allowed on refunded payment"),
        (NONE, settle, "SettlePayment is not allowed on a payment that was never requested"),
        (PENDING, settle, "SettlePayment is not allowed on pending payment"),
        (SETTLED, settle, "SettlePayment is not allowed on settled payment"),
        (FAILED, settle, "SettlePayment is not allowed on failed payment"),
        (DISCARDED, settle, "SettlePayment is not allowed on discarded payment"),
        (REFUNDED, settle, "SettlePayment is not allowed on refunded payment"),
        (FAILED, discard, "DiscardPayment is not allowed on failed payment"),
        (DISCARDED, discard, "DiscardPayment is not allowed on discarded payment"),
        (DISCARDED_IN_ADVANCE, discard, "DiscardPayment is not allowed on discarded payment"),
        (REFUNDED, discard, "DiscardPayment is not allowed on refunded payment"),
        (NONE, refund, "RefundPayment is not allowed on a payment that was never requested"),
        (PENDING, refund, "RefundPayment is not allowed on pending payment"),
        (FINALIZED, refund, "RefundPayment is not allowed on unsettled payment"),
        (FAILED, refund, "RefundPayment is not allowed on failed payment"),
        (DISCARDED, refund, "RefundPayment is not allowed on discarded payment"),
        (REFUNDED, refund, "RefundPayment is not allowed on refunded payment"),
    ],
    ids=lambda value: getattr(value, "type", None),
)
def test_a_command_out_of_place_is_rejected(history, command, reason):
    given(decider, history).when(command).then_rejects(reason)


# Evolve


def test_a_command_rejection_does_not_change_the_payment():
    rejected = CommandRejected(command_type="RefundPayment", command_message_id="m", reason="no")
    assert given(decider, [*FINALIZED, rejected]).state == given(decider, FINALIZED).state


def test_events_that_do_not_apply_leave_the_payment_unchanged():
    assert payment.evolve(NoPayment(), settled) == NoPayment()
    assert payment.evolve(SettledPayment(PAY, ORDER, AMOUNT), discarded) == SettledPayment(
        PAY, ORDER, AMOUNT
    )
