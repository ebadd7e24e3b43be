"""The demo drives carts only once every group is stable with the workers it was told of."""

from __future__ import annotations

from confluent_kafka import ConsumerGroupState

from streams.tools.demo import unsettled


def test_a_group_still_rebalancing_or_short_of_a_member_holds_the_demo_back() -> None:
    # Given one group settled, one rebalancing after a second runner joined, one with one member
    described = {
        "shop": (ConsumerGroupState.STABLE, 2),
        "shop-aggregates": (ConsumerGroupState.PREPARING_REBALANCING, 2),
        "shop-shipments": (ConsumerGroupState.STABLE, 1),
    }

    # When the demo asks which groups are not ready for two workers
    waiting = unsettled(described, workers=2)

    # Then the two that are not are named, with what they are instead
    assert waiting == {
        "shop-aggregates": "preparing_rebalancing, 2 member(s)",
        "shop-shipments": "stable, 1 member(s)",
    }


def test_every_group_stable_with_every_worker_lets_the_demo_drive() -> None:
    described = {
        "shop": (ConsumerGroupState.STABLE, 2),
        "shop-aggregates": (ConsumerGroupState.STABLE, 2),
    }
    assert unsettled(described, workers=2) == {}
