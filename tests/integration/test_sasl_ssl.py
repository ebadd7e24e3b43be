"""Workers and module runners through a SASL_SSL listener: SCRAM-SHA-512 over TLS, with a
client certificate whose key is encrypted. The broker is started here, by the cluster script
(one node, loopback ports, its own data), and stopped after the module."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.kafka.admin import ensure_topics
from streams.settings import Settings
from tests.integration.flows import history_types, place_order, stock, wait_terminal
from tests.integration.harness import REPO, Service, faust_worker, module_runner, unique

pytestmark = pytest.mark.integration

WEB_PORT = 16120
CLUSTER = REPO / "deploy" / "kafka" / "cluster.sh"
SECURITY = (
    "SECURITY_PROTOCOL",
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "SASL_PASSWORD",
    "SSL_CAFILE",
    "SSL_CERTFILE",
    "SSL_KEYFILE",
    "SSL_KEY_PASSWORD",
)


def _free_base_port() -> int:
    """A port P with P, P+100 and P+200 free: the node's PLAINTEXT, controller and SASL_SSL."""
    for _ in range(50):
        base = 30000 + uuid.uuid4().int % 9000
        try:
            for port in (base, base + 100, base + 200):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def secure_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The client environment of a fresh one-node SASL_SSL broker."""
    data = tmp_path_factory.mktemp("sasl-cluster")
    script_env = {
        **{k: v for k, v in os.environ.items() if k not in SECURITY},
        "BROKERS": "1",
        "SASL_SSL": "1",
        "CLUSTER_NET": "loopback",
        "CLUSTER_DIR": str(data),
        "CLUSTER_BASE_PORT": str(_free_base_port()),
        "KAFKA_HEAP": "512m",
        "PYTHONPATH": str(REPO),
    }

    def cluster(command: str) -> str:
        done = subprocess.run(
            ["bash", str(CLUSTER), command],
            env=script_env,
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert done.returncode == 0, f"cluster.sh {command}: {done.stderr}"
        return done.stdout

    try:
        cluster("start")
        lines = cluster("env").splitlines()
        yield dict(line.split("=", 1) for line in lines)
    finally:
        cluster("stop")


@pytest.fixture
def secure(secure_env: dict[str, str]) -> tuple[Settings, dict[str, str]]:
    """Settings on fresh topics of the SASL_SSL broker, and the environment that gives them."""
    env = {**secure_env, "TOPIC_PREFIX": unique("t") + ".", "APP_ID": unique("app")}
    settings = Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    ensure_topics(settings)
    return settings, env


def test_an_order_completes_through_sasl_ssl_with_a_worker_and_a_module_runner(
    secure: tuple[Settings, dict[str, str]], services: list[Service], tmp_path: Path
) -> None:
    # Given a worker and a module runner that reach Kafka only through SASL_SSL
    settings, env = secure
    env = {**env, "WORKER_RUNS_MODULES": "false"}
    runner = module_runner(env, tmp_path / "m", "carts,orders,payments,shipments,outbox")
    worker = faust_worker("streams.process.worker", env, tmp_path / "w", WEB_PORT)
    services += [runner, worker]
    runner.start()
    worker.start()
    sku = unique("sku")
    stock(settings, {sku: 3})

    # When a customer orders and pays
    order_id = unique("order")
    place_order(settings, order_id, "card_ok", [(sku, 1)])

    # Then the order completes: every hop went through the secure listener
    process = wait_terminal(WEB_PORT, order_id)
    assert process["state"] == "Completed"
    assert history_types(process)[-1] == "OrderCompleted"


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["-m", "faust", "-A", "streams.process.worker", "worker", "-l", "info"], "worker"),
        (["-m", "streams.modules.runner", "--only", "carts"], "runner"),
    ],
)
def test_wrong_credentials_end_the_process_at_start_with_one_line(
    secure: tuple[Settings, dict[str, str]], tmp_path: Path, argv: list[str], name: str
) -> None:
    # Given a password the broker does not know
    _, env = secure
    env = {**env, "SASL_PASSWORD": "not-the-password", "WEB_PORT": str(WEB_PORT + 1)}
    service = Service(argv, env, tmp_path, name, b"never")

    # When the process starts
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start(ready_timeout=30)

    # Then it ended within seconds, saying why in one line
    assert time.monotonic() - started < 20
    output = service.log_path.read_text().strip().splitlines()
    assert len(output) == 1, output
    assert output[0].startswith("kafka: ")
    assert "refused SASL_SSL access" in output[0]
    assert "invalid credentials" in output[0]
