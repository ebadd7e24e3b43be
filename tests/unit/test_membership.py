"""A JoinGroup answered REBALANCE_IN_PROGRESS is joined again; any other error still ends it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors

from streams.kafka import membership


def join_raising(error: Exception) -> Any:
    async def join(rebalance: Any) -> Any:
        raise error

    return join


def test_a_join_answered_rebalance_in_progress_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given aiokafka's join raising what it raises for REBALANCE_IN_PROGRESS
    answer = errors.KafkaError(repr(errors.RebalanceInProgressError()))
    monkeypatch.setattr(membership, "_aiokafka_perform_group_join", join_raising(answer))

    # When the worker's join runs
    result = asyncio.run(membership.perform_group_join(SimpleNamespace(group_id="g")))

    # Then it asks to join again instead of ending the coordination
    assert result is None


def test_a_join_that_fails_otherwise_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = errors.KafkaError(repr(errors.InvalidSessionTimeoutError()))
    monkeypatch.setattr(membership, "_aiokafka_perform_group_join", join_raising(answer))

    with pytest.raises(errors.KafkaError):
        asyncio.run(membership.perform_group_join(SimpleNamespace(group_id="g")))
