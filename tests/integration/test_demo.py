"""The demo against the process manager: its outcome table, read from the topics alone.

(``tests/integration/test_saga.py`` runs the same demo against the stateless saga.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.integration.harness import REPO, Service, faust_worker, isolated_settings

pytestmark = pytest.mark.integration

WEB_PORT = 16097
# A silent gateway times out after 15 s, as in `make demo`; payments settle late, so that
# every out-of-stock card_ok payment is discarded, not refunded, however loaded the machine is.
ENV = {"PROCESS_TIMEOUTS": '{"AwaitingPayment": 15}', "PAYMENT_SETTLEMENT_DELAY_S": "60"}


def test_the_demo_ends_every_order_as_the_contract_expects(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a worker running the process manager on fresh topics
    isolated, env = isolated_settings(settings)
    env |= ENV
    worker = faust_worker("streams.process.worker", env, tmp_path / "w", WEB_PORT)
    services.append(worker)
    worker.start()

    # When the demo drives 100 carts of its mix
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.demo", "--orders", "100", "--rate", "100"]
        + ["--quiet", "30", "--timeout", "240", "--workers", "1"],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=400,
    )

    # Then every order ended as the contract expects, each kind on one line
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every group stable with 1 member(s)" in result.stdout
    table = {
        tuple(re.split(r"\s{2,}", line.strip())) for line in result.stdout.splitlines() if line
    }
    assert {
        ("paid and shipped", "Completed", "80", "yes"),
        ("card declined", "Cancelled/PaymentFailed, payment failed", "7", "yes"),
        (
            "out of stock, payment discarded",
            "Cancelled/ProductWasOutOfStock, payment discarded",
            "5",
            "yes",
        ),
        (
            "out of stock, payment refunded",
            "Cancelled/ProductWasOutOfStock, payment refunded",
            "4",
            "yes",
        ),
        ("gateway silent, timed out", "Cancelled/TimedOut, payment discarded", "4", "yes"),
    } <= table
    assert "coordination: process" in result.stdout
    assert "ended: 100/100" in result.stdout
