"""The chaos profiles and their seeded fault plans (pure, no services)."""

from __future__ import annotations

import random

import pytest

from tests.chaos.plan import (
    BURST_SPAN_S,
    FIRST_KILL_S,
    MIN_GAP_S,
    PROFILES,
    make_plan,
    send_times,
    spread,
)

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
