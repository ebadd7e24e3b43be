"""The timer's deadline index: each passed deadline announced once, and nothing kept for ever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.process.deadlines import DeadlineIndex

T0 = datetime(2026, 11, 26, tzinfo=UTC)


def test_a_passed_deadline_is_announced_once_even_if_pushed_twice() -> None:
    index = DeadlineIndex()
    index.rebuild(frozenset({0}), [(b"a", T0), (b"b", T0 + timedelta(seconds=5))])
    index.push(b"a", T0)  # the same deadline written again (a noted fact)

    assert index.due(T0) == [(b"a", T0)]
    assert index.due(T0 + timedelta(seconds=1)) == []
    assert index.due(T0 + timedelta(seconds=5)) == [(b"b", T0 + timedelta(seconds=5))]


def test_announced_deadlines_are_forgotten_after_a_while() -> None:
    index = DeadlineIndex(remember_for=timedelta(minutes=1))
    index.rebuild(frozenset({0}), [(b"a", T0)])
    index.due(T0)
    assert (b"a", T0) in index.announced

    index.due(T0 + timedelta(minutes=2))

    assert index.announced == {}


def test_a_withheld_deadline_is_due_again_when_pushed_again() -> None:
    # Given a deadline that passed while its process was quarantined (the timer withheld it)
    index = DeadlineIndex()
    index.rebuild(frozenset({0}), [(b"a", T0)])
    assert index.due(T0) == [(b"a", T0)]
    index.withhold(b"a", T0)
    # When an operator releases the process and its record keeps that deadline
    index.push(b"a", T0)
    # Then the deadline is announced, once
    assert index.due(T0 + timedelta(seconds=1)) == [(b"a", T0)]
    assert index.due(T0 + timedelta(seconds=2)) == []


def test_a_superseded_deadline_is_not_announced() -> None:
    # Given a process that moved on before its first deadline passed
    index = DeadlineIndex()
    index.rebuild(frozenset({0}), [(b"a", T0)])
    index.push(b"a", T0 + timedelta(seconds=60))
    # When the first deadline passes
    due = index.due(T0 + timedelta(seconds=1))
    # Then nothing is announced (the table is not read for it); the new deadline is, in its time
    assert due == []
    assert index.due(T0 + timedelta(seconds=60)) == [(b"a", T0 + timedelta(seconds=60))]


def test_a_process_that_has_no_deadline_any_more_is_not_announced() -> None:
    # Given a process that ended (its record has no deadline) before its deadline passed
    index = DeadlineIndex()
    index.rebuild(frozenset({0}), [(b"a", T0)])
    index.push(b"a", None)
    # When the deadline passes
    # Then it is not announced, and the index forgets the process
    assert index.due(T0 + timedelta(seconds=1)) == []
    assert index.latest == {}
