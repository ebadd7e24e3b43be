"""The short form of the long-outage chaos profile, which CI runs: the same driver and the
same checker as `make chaos PROFILE=long-outage`, in about 3 minutes (see tests/chaos/plan.py
for its parameters). ``CHAOS_TEST_SEED`` repeats a run; otherwise the seed is random and
printed."""

from __future__ import annotations

import os

import pytest

from tests.chaos.run import main

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SEED = os.environ.get("CHAOS_TEST_SEED")


def test_every_process_ends_and_every_invariant_holds_through_kills_and_a_long_outage() -> None:
    # Given two workers and two module runners fed carts of every outcome at 3/s
    # When workers and runners are killed with SIGKILL before, during and after a broker
    # outage of 62 s, longer than the payment and shipment timeouts the workers run with
    exit_code = main(["--profile", "long-outage-short", *(["--seed", SEED] if SEED else [])])

    # Then every process ended, and the independent checker and verify found nothing wrong
    assert exit_code == 0, "see the chaos summary and the checker's findings above"
