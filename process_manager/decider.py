"""The order process as a pure decider: ``handle`` one message, ``resume`` after a crash.

``handle(process, envelope, timeouts=...)`` looks the pair (state, trigger) up in
``TRANSITIONS``. With a row, the process moves: ``evolve`` records the message's facts and
enters the next state with a new deadline, and ``react`` returns the row's commands as
envelopes. Before that, ``handle`` answers a duplicate and ignores what cannot concern the
process. Without a row the message is ``ignored`` (late, out of order, or not this
process's) and nothing changes; the edge logs it. One exception: a ``PaymentSettled`` with no
row is still noted on the record (``payment_settled``), without a move.

Crash recovery: a duplicate re-sends what is owed. Writing the process table and sending the
commands are not one atomic step at the edge (faust's exactly-once is not to be trusted), so
a crash in between loses the sends while the new state survives; the message is then
delivered again, and finds its id already applied. Rather than a separate recovery pass over
every process at start-up, ``handle`` answers every duplicate with ``resume(process)``: the
command envelopes of the last transition, kept on the record with their original
deterministic ids. Receivers drop ids they have seen, so re-sending is harmless, and the
commands of the current state are re-sent exactly when the broker says they may be missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from aggregates.messages import (
    CancellationReason,
    CartFinalized,
    CommandRejected,
    Envelope,
    OrderInitialized,
    PackageWasSent,
    PaymentFinalized,
    PaymentSettled,
    ProcessTimedOut,
)
from process_manager.commands import build, payment_id_of
from process_manager.process import MAX_APPLIED_IDS, MAX_HISTORY, HistoryEntry, Process, SentCommand
from process_manager.states import State, Timeouts, deadline_for
from process_manager.table import NOTED, REACTS_TO, TRANSITIONS, Table, trigger_of

OutcomeKind = Literal["applied", "duplicate", "ignored", "quarantined", "failed"]

COMPENSATING: Final = frozenset(
    {
        State.CancellingShipment,
        State.CancellingOrder,
        State.CancellingOrderWithPayment,
        State.DiscardingPayment,
        State.RefundingPayment,
        State.Cancelled,
    }
)
"""The states of a process whose cancellation has started. Only ``CancellingShipment`` can
still lead back to completion (the package went out before the cancellation reached it)."""

COMPLETING: Final = frozenset({State.Completing, State.Completed})
"""The states of a process whose order completes: it has no cancellation reason."""

CANCELLATION_REASONS: Final[dict[str, CancellationReason]] = {
    "PaymentFailed": "PaymentFailed",
    "ProductWasOutOfStock": "ProductWasOutOfStock",
    "ProcessTimedOut": "TimedOut",
    "CancelProcess": "ManualCancellation",
    "CommandRejected(SendPackage)": "ShipmentRefused",
}
"""The cancellation reason each trigger gives a process that is not yet cancelling."""


@dataclass(frozen=True)
class Outcome:
    """What ``handle`` decided: the process after the message and the commands to send.

    ``kind`` tells the edge what to log: ``applied`` (a transition or a noted fact: write the
    record, send ``commands``), ``duplicate`` (already taken in: send ``commands`` again, write
    nothing) or ``ignored`` (no transition and no command; the record only remembers the
    message id, so write it when it changed). ``process_manager.quarantine.step`` adds
    ``quarantined`` (the message broke the process or waits behind one that did: write the
    record) and ``failed`` (it broke a process that does not exist yet: dead-letter it).
    ``reason`` says why, for the log.
    """

    kind: OutcomeKind
    process: Process | None
    commands: tuple[Envelope, ...] = ()
    reason: str = ""


def handle(
    process: Process | None,
    envelope: Envelope,
    *,
    timeouts: Timeouts,
    table: Table = TRANSITIONS,
) -> Outcome:
    """Decide what ``envelope`` does to ``process`` (``None`` before the cart is finalized).

    ``table`` is ``TRANSITIONS`` everywhere but in a dry run of a candidate table.
    """
    if process is not None and envelope.message_id in process.applied:
        return Outcome("duplicate", process, tuple(resume(process)), "message already applied")
    if (why := _why_ignored(process, envelope)) is not None:
        return Outcome("ignored", _remember(process, envelope), (), why)
    state = None if process is None else process.state
    trigger = trigger_of(envelope.data)
    if (state, trigger) not in table:
        if process is not None and trigger in NOTED:
            noted = evolve(process, envelope, timeouts=timeouts, table=table)
            if noted != process:
                return Outcome("applied", record(noted, envelope, state, ()), (), "noted")
        return Outcome(
            "ignored", _remember(process, envelope), (), f"no transition for {trigger} in {state}"
        )
    moved = evolve(process, envelope, timeouts=timeouts, table=table)
    commands = react(process, envelope, moved, table=table)
    after = record(moved, envelope, state, commands, owed=commands)
    return Outcome("applied", after, commands, f"{trigger}: {state} -> {moved.state}")


def evolve(
    process: Process | None,
    envelope: Envelope,
    *,
    timeouts: Timeouts,
    table: Table = TRANSITIONS,
) -> Process:
    """``process`` after ``envelope``: the state move, and no command.

    With a row in ``TRANSITIONS``: the message's facts recorded (``note``), then the row's next
    state, with its deadline (the message's time plus the state's timeout), its cancellation
    reason and, for ``Escalated``, why. Without a row, a fact the process notes in any state
    (``NOTED``: a late ``PaymentSettled``) is recorded and the state stays; anything else
    changes nothing.
    """
    state = None if process is None else process.state
    trigger = trigger_of(envelope.data)
    transition = table.get((state, trigger))
    if transition is None:
        if process is not None and trigger not in NOTED:
            return process
        return note(process, envelope)  # a noted fact (without a process: ValueError)
    move = {
        "state": transition.next,
        "deadline": deadline_for(transition.next, envelope.occurred_at, timeouts),
        "cancellation_reason": _reason(state, transition.next, trigger, process),
    }
    # one copy for the facts and the move (a copy is most of a decision's time)
    if process is None:
        moved = note(process, envelope).model_copy(update=move)
    else:
        moved = process.model_copy(update={**_facts(process, envelope), **move})
    if transition.next == State.Escalated:
        moved = moved.model_copy(update={"escalation": _escalation(moved, state, envelope)})
    return moved


def react(
    process: Process | None, envelope: Envelope, moved: Process, *, table: Table = TRANSITIONS
) -> tuple[Envelope, ...]:
    """The commands ``envelope`` makes ``process`` send: its row's, built for ``moved`` (the
    process after ``evolve``) with ids derived from ``envelope``; none without a row."""
    state = None if process is None else process.state
    transition = table.get((state, trigger_of(envelope.data)))
    if transition is None:
        return ()
    return tuple(build(command, moved, envelope) for command in transition.commands)


def _reason(
    state: State | None, next_state: State, trigger: str, process: Process | None
) -> CancellationReason | None:
    """The cancellation reason after a move: set by the move that starts compensating, and
    cleared by a move to completion (the package went out first: the order is not cancelled)."""
    reason = None if process is None else process.cancellation_reason
    if next_state in COMPLETING:
        return None
    if reason is None and state not in COMPENSATING and next_state in COMPENSATING:
        return CANCELLATION_REASONS.get(trigger)
    return reason


def _escalation(process: Process, state: State | None, cause: Envelope) -> str:
    """Why ``cause`` left ``process`` to an operator, for the record and the views."""
    message = cause.data
    if isinstance(message, CommandRejected):
        return (
            f"CommandRejected {cause.message_id} of {message.command_type} arrived in {state} "
            f"(cancellation reason {process.cancellation_reason}): {message.reason}; whether "
            "the goods went out is unknown; an operator settles the order and its payment"
        )
    what: str = message.type
    if isinstance(message, PackageWasSent):
        what = f"PackageWasSent (package {message.package_id})"
    return (
        f"{what} {cause.message_id} arrived in {state} (cancellation reason "
        f"{process.cancellation_reason}): the goods went out for an order being cancelled; "
        "an operator settles the order and its payment"
    )


def resume(process: Process) -> list[Envelope]:
    """The commands still owed in the current state, with the ids they were first sent with."""
    return list(process.owed)


def note(process: Process | None, envelope: Envelope) -> Process:
    """``process`` with the facts of ``envelope`` recorded; state and deadline stay as they are.

    Only a ``CartFinalized`` starts a process (in ``AwaitingOrder``, without a deadline yet).
    """
    message = envelope.data
    if process is None:
        if not isinstance(message, CartFinalized):
            raise ValueError(f"{message.type} cannot start a process")
        return Process(
            order_id=message.cart_id,
            state=State.AwaitingOrder,
            deadline=None,
            client_id=message.client_id,
            product_items=message.product_items,
            total_price=message.total_price,
            currency=message.currency,
            payment_method=message.payment_method,
        )
    facts = _facts(process, envelope)
    return process.model_copy(update=facts) if facts else process


def _facts(process: Process, envelope: Envelope) -> dict[str, Any]:
    """The fields ``note`` changes."""
    match envelope.data:
        case OrderInitialized():
            return {"payment_id": payment_id_of(envelope)}
        case PaymentFinalized(finalized_at=finalized_at):
            return {"payment_finalized_at": finalized_at}
        case PaymentSettled():
            return {"payment_settled": True}
    return {}


def _remember(process: Process | None, cause: Envelope) -> Process | None:
    """``process`` taking ``cause`` in without a move, so that its redelivery is a duplicate.

    Without this, a message ignored in one state could be applied when it is delivered again
    in a later state, and the process would depend on how often the broker delivered it.
    A ``ProcessTimedOut`` needs no remembering: whether it is due depends on its own deadline
    and time only, so an ignored one stays ignored (and one that came early is not shut out).
    Nor does a type the process never reacts to (``REACTS_TO``), which workers skip unread.
    """
    if process is None or cause.type not in REACTS_TO or isinstance(cause.data, ProcessTimedOut):
        return process
    return process.model_copy(
        update={"applied": (*process.applied, cause.message_id)[-MAX_APPLIED_IDS:]}
    )


def record(
    process: Process,
    cause: Envelope,
    from_state: State | None,
    commands: tuple[Envelope, ...],
    **changes: Any,
) -> Process:
    """``process`` (with ``changes``) having applied ``cause``: its id and history entry."""
    entry = HistoryEntry(
        message_id=cause.message_id,
        message_type=cause.type,
        from_state=from_state,
        to_state=process.state,
        at=cause.occurred_at,
        commands=tuple(SentCommand(message_id=c.message_id, type=c.type) for c in commands),
    )
    return process.model_copy(
        update={
            **changes,
            "applied": (*process.applied, cause.message_id)[-MAX_APPLIED_IDS:],
            "history": (*process.history, entry)[-MAX_HISTORY:],
        }
    )


def _why_ignored(process: Process | None, envelope: Envelope) -> str | None:
    """Why ``envelope`` cannot concern ``process`` whatever its state, or ``None``."""
    message = envelope.data
    if process is None:
        return None if isinstance(message, CartFinalized) else "no process for this order"
    order_id = getattr(message, "order_id", None)
    if isinstance(order_id, str) and order_id != process.order_id:
        return f"it belongs to order {order_id}, not {process.order_id}"
    payment_id = getattr(message, "payment_id", None)
    if isinstance(payment_id, str) and payment_id != process.payment_id:
        return f"payment {payment_id} is not this process's payment ({process.payment_id})"
    if isinstance(message, ProcessTimedOut) and not _is_due(process, message, envelope):
        return f"stale timeout: deadline {message.deadline}, process deadline {process.deadline}"
    if isinstance(message, CommandRejected) and message.command_message_id not in {
        owed.message_id for owed in process.owed
    }:
        return f"it rejects command {message.command_message_id}, which is not owed now"
    return None


def _is_due(process: Process, timeout: ProcessTimedOut, envelope: Envelope) -> bool:
    """Whether ``timeout`` names the current deadline and that deadline has passed."""
    deadline = process.deadline
    if deadline is None or timeout.deadline != deadline:
        return False
    return envelope.occurred_at >= deadline
