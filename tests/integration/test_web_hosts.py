"""The web view across hosts: two workers, each in a network namespace of its own, on the same
port, against a cluster in namespaces. GET /processes/{id}/ is routed to the worker that owns
the order, and the list and stats fan out over both.

The cluster (its own data, bridge ``ofwbr`` on 10.79.0.0/24) is started and stopped here by
``deploy/kafka/cluster.sh``; the workers' hosts are ``cluster.sh host 1`` and ``host 2``. The
workers reach Kafka only; the module runner runs on this host, beside PostgreSQL
(WORKER_RUNS_MODULES=false). Network namespaces need root, as CI has: without them this fails.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.kafka.admin import ensure_topics
from streams.settings import Settings
from tests.integration.flows import place_order, stock
from tests.integration.harness import REPO, Service, faust_worker, module_runner, unique
from tests.integration.test_web import eventually

pytestmark = pytest.mark.integration

CLUSTER = REPO / "deploy" / "kafka" / "cluster.sh"
# Names of this test's own: another cluster on the machine (make up BROKERS=3) keeps its own.
NETWORK = {"CLUSTER_NAME": "ofw", "CLUSTER_SUBNET": "10.79.0", "CLUSTER_NET": "netns"}
WEB_PORT = 16140  # the same on both hosts: only their addresses tell them apart
ORDERS_PER_WORKER = 3


@dataclass
class Hosts:
    settings: Settings
    env: dict[str, str]  # the workers' and the runner's environment
    cluster_env: dict[str, str]  # what cluster.sh exec needs to find the namespaces
    addresses: list[str]  # the workers' hosts


def http(host: str, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{host}:{WEB_PORT}{path}", timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def get_json(host: str, path: str) -> Any:
    status, body = http(host, path)
    assert status == 200, f"GET {path} on {host}: {status} {body}"
    return body


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    assert os.geteuid() == 0, "workers on hosts of their own need root (ip netns), as CI has"
    data = tmp_path_factory.mktemp("hosts-cluster")
    cluster_env = {**NETWORK, "CLUSTER_DIR": str(data)}
    script_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_")},
        **cluster_env,
        "BROKERS": "3",
        "KAFKA_HEAP": "512m",
        "PYTHONPATH": str(REPO),
    }

    def cluster(*command: str) -> str:
        done = subprocess.run(
            ["bash", str(CLUSTER), *command],
            env=script_env,
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert done.returncode == 0, f"cluster.sh {' '.join(command)}: {done.stderr}"
        return done.stdout.strip()

    try:
        cluster("start")
        bootstrap = cluster("bootstrap")
        addresses = [cluster("host", str(k)) for k in (1, 2)]
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TOPIC_PREFIX": unique("t") + ".",
            "APP_ID": unique("app"),
            "WORKER_RUNS_MODULES": "false",
            # No settlement within the test: a PaymentSettled would change a completed record
            # between the owner's answer and the other worker's.
            "PAYMENT_SETTLEMENT_DELAY_S": "600",
        }
        settings = Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
        ensure_topics(settings)
        yield Hosts(settings, env, cluster_env, addresses)
    finally:
        cluster("stop")


def worker_on(hosts: Hosts, k: int, data_dir: Path) -> Service:
    """A worker in namespace ``k``, bound to its address there."""
    return faust_worker(
        "streams.process.worker",
        hosts.env | hosts.cluster_env,
        data_dir,
        WEB_PORT,
        bind=hosts.addresses[k - 1],
        launcher=("bash", str(CLUSTER), "exec", str(k)),
    )


def orders_owned_by(settings: Settings, partitions: set[int], count: int) -> list[str]:
    """Order ids whose key falls on ``partitions`` (murmur2, as Kafka's and Faust's)."""
    found: list[str] = []
    every = list(range(settings.topic_partitions))
    while len(found) < count:
        order_id = unique("order")
        if DefaultPartitioner()(order_id.encode(), every, every) in partitions:
            found.append(order_id)
    return found


def test_each_worker_routes_to_the_other_host_and_fans_out_over_both(
    hosts: Hosts, services: list[Service], tmp_path: Path
) -> None:
    # Given two workers on hosts of their own, and the module runner on this one
    a, b = hosts.addresses
    runner = module_runner(hosts.env, tmp_path / "m", "carts,orders,payments,shipments,outbox")
    workers = [worker_on(hosts, k, tmp_path / f"w{k}") for k in (1, 2)]
    services += [runner, *workers]
    runner.start()
    for worker in workers:
        worker.start()
    eventually(
        lambda: all(http(h, "/processes/")[0] == 200 for h in (a, b)) or None,
        "both workers serving the list across hosts",
        60,
    )
    owned = {h: set(get_json(h, "/processes/?local=true")["partitions"]) for h in (a, b)}
    assert owned[a] and owned[b] and not owned[a] & owned[b], owned

    # When orders owned by each worker are placed and complete
    sku = unique("sku")
    stock(hosts.settings, {sku: 100})
    owner = {
        order_id: h
        for h in (a, b)
        for order_id in orders_owned_by(hosts.settings, owned[h], ORDERS_PER_WORKER)
    }
    for order_id in owner:
        place_order(hosts.settings, order_id, "card_ok", [(sku, 1)])

    def completed_at_owner(order_id: str) -> dict[str, Any] | None:
        status, body = http(owner[order_id], f"/processes/{order_id}/")
        return body if status == 200 and body["state"] == "Completed" else None

    records = {
        o: eventually(functools.partial(completed_at_owner, o), f"{o} completed", 60) for o in owner
    }

    # Then the worker that does not own an order answers its record, fetched from the owner
    for order_id, holder in owner.items():
        other = b if holder == a else a
        assert get_json(other, f"/processes/{order_id}/") == records[order_id]

    # And the list and the stats of either worker cover both, every order once
    for h in (a, b):
        listed = Counter(row["order_id"] for row in get_json(h, "/processes/?limit=1000"))
        assert listed == Counter(list(owner)), f"list from {h}: {listed}"
        states = get_json(h, "/processes/stats/")
        assert states["Completed"] == len(owner), f"stats from {h}: {states}"
        assert sum(states.values()) == len(owner), f"stats from {h}: {states}"
