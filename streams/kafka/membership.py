"""A group join that the coordinator answers with REBALANCE_IN_PROGRESS is tried again.

aiokafka 0.14 takes that answer to a JoinGroup for an unexpected error: its coordination task
hands the error to the consumer's next fetch and waits until it is taken, which a Faust worker
that is still starting never does, so it never joins the group. A static member (every worker
is one) that rejoins while the group completes another rebalance gets that answer: in the
cluster chaos run (seed 202) a restarted worker stayed unready for good. Kafka's own client
joins again (KAFKA-10870); so does this one, after aiokafka's retry backoff.
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors
from aiokafka.consumer import group_coordinator

from streams.observability.logs import get_logger

log = get_logger("streams.kafka.membership")

REBALANCE_IN_PROGRESS = repr(errors.RebalanceInProgressError())
"""What aiokafka's join raises for that answer: a ``KafkaError`` of the error's repr."""

_aiokafka_perform_group_join = group_coordinator.CoordinatorGroupRebalance.perform_group_join


async def perform_group_join(rebalance: Any) -> Any:
    """aiokafka's join; ``None`` (join again after the backoff) when the group is rebalancing."""
    try:
        return await _aiokafka_perform_group_join(rebalance)
    except errors.KafkaError as error:
        if error.args != (REBALANCE_IN_PROGRESS,):
            raise
        log.info("join group: the group is rebalancing; joining again", group=rebalance.group_id)
        return None


def use_rejoin_on_rebalance() -> None:
    """Make aiokafka join again when a JoinGroup is answered REBALANCE_IN_PROGRESS."""
    group_coordinator.CoordinatorGroupRebalance.perform_group_join = perform_group_join
