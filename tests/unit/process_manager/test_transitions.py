"""Every row of the transition table, given/when/then, and every row arriving twice."""

from __future__ import annotations

import pytest

from aggregates.messages import MESSAGE_TYPES, deterministic_id
from process_manager import TRANSITIONS, State, Transition, evolve, handle, is_terminal, react
from process_manager.commands import BUILDERS
from process_manager.decider import COMPENSATING
from process_manager.states import deadline_for
from tests.unit.process_manager.scenario import (
    LATER,
    ORDER,
    PATH_TO,
    TIMEOUTS,
    envelope,
    given_state,
    remembered,
    when,
)

ROWS = [
    pytest.param(state, trigger, row, id=f"{state}-{trigger}")
    for (state, trigger), row in TRANSITIONS.items()
]


@pytest.mark.parametrize(("state", "trigger", "row"), ROWS)
def test_each_row_moves_to_its_state_and_sends_its_commands(
    state: State | None, trigger: str, row: Transition
) -> None:
    process = given_state(state)

    outcome = when(process, trigger, message_id="cause")

    assert outcome.kind == "applied", outcome.reason
    assert outcome.process is not None
    assert outcome.process.state == row.next
    assert tuple(c.type for c in outcome.commands) == row.commands
    at = outcome.process.history[-1].at
    assert outcome.process.deadline == deadline_for(row.next, at, TIMEOUTS)
    for command in outcome.commands:
        assert command.message_id == deterministic_id("cause", command.type)
        assert command.causation_id == "cause"
        assert command.correlation_id == ORDER
        assert command.occurred_at == at
    assert outcome.process.owed == outcome.commands
    assert outcome.process.history[-1].from_state == state


@pytest.mark.parametrize(("state", "trigger", "row"), ROWS)
def test_each_row_arriving_twice_changes_nothing_and_resends_the_same_commands(
    state: State | None, trigger: str, row: Transition
) -> None:
    process = given_state(state)
    cause = envelope(process, trigger, message_id="cause", at=LATER)
    first = handle(process, cause, timeouts=TIMEOUTS)

    again = handle(first.process, cause, timeouts=TIMEOUTS)

    assert again.kind == "duplicate"
    assert again.process == first.process
    assert [c.message_id for c in again.commands] == [c.message_id for c in first.commands]
    assert again.commands == first.commands


@pytest.mark.parametrize(("state", "trigger", "row"), ROWS)
def test_each_row_arriving_again_under_another_id_changes_nothing(
    state: State | None, trigger: str, row: Transition
) -> None:
    process = given_state(state)
    cause = envelope(process, trigger, message_id="cause", at=LATER)
    first = handle(process, cause, timeouts=TIMEOUTS)

    again = handle(
        first.process, cause.model_copy(update={"message_id": "other"}), timeouts=TIMEOUTS
    )

    assert again.kind == "ignored"
    # only its id is taken in (a timeout, whose relevance is its own deadline, not even that)
    taken_in = first.process if trigger == "ProcessTimedOut" else remembered(first.process, "other")
    assert again.process == taken_in
    assert again.commands == ()


def test_every_state_is_reached_by_the_scenarios() -> None:
    assert set(PATH_TO) == {None, *State}
    for state, path in PATH_TO.items():
        if state is not None:
            assert given_state(state) is not None
            assert len(path) > 0


def test_every_command_in_the_table_has_a_builder_and_is_a_wire_type() -> None:
    commands = {c for row in TRANSITIONS.values() for c in row.commands}
    assert commands == set(BUILDERS)
    assert commands <= set(MESSAGE_TYPES)


def test_every_trigger_is_a_wire_type_or_a_rejection_of_a_command_the_process_sends() -> None:
    for _, trigger in TRANSITIONS:
        if trigger.startswith("CommandRejected("):
            assert trigger.removeprefix("CommandRejected(").removesuffix(")") in BUILDERS
        else:
            assert trigger in MESSAGE_TYPES


def test_every_non_terminal_state_has_a_timeout_and_a_way_out() -> None:
    for state in State:
        if is_terminal(state):
            continue
        assert (state, "ProcessTimedOut") in TRANSITIONS, state
        assert any(s == state and row.next != state for (s, _), row in TRANSITIONS.items())


def test_completed_cancelled_and_escalated_are_the_terminal_states() -> None:
    assert {state for state in State if is_terminal(state)} == {
        State.Completed,
        State.Cancelled,
        State.Escalated,
    }


def test_completed_and_escalated_have_no_way_out() -> None:
    assert not any(state in {State.Completed, State.Escalated} for state, _ in TRANSITIONS)


def test_a_package_sent_is_never_ignored_once_a_cancellation_has_started() -> None:
    # Given every state a cancellation passes through, when a PackageWasSent arrives there
    sent = {
        state: row.next
        for (state, trigger), row in TRANSITIONS.items()
        if trigger == "PackageWasSent"
    }

    # Then it has a row: the order completes while the shipment module is asked, and an
    # operator is called in any later state
    assert set(sent) >= COMPENSATING
    assert sent[State.CancellingShipment] == State.Completing
    assert {sent[state] for state in COMPENSATING - {State.CancellingShipment}} == {State.Escalated}


def test_a_process_that_may_have_sent_its_package_asks_the_shipment_module_to_cancel() -> None:
    # Given a process waiting for its package, when it times out or an operator cancels it
    for trigger in ("ProcessTimedOut", "CancelProcess"):
        # Then it cancels the shipment, not the order: the shipment module decides
        assert TRANSITIONS[(State.AwaitingShipment, trigger)] == (
            State.CancellingShipment,
            ("CancelShipment",),
        )


def test_every_state_but_completing_can_be_cancelled_by_an_operator_until_it_cancels() -> None:
    forward = {
        State.AwaitingOrder,
        State.AwaitingPayment,
        State.RecordingPayment,
        State.AwaitingShipment,
    }
    assert {state for state, trigger in TRANSITIONS if trigger == "CancelProcess"} == forward


@pytest.mark.parametrize(("state", "trigger", "row"), ROWS)
def test_evolve_moves_each_row_without_commands_and_react_gives_the_row_commands(
    state: State | None, trigger: str, row: Transition
) -> None:
    process = given_state(state)
    cause = envelope(process, trigger, message_id="cause", at=LATER)

    moved = evolve(process, cause, timeouts=TIMEOUTS)
    commands = react(process, cause, moved)

    assert moved.state == row.next
    assert moved.deadline == deadline_for(row.next, cause.occurred_at, TIMEOUTS)
    assert moved.owed == (process.owed if process else ())  # evolve sends nothing
    assert tuple(c.type for c in commands) == row.commands
    handled = handle(process, cause, timeouts=TIMEOUTS)
    assert handled.commands == commands
    assert handled.process is not None and handled.process.state == moved.state
