"""Quarantine: a message that breaks one process parks it, and an operator resumes or skips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aggregates.messages import Envelope, ResumeProcess, SkipMessage
from process_manager import Outcome, Process, State, as_logged, handle, step
from tests.unit.process_manager.scenario import HAPPY, LATER, ORDER, TIMEOUTS, envelope, given


class Bug(Exception):
    pass


def broken_for(*message_ids: str) -> Any:
    """``handle``, but raising for the messages of ``message_ids`` (a bug, since fixed or not)."""

    def decide(process: Process | None, cause: Envelope, **kwargs: Any) -> Outcome:
        if cause.message_id in message_ids:
            raise Bug("cannot price this\nline two")
        return handle(process, cause, **kwargs)

    return decide


def operator(message: ResumeProcess | SkipMessage, message_id: str) -> Envelope:
    return Envelope.wrap(
        message,
        message_id=message_id,
        occurred_at=LATER + timedelta(seconds=60),
        correlation_id=ORDER,
        causation_id=None,
    )


def resume(failing: str = "finalized", message_id: str = "resume") -> Envelope:
    return operator(
        ResumeProcess(order_id=ORDER, message_id=failing, requested_by="ops"), message_id
    )


def skip(skipped: str, message_id: str = "skip") -> Envelope:
    return operator(SkipMessage(order_id=ORDER, message_id=skipped, requested_by="ops"), message_id)


def paid_then_broken() -> tuple[Process, Envelope, Envelope]:
    """A process quarantined by its PaymentFinalized, and a PaymentSettled parked behind it."""
    process = given(*HAPPY[:2])
    finalized = envelope(process, "PaymentFinalized", message_id="finalized", at=LATER)
    outcome = step(process, finalized, timeouts=TIMEOUTS, decide=broken_for("finalized"))
    assert outcome.process is not None
    settled = envelope(process, "PaymentSettled", message_id="settled", at=LATER)
    parked = step(outcome.process, settled, timeouts=TIMEOUTS, decide=broken_for("finalized"))
    assert parked.process is not None
    return parked.process, finalized, settled


def test_a_raising_handler_quarantines_the_process_with_the_message_and_reason() -> None:
    # Given a process waiting for its payment
    process = given(*HAPPY[:2])
    finalized = envelope(process, "PaymentFinalized", message_id="finalized", at=LATER)

    # When the handler raises for the PaymentFinalized
    outcome = step(process, finalized, timeouts=TIMEOUTS, decide=broken_for("finalized"))

    # Then the process is quarantined with the message and the exception's first line, sends
    # nothing, and its state is untouched
    assert outcome.kind == "quarantined"
    assert outcome.commands == ()
    assert outcome.process is not None and outcome.process.quarantine is not None
    assert outcome.process.quarantine.message == finalized
    assert outcome.process.quarantine.reason == "Bug: cannot price this"
    assert outcome.process.state == State.AwaitingPayment
    assert "finalized" not in outcome.process.applied


def test_later_messages_are_parked_in_order_and_a_redelivery_is_not_parked_twice() -> None:
    # Given a quarantined process with a PaymentSettled parked behind the failing message
    process, finalized, settled = paid_then_broken()

    # When the failing and the parked messages are delivered again
    again = [step(process, e, timeouts=TIMEOUTS) for e in (finalized, settled)]

    # Then they are duplicates, and the parked messages keep their order
    assert [o.kind for o in again] == ["duplicate", "duplicate"]
    assert process.quarantine is not None
    assert [p.message_id for p in process.quarantine.parked] == ["settled"]


def test_resume_after_a_fix_takes_in_the_failing_and_the_parked_messages_in_order() -> None:
    # Given a quarantined process with a parked message
    process, _, _ = paid_then_broken()

    # When an operator resumes it with the fix deployed (handle no longer raises)
    outcome = step(process, resume(), timeouts=TIMEOUTS)

    # Then both messages are taken in, in order, and the commands of the move are sent
    assert outcome.kind == "applied"
    assert outcome.process is not None and outcome.process.quarantine is None
    assert outcome.process.state == State.RecordingPayment
    assert outcome.process.payment_settled
    assert [c.type for c in outcome.commands] == ["RecordOrderPayment"]
    assert outcome.process.owed == outcome.commands
    assert outcome.process.applied[-3:] == ("resume", "finalized", "settled")
    # And it equals the process that never broke, but for the resume in its history
    fine = given(*HAPPY[:2])
    for cause in ("finalized", "settled"):
        trigger = "PaymentFinalized" if cause == "finalized" else "PaymentSettled"
        done = handle(fine, envelope(fine, trigger, message_id=cause, at=LATER), timeouts=TIMEOUTS)
        assert done.process is not None
        fine = done.process
    assert outcome.process.state == fine.state
    # And its deadline runs from the resume, not from the messages' own (earlier) time
    resumed_at = LATER + timedelta(seconds=60)
    assert fine.deadline is not None and outcome.process.deadline is not None
    assert outcome.process.deadline - resumed_at == fine.deadline - LATER
    assert [h.message_type for h in outcome.process.history][-3:] == [
        "ResumeProcess",
        "PaymentFinalized",
        "PaymentSettled",
    ]


def test_resume_without_a_fix_quarantines_it_again_and_keeps_the_rest_parked() -> None:
    # Given a quarantined process whose bug is not fixed
    process, _, _ = paid_then_broken()

    # When an operator resumes it
    outcome = step(process, resume(), timeouts=TIMEOUTS, decide=broken_for("finalized"))

    # Then it is quarantined again on the same message, with the parked one still behind it
    assert outcome.process is not None and outcome.process.quarantine is not None
    assert outcome.process.quarantine.message.message_id == "finalized"
    assert [p.message_id for p in outcome.process.quarantine.parked] == ["settled"]
    assert outcome.commands == ()


def test_skip_records_the_failing_message_as_skipped_and_takes_in_the_parked_ones() -> None:
    # Given a quarantined process
    process, _, _ = paid_then_broken()

    # When an operator skips the failing message
    outcome = step(process, skip("finalized"), timeouts=TIMEOUTS, decide=broken_for("finalized"))

    # Then the process is out of quarantine, the skip is in its history, the failing message
    # counts as taken in (a redelivery is a duplicate), and the parked one was taken in
    assert outcome.process is not None and outcome.process.quarantine is None
    assert outcome.process.state == State.AwaitingPayment
    assert outcome.process.history[-1].message_type == "PaymentSettled"
    assert outcome.process.history[-2].message_type == "SkipMessage"
    assert "finalized" in outcome.process.applied
    assert outcome.process.payment_settled
    # a redelivery of the skipped message is a duplicate
    again = envelope(process, "PaymentFinalized", message_id="finalized", at=LATER)
    assert step(outcome.process, again, timeouts=TIMEOUTS).kind == "duplicate"


def test_a_skip_naming_another_message_is_parked_and_changes_nothing_else() -> None:
    # Given a quarantined process
    process, _, _ = paid_then_broken()

    # When an operator names a message that is not the failing one
    outcome = step(process, skip("settled"), timeouts=TIMEOUTS)

    # Then the process stays quarantined on its failing message
    assert outcome.kind == "quarantined"
    assert outcome.process is not None and outcome.process.quarantine is not None
    assert outcome.process.quarantine.message.message_id == "finalized"


def test_resume_of_a_process_that_is_not_quarantined_is_ignored_and_remembered() -> None:
    # Given a healthy process
    process = given(*HAPPY[:2])

    # When an operator resumes it
    outcome = step(process, resume(), timeouts=TIMEOUTS)

    # Then nothing moves, and the action's id is remembered
    assert outcome.kind == "ignored"
    assert outcome.process is not None and outcome.process.state == State.AwaitingPayment
    assert "resume" in outcome.process.applied


def test_a_cart_that_cannot_start_a_process_fails_for_the_dead_letters() -> None:
    # Given no process, and a CartFinalized whose handling raises before a record exists
    cart = envelope(None, "CartFinalized", message_id="cart", at=LATER)

    def decide(process: Process | None, cause: Envelope, **kwargs: Any) -> Outcome:
        raise Bug("no")

    # When it is stepped
    outcome = step(None, cart, timeouts=TIMEOUTS, decide=decide)

    # Then the process is quarantined on a bare record made from the cart
    assert outcome.kind == "quarantined"
    assert outcome.process is not None and outcome.process.order_id == ORDER
    assert outcome.process.quarantine is not None
    # And a message that cannot even make a bare record fails, for the dead letters
    other = envelope(given(*HAPPY[:1]), "OrderInitialized", message_id="init", at=LATER)
    failed = step(None, other, timeouts=TIMEOUTS, decide=decide)
    assert (failed.kind, failed.process) == ("failed", None)
    assert failed.reason == "Bug: no"


def live_and_folded(action: Envelope) -> tuple[Process, Process]:
    """The live process (broken by a bug, then ``action`` with the bug fixed) and a fold of the
    same log by code that never had the bug."""
    process, finalized, settled = paid_then_broken()
    live = step(process, action, timeouts=TIMEOUTS)
    start = given(*HAPPY[:2])
    inputs = [finalized, settled, action]
    decide = as_logged(inputs)
    folded: Process | None = start
    for cause in inputs:
        outcome = step(folded, cause, timeouts=TIMEOUTS, decide=decide)
        folded = outcome.process or folded
    assert live.process is not None and folded is not None
    return live.process, folded


def test_a_fold_of_the_log_resumes_as_the_worker_did_with_the_bug_fixed() -> None:
    # Given a live process quarantined by a bug and resumed once the bug was fixed
    # When the log is folded by code that never had the bug
    live, folded = live_and_folded(resume())

    # Then the fold reaches the live record, the resume included
    assert folded == live


def test_a_fold_of_the_log_skips_as_the_worker_did_with_the_bug_fixed() -> None:
    # Given a live process whose failing message an operator skipped
    # When the log is folded by code that never had the bug
    live, folded = live_and_folded(skip("finalized"))

    # Then the fold skipped it too, rather than applying it
    assert folded == live
    assert folded.state == State.AwaitingPayment
