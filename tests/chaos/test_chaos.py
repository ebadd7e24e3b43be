"""The short form of `make chaos` that CI runs: the same driver and the same checker."""

from __future__ import annotations

import os

import pytest

from tests.chaos.run import main

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ORDERS = os.environ.get("CHAOS_TEST_ORDERS", "800")


def test_every_process_ends_and_every_invariant_holds_through_kills_and_a_broker_restart() -> None:
    # Given two workers fed carts of every outcome at 40/s
    # When a random worker is killed with SIGKILL every 6 s and the broker restarts once
    exit_code = main(
        ["--orders", ORDERS, "--rate", "40", "--kill-every", "6", "--max-seconds", "420"]
    )

    # Then every process ended, and the independent checker and verify found nothing wrong
    assert exit_code == 0, "see the chaos report and the checker's findings above"
