"""Quarantine: a message that breaks one process parks that process, not its partition.

``step`` is the one entry point of the workers, replay and verify. It runs ``decide``
(``handle`` by default) and, when that raises, stores the message and the reason on the
process, which is then *quarantined*: every later message for it is parked behind the failing
one, in order, neither applied nor lost. Its timer stops. An operator answers with one of:

- ``ResumeProcess`` naming the failing message: it and then the parked ones are taken in
  again, in order (after a fix is deployed); one that fails again quarantines the process
  anew, and the rest stay parked behind it;
- ``SkipMessage`` naming the failing message: it is recorded as skipped (in the history and
  among the taken-in ids, so a redelivery is a duplicate), and the parked ones are taken in.

An action that names another message than the failing one is parked like any other message.

A fold of the log (replay, verify) must reach the live record whatever code it runs, also
after the bug was fixed. Each action names the message that failed before it, so
``as_logged`` makes a fold's ``decide`` fail a message as many times as actions name it, and
the fold parks, resumes and skips exactly as the worker did.

Released messages are taken in as of the operator's action (their time is the later of their
own and the action's): deadlines follow from when the process moves again, so one held for an
hour does not time out the moment it is resumed.

A message that breaks a process that does not exist yet (a ``CartFinalized`` that cannot
start one) has no record to be stored on: the outcome is ``failed``, and the edge
dead-letters it with the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final

from aggregates.messages import Envelope, ResumeProcess, SkipMessage
from process_manager.decider import Outcome, handle, note, record
from process_manager.process import Process, Quarantine
from process_manager.states import Timeouts

Decide = Callable[..., Outcome]
"""``handle``'s signature: ``(process, envelope, *, timeouts) -> Outcome``."""

MAX_REASON: Final = 500
"""How much of an exception's message a quarantine keeps."""


def step(
    process: Process | None, envelope: Envelope, *, timeouts: Timeouts, decide: Decide = handle
) -> Outcome:
    """``decide`` one message, with quarantine around it (see the module docstring)."""
    if process is not None and process.quarantine is not None:
        return _while_quarantined(process, process.quarantine, envelope, timeouts, decide)
    try:
        return decide(process, envelope, timeouts=timeouts)
    except Exception as error:  # a bug in one process must not stop its partition
        return _quarantine(process, envelope, reason_of(error))


class LoggedFailure(Exception):
    """A failure a fold repeats because the log shows an operator answered it."""


def as_logged(envelopes: Iterable[Envelope], decide: Decide = handle) -> Decide:
    """``decide`` for a fold of one order's ``envelopes``: it fails each message as many times
    as an operator's ``ResumeProcess`` or ``SkipMessage`` among them names it, then decides."""
    failures = Counter(
        e.data.message_id for e in envelopes if isinstance(e.data, ResumeProcess | SkipMessage)
    )

    def logged(process: Process | None, envelope: Envelope, **kwargs: Any) -> Outcome:
        if failures[envelope.message_id] > 0:
            failures[envelope.message_id] -= 1
            raise LoggedFailure("failed in the worker, as an operator's action in the log shows")
        return decide(process, envelope, **kwargs)

    return logged


def reason_of(error: BaseException) -> str:
    """The exception's type and the first line of its message: no traceback in the record."""
    said = str(error).strip().splitlines()
    return f"{type(error).__name__}: {said[0] if said else ''}"[:MAX_REASON]


def is_quarantined(process: Process | None) -> bool:
    return process is not None and process.quarantine is not None


def _quarantine(process: Process | None, envelope: Envelope, reason: str) -> Outcome:
    if process is None:
        try:
            process = note(None, envelope)
        except Exception:
            return Outcome("failed", None, (), reason)
    quarantine = Quarantine(message=envelope, reason=reason)
    parked = process.model_copy(update={"quarantine": quarantine})
    return Outcome("quarantined", parked, (), f"quarantined by {envelope.type}: {reason}")


def _while_quarantined(
    process: Process, quarantine: Quarantine, envelope: Envelope, timeouts: Timeouts, decide: Decide
) -> Outcome:
    held = {quarantine.message.message_id, *(p.message_id for p in quarantine.parked)}
    if envelope.message_id in process.applied:
        return Outcome("duplicate", process, process.owed, "message already applied")
    if envelope.message_id in held:
        return Outcome("duplicate", process, (), "message already parked")
    message = envelope.data
    failing = quarantine.message.message_id
    if isinstance(message, ResumeProcess) and message.message_id == failing:
        released = _released(process, envelope)
        held_messages = (quarantine.message, *quarantine.parked)
        return _take_in(released, held_messages, envelope.occurred_at, timeouts, decide)
    if isinstance(message, SkipMessage) and message.message_id == failing:
        released = _released(process, envelope, skipped=failing)
        return _take_in(released, quarantine.parked, envelope.occurred_at, timeouts, decide)
    parked = quarantine.model_copy(update={"parked": (*quarantine.parked, envelope)})
    return Outcome(
        "quarantined",
        process.model_copy(update={"quarantine": parked}),
        (),
        f"parked behind {quarantine.message.type} {quarantine.message.message_id}",
    )


def _released(process: Process, action: Envelope, skipped: str | None = None) -> Process:
    """``process`` out of quarantine, with the operator's action in its history (and the
    skipped message among its taken-in ids)."""
    released = process.model_copy(update={"quarantine": None})
    if skipped is not None:
        released = released.model_copy(update={"applied": (*released.applied, skipped)})
    return record(released, action, process.state, ())


def _take_in(
    process: Process,
    envelopes: Iterable[Envelope],
    at: datetime,
    timeouts: Timeouts,
    decide: Decide,
) -> Outcome:
    """Take ``envelopes`` in, in order, as of ``at``; the commands of every move are sent, and
    owed."""
    commands: list[Envelope] = []
    for envelope in envelopes:
        if envelope.occurred_at < at:
            envelope = envelope.model_copy(update={"occurred_at": at})
        outcome = step(process, envelope, timeouts=timeouts, decide=decide)
        if outcome.process is not None:
            process = outcome.process
        if outcome.kind == "applied":
            commands.extend(outcome.commands)
    if commands:
        process = process.model_copy(update={"owed": tuple(commands)})
    state = "quarantined again" if process.quarantine else "released"
    return Outcome("applied", process, tuple(commands), f"{state}; {len(commands)} commands")
