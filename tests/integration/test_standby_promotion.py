"""A standby promoted to owner serves every process its partitions' changelog holds.

Found by the cluster chaos run (seed 101): Faust's end of recovery cleared the changelog records
a standby had fetched but not yet taken in, the standby took the next record as the next one,
and, once promoted, its store lacked every process in between (streams/kafka/recovery.py).
Here the standby takes in each changelog record 20 ms late, so the records fetched when its
partitions resume are still queued when that recovery ends, as on a busy machine. On a
busy machine it also failed when a fetch begun before the end of the active restore consumed
the standby's first records and Faust dropped them (streams/kafka/app.py, ``getmany``).
"""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.integration.flows import get_process
from tests.integration.harness import (
    Service,
    faust_worker,
    isolated_settings,
    produce,
    read_all,
    unique,
    wire,
)
from tests.integration.test_durable_commits import cart_finalized

pytestmark = pytest.mark.integration

OWNER_PORT, STANDBY_PORT = 16097, 16098
SLOW_CHANGELOG = {"ORDERFLOW_FAULT": "changelog_event_delay", "ORDERFLOW_FAULT_DELAY_S": "0.02"}


def test_a_promoted_standby_serves_every_process_of_its_partitions(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a worker that owns every partition, with 400 processes
    system, env = isolated_settings(settings)
    env |= {"WORKER_RUNS_MODULES": "false"}
    owner = faust_worker("streams.process.worker", env, tmp_path / "owner", OWNER_PORT)
    services.append(owner)
    owner.start()
    orders = [unique("order") for _ in range(400)]
    carts(system, orders)

    # And a second worker that joins, a standby of the first one's partitions, slow to take
    # in changelog records
    standby = faust_worker(
        "streams.process.worker", env | SLOW_CHANGELOG, tmp_path / "standby", STANDBY_PORT
    )
    services.append(standby)
    standby.start()
    wait_logged(standby, b"Worker ready", timeout=120)

    # When more processes are made on every partition, and the standby takes them in
    later = [unique("order") for _ in range(80)]
    carts(system, later, already=len(orders))
    time.sleep(15)

    # And the first worker is killed, so that the standby owns every partition
    owner.kill()

    # Then the promoted standby serves every process
    missing = set(orders + later)
    deadline = time.monotonic() + 120
    while missing and time.monotonic() < deadline:
        missing = {order_id for order_id in missing if not served(order_id)}
        time.sleep(1)
    assert not missing, f"{len(missing)} processes not served, e.g. {sorted(missing)[:3]}"


def carts(settings: Settings, orders: list[str], already: int = 0) -> None:
    """Finalized carts for ``orders``, and wait until each has its process (an InitOrder)."""
    produce(settings, settings.topic("carts.events"), [wire(cart_finalized(o)) for o in orders])
    expected = already + len(orders)
    sent = read_all(settings, settings.topic("orders.commands"), expected, timeout=120)
    assert len(sent) >= expected, f"{len(sent)} of {expected} processes made"


def served(order_id: str) -> bool:
    try:
        return get_process(STANDBY_PORT, order_id) is not None
    except (urllib.error.URLError, ConnectionError):
        return False


def wait_logged(service: Service, marker: bytes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while marker not in service.log_path.read_bytes():
        assert time.monotonic() < deadline, f"{marker!r} not logged:\n{service.tail()}"
        time.sleep(0.5)
