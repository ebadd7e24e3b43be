"""The payment, with a simulated gateway whose answer is a pure function of the payment method.

- ``card_ok``: finalized now, settled by ``SettlePayment`` after the settlement delay.
- ``card_declined``: failed.
- ``card_no_response``: requested, and the gateway never answers.
- ``card_settles_immediately``: finalized and settled at once.

A finalized payment can be discarded until it settles; after that it must be refunded.
It is never both discarded and refunded, and never refunded twice. A discard that arrives
before the request discards the payment in advance, so the late request is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from aggregates.decider import Decider, Rejected
from aggregates.messages import (
    DiscardPayment,
    PaymentCommand,
    PaymentDiscarded,
    PaymentDiscardRejected,
    PaymentEvent,
    PaymentFailed,
    PaymentFinalized,
    PaymentMethod,
    PaymentRefunded,
    PaymentRequested,
    PaymentSettled,
    RefundPayment,
    RequestPayment,
    SettlePayment,
)


@dataclass(frozen=True)
class Context:
    """What ``decide`` takes from outside: the time of the command and the settlement delay."""

    now: datetime
    settlement_delay: timedelta


@dataclass(frozen=True)
class NoPayment:
    """No payment has been requested or discarded here."""


@dataclass(frozen=True)
class PendingPayment:
    """Requested; the gateway has not answered (and, for ``card_no_response``, never will)."""

    payment_id: str
    order_id: str
    amount: Decimal
    payment_method: PaymentMethod


@dataclass(frozen=True)
class FinalizedPayment:
    """Authorised but not yet settled: it can still be discarded."""

    payment_id: str
    order_id: str
    amount: Decimal
    finalized_at: datetime
    settle_after: datetime


@dataclass(frozen=True)
class SettledPayment:
    payment_id: str
    order_id: str
    amount: Decimal


@dataclass(frozen=True)
class FailedPayment:
    payment_id: str
    order_id: str
    reason: str


@dataclass(frozen=True)
class DiscardedPayment:
    payment_id: str
    order_id: str


@dataclass(frozen=True)
class RefundedPayment:
    payment_id: str
    order_id: str
    amount: Decimal


Payment = (
    NoPayment
    | PendingPayment
    | FinalizedPayment
    | SettledPayment
    | FailedPayment
    | DiscardedPayment
    | RefundedPayment
)

initial_state: Payment = NoPayment()


def decide(command: PaymentCommand, state: Payment, *, context: Context) -> list[PaymentEvent]:
    """The events ``command`` causes on ``state``; raises ``Rejected`` when it is refused."""
    if not isinstance(state, NoPayment) and state.payment_id != command.payment_id:
        raise Rejected(f"{command.type} names payment {command.payment_id}, not {state.payment_id}")
    match state, command:
        case NoPayment(), RequestPayment():
            return _gateway(command, context)
        case FinalizedPayment(payment_id, order_id), SettlePayment():
            return [PaymentSettled(payment_id=payment_id, order_id=order_id)]
        case NoPayment() | PendingPayment() | FinalizedPayment(), DiscardPayment():
            return [PaymentDiscarded(payment_id=command.payment_id, order_id=command.order_id)]
        case SettledPayment(payment_id, order_id), DiscardPayment():
            return [
                PaymentDiscardRejected(
                    payment_id=payment_id, order_id=order_id, reason="already settled"
                )
            ]
        case SettledPayment(payment_id, order_id, amount), RefundPayment():
            return [PaymentRefunded(payment_id=payment_id, order_id=order_id, amount=amount)]
        case _:
            raise Rejected(f"{command.type} is not allowed on {_describe(state)}")


def evolve(state: Payment, event: PaymentEvent) -> Payment:
    """The payment after ``event``; events that do not apply leave it unchanged."""
    match state, event:
        case NoPayment(), PaymentRequested():
            return PendingPayment(
                event.payment_id, event.order_id, event.amount, event.payment_method
            )
        case PendingPayment(), PaymentFinalized(finalized_at=finalized_at, settles_at=settles_at):
            return FinalizedPayment(
                event.payment_id, event.order_id, event.amount, finalized_at, settles_at
            )
        case PendingPayment(), PaymentFailed():
            return FailedPayment(event.payment_id, event.order_id, event.reason)
        case FinalizedPayment(payment_id, order_id, amount), PaymentSettled():
            return SettledPayment(payment_id, order_id, amount)
        case NoPayment() | PendingPayment() | FinalizedPayment(), PaymentDiscarded():
            return DiscardedPayment(event.payment_id, event.order_id)
        case SettledPayment(payment_id, order_id, amount), PaymentRefunded():
            return RefundedPayment(payment_id, order_id, amount)
        case _:
            return state


def decider(context: Context) -> Decider[PaymentCommand, Payment, PaymentEvent]:
    """The payment decider for one command, with its time and settlement delay bound."""

    def decide_in_context(command: PaymentCommand, state: Payment) -> list[PaymentEvent]:
        return decide(command, state, context=context)

    return Decider(decide_in_context, evolve, initial_state)


def is_due_for_settlement(state: Payment, now: datetime) -> bool:
    """Whether the settlement timer should send ``SettlePayment`` for this payment now."""
    return isinstance(state, FinalizedPayment) and state.settle_after <= now


def _gateway(command: RequestPayment, context: Context) -> list[PaymentEvent]:
    payment_id, order_id, amount = command.payment_id, command.order_id, command.amount
    requested = PaymentRequested(
        payment_id=payment_id,
        order_id=order_id,
        amount=amount,
        payment_method=command.payment_method,
    )

    def finalized(delay: timedelta) -> PaymentFinalized:
        return PaymentFinalized(
            payment_id=payment_id,
            order_id=order_id,
            amount=amount,
            finalized_at=context.now,
            settles_at=context.now + delay,
        )

    match command.payment_method:
        case "card_ok":
            return [requested, finalized(context.settlement_delay)]
        case "card_declined":
            return [
                requested,
                PaymentFailed(payment_id=payment_id, order_id=order_id, reason="card_declined"),
            ]
        case "card_no_response":
            return [requested]
        case "card_settles_immediately":
            settled = PaymentSettled(payment_id=payment_id, order_id=order_id)
            return [requested, finalized(timedelta(0)), settled]


def _describe(state: Payment) -> str:
    match state:
        case NoPayment():
            return "a payment that was never requested"
        case PendingPayment(payment_id=payment_id):
            return f"pending payment {payment_id}"
        case FinalizedPayment(payment_id=payment_id):
            return f"unsettled payment {payment_id}"
        case SettledPayment(payment_id=payment_id):
            return f"settled payment {payment_id}"
        case FailedPayment(payment_id=payment_id):
            return f"failed payment {payment_id}"
        case DiscardedPayment(payment_id=payment_id):
            return f"discarded payment {payment_id}"
        case RefundedPayment(payment_id=payment_id):
            return f"refunded payment {payment_id}"
