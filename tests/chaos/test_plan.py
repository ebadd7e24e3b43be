"""The chaos profiles and their seeded fault plans (pure, no services)."""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace

import pytest

from tests.chaos.brokers import leader_counts, leading_most
from tests.chaos.plan import (
    BURST_SPAN_S,
    FIRST_KILL_S,
    MIN_GAP_S,
    PROFILES,
    make_plan,
    send_times,
    spread,
)
from tests.chaos.summary import pause_figures

WORKERS, RUNNERS = ["w1", "w2"], ["m1", "m2"]


def test_one_seed_makes_one_plan_and_another_seed_another() -> None:
    profile = PROFILES["long-outage"]
    first = make_plan(profile, 1234, WORKERS, RUNNERS)
    assert make_plan(profile, 1234, WORKERS, RUNNERS) == first
    assert make_plan(profile, 1235, WORKERS, RUNNERS) != first


@pytest.mark.parametrize("name", ["long-outage", "long-outage-short"])
def test_a_long_outage_outlasts_the_payment_and_shipment_timeouts(name: str) -> None:
    # Given a long-outage profile
    profile = PROFILES[name]
    assert profile.outage is not None

    # Then the broker stays down at least 60 s, longer than the timeouts its workers run with
    assert profile.outage.down_s >= 60
    assert profile.outlasts_timeouts()
    assert not PROFILES["classic"].outlasts_timeouts()


@pytest.mark.parametrize("name", ["long-outage", "long-outage-short"])
@pytest.mark.parametrize("seed", range(20))
def test_a_long_outage_kills_workers_and_runners_before_during_and_after_it(
    name: str, seed: int
) -> None:
    # Given a long-outage profile and any seed
    profile = PROFILES[name]

    # When the plan is made
    plan = make_plan(profile, seed, WORKERS, RUNNERS)

    # Then at least 8 worker kills and the runner kills are in it, on all three clocks
    victims = [kill.victim for kill in plan.kills]
    assert sum(v in WORKERS for v in victims) == profile.worker_kills >= 8
    assert sum(v in RUNNERS for v in victims) == profile.runner_kills > 0
    assert {kill.phase for kill in plan.kills} == {"before", "down", "after"}
    assert plan.broker_stop_at_s is not None
    for kill in plan.kills:
        if kill.phase == "before":
            assert FIRST_KILL_S <= kill.at_s < plan.broker_stop_at_s
        elif kill.phase == "down":
            assert kill.at_s < plan.down_s
        else:
            assert kill.at_s <= profile.after_span_s


def test_kills_on_one_clock_keep_their_distance() -> None:
    times = spread(random.Random(1), 6, 3.0, 20.0, MIN_GAP_S)
    assert times == sorted(times)
    assert all(b - a >= MIN_GAP_S - 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert times[0] >= 3.0 and times[-1] <= 20.0
    with pytest.raises(ValueError, match="do not fit"):
        spread(random.Random(1), 8, 3.0, 20.0, MIN_GAP_S)


def test_the_burst_goes_out_around_the_broker_stop_and_the_rest_at_the_rate() -> None:
    # Given the CI profile's plan for one seed
    profile = PROFILES["long-outage-short"]
    plan = make_plan(profile, 7, WORKERS, RUNNERS)
    assert plan.broker_stop_at_s is not None

    # When the send times are laid out
    times = send_times(profile, plan)

    # Then every order has one, the burst is around the stop, and the feed lasts its span
    before, after = BURST_SPAN_S
    stop = plan.broker_stop_at_s
    around = [t for t in times if stop - before <= t <= stop + after]
    assert len(times) == profile.orders and times == sorted(times)
    assert len(around) >= profile.burst
    assert times[-1] < profile.feed_s


@pytest.mark.parametrize("seed", range(20))
def test_the_cluster_profile_kills_the_leading_node_mid_run_and_processes_around_it(
    seed: int,
) -> None:
    # Given the cluster profile and any seed
    profile = PROFILES["cluster"]
    assert profile.on_cluster and profile.outage is not None
    assert profile.orders >= 5000 and profile.separate_modules

    # When the plan is made
    plan = make_plan(profile, seed, WORKERS, RUNNERS)

    # Then the node is killed mid-run, while carts are still fed, and started again later
    assert plan.broker_fault == "kill-leader" and plan.broker_stop_at_s is not None
    assert FIRST_KILL_S < plan.broker_stop_at_s < profile.feed_s / 2
    assert plan.down_s > 0
    assert "SIGKILL the node leading the most partitions" in plan.describe()[0]
    # and workers and runners are killed before, while it is down and after, as today
    victims = [kill.victim for kill in plan.kills]
    assert sum(v in WORKERS for v in victims) == profile.worker_kills > 0
    assert sum(v in RUNNERS for v in victims) == profile.runner_kills > 0
    assert {kill.phase for kill in plan.kills} == {"before", "down", "after"}


def test_only_the_cluster_profile_touches_cluster_nodes() -> None:
    assert [p.name for p in PROFILES.values() if p.on_cluster] == ["cluster"]
    assert not PROFILES["cluster"].outlasts_timeouts()
    assert make_plan(PROFILES["classic"], 1, WORKERS, RUNNERS).broker_fault == "stop"


def test_the_node_leading_the_most_partitions_is_the_victim() -> None:
    # Given leaders over the run's topics and Kafka's internal ones, not over other runs'
    partitions = {
        "t-1.carts.commands": [1, 2, 2],
        "__consumer_offsets": [2, 3],
        "t-0.old-run": [3, 3, 3, 3],
    }
    metadata = SimpleNamespace(
        topics={
            name: SimpleNamespace(
                partitions={n: SimpleNamespace(leader=b) for n, b in enumerate(leaders)}
            )
            for name, leaders in partitions.items()
        }
    )

    # When the leaders are counted
    counts = leader_counts(metadata, ("t-1.", "__consumer_offsets"))

    # Then node 2 leads the most of them; a tie goes to the lowest id
    assert counts == {1: 1, 2: 3, 3: 1}
    assert leading_most(counts, [1, 2, 3]) == 2
    assert leading_most(Counter({1: 2, 3: 2}), [1, 2, 3]) == 1


def test_the_pause_is_measured_from_the_kill_to_the_orders_ending_again() -> None:
    # Given orders ending every second, none from 40.5 s to 52 s, and a kill at 41 s
    ended = [float(t) for t in range(20, 41)] + [52.0, 52.5, 53.0]

    # When the pause is measured, the leaders having moved 9.5 s after the kill
    pause = pause_figures(41.0, 50.5, 70.0, ended)

    # Then the first order ended 11 s after the kill, in a gap of 12 s, the longest of the run
    assert pause["leaders_moved_s"] == 9.5
    assert pause["first_end_after_kill_s"] == 11.0
    assert pause["gap_around_kill_s"] == 12.0
    assert pause["longest_gap_s"] == 12.0 and pause["longest_gap_at_s"] == 40.0
    assert pause["ended_per_s_before"] == 1.0 and pause["ended_per_s_after"] == 0.0
    assert pause["node_back_s"] == 29.0


def test_a_pause_with_no_order_ending_after_the_kill_has_no_end() -> None:
    pause = pause_figures(41.0, None, None, [10.0, 20.0])
    assert pause["first_end_after_kill_s"] is None and pause["gap_around_kill_s"] is None
    assert pause["leaders_moved_s"] is None and pause["longest_gap_s"] == 10.0
