"""python -m bench.broker [--phases 0,100,200,100r] [--seconds 30] [--no-verification]"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from bench.broker import threads
from bench.broker.jmx import Broker
from bench.broker.request_log import MARK, summarize
from bench.common import REPO, Drive, Ports, Scenario, log, machine_busy, percentile, reader_at_end
from bench.scenarios import PAID, _orders
from streams.settings import Settings, get_settings
from streams.tools.demo import seed_stock

VERIFICATION = "transaction.partition.verification.enable"


@contextlib.contextmanager
def verification_off(settings: Settings) -> Iterator[None]:
    """KIP-890's partition verification off on every broker for the run, then back to default."""
    admin = AdminClient(settings.confluent_config())
    brokers = list(admin.list_topics(timeout=10).brokers)

    def alter(op: AlterConfigOpType) -> None:
        entry = ConfigEntry(VERIFICATION, "false", incremental_operation=op)
        resources = [
            ConfigResource(ResourceType.BROKER, str(b), incremental_configs=[entry])
            for b in brokers
        ]
        for future in admin.incremental_alter_configs(resources).values():
            future.result()

    alter(AlterConfigOpType.SET)
    log(f"{VERIFICATION}=false on brokers {brokers}")
    try:
        yield
    finally:
        alter(AlterConfigOpType.DELETE)
        log(f"{VERIFICATION} back to its default")


@contextlib.contextmanager
def request_log(broker: Broker, server_log: Path, to: Path) -> Iterator[None]:
    """The broker's completed requests, copied from its log while the block runs."""
    tail = subprocess.Popen(
        ["tail", "-n0", "-F", str(server_log)], stdout=subprocess.PIPE, text=True
    )

    def copy() -> None:
        assert tail.stdout is not None
        with to.open("w") as out:
            for line in tail.stdout:
                if MARK in line:
                    out.write(line)

    copier = threading.Thread(target=copy, daemon=True)
    copier.start()
    broker.log_level("kafka.request.logger", "DEBUG")
    try:
        yield
    finally:
        broker.log_level("kafka.request.logger", "INFO")
        time.sleep(1)
        tail.terminate()
        copier.join(5)


def phase(
    sc: Scenario, reader: Consumer, broker: Broker, spec: str, first: int, seconds: float
) -> int:
    logged, rate = spec.endswith("r"), float(spec.rstrip("r"))
    name = f"rate{spec}"
    recording = sc.run_dir / f"{name}.jfr"
    broker.record(name, recording)
    parts = sc.cpu_by_component()
    count = int(rate * seconds)
    with contextlib.ExitStack() as stack:
        if logged:
            server_log = REPO / ".data" / "kafka" / "logs" / "server.log"
            stack.enter_context(request_log(broker, server_log, sc.run_dir / f"{name}.log"))
        before, busy0, started = broker.requests(), machine_busy(), time.monotonic()
        latencies: list[float] = []
        if count:
            orders = _orders(sc.settings.app_id, first, count, PAID)
            drive = Drive(sc.settings, orders, window=10**9, rate=rate, timeout=200)
            latencies = drive.run(reader, name).latencies_ms()
        else:
            time.sleep(seconds)
        after, busy1, elapsed = broker.requests(), machine_busy(), time.monotonic() - started
    cpu = parts.stop(max(1, round(elapsed)))
    broker.stop_recording(name)
    cpu_ms_per_s = {k: round(v) for k, v in cpu["ms_per_unit"].items() if v is not None}
    row: dict[str, Any] = {
        "phase": name,
        "seconds": round(elapsed, 1),
        "orders": len(latencies),
        **{
            f"p{q}_ms": round(percentile(latencies, q / 100)) if latencies else None
            for q in (50, 95, 99)
        },
        "busy": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
        "cpu_ms_per_s": cpu_ms_per_s,
        "broker_threads_ms_per_s": threads.summary(
            recording, os.cpu_count() or 1, cpu_ms_per_s["broker"]
        ),
        "requests_per_s": {
            k: round((after[k] - before[k]) / elapsed, 1) for k in after if after[k] > before[k]
        },
    }
    if logged:
        with (sc.run_dir / f"{name}.log").open() as lines:
            summary = summarize(lines)
        row["by_client"] = [
            [client, request, n] for (client, request), n in summary.by_client.most_common(20)
        ]
        row["partitions_per_produce"] = dict(summary.partitions_per_produce)
    print("RESULT", json.dumps(row), flush=True)
    return first + count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phases", default="0,100,200")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--run-dir", type=Path, default=REPO / ".data" / "bench" / "broker")
    parser.add_argument("--no-verification", action="store_true", help=f"{VERIFICATION}=false")
    args = parser.parse_args()
    settings = get_settings()
    broker = Broker.local()
    run_dir = args.run_dir / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        if args.no_verification:
            stack.enter_context(verification_off(settings))
        sc = stack.enter_context(
            Scenario("broker", settings, run_dir, Ports(17300), 1, {"WORKER_RUNS_MODULES": "false"})
        )
        seed_stock(sc.settings)
        reader = reader_at_end(sc.settings, sc.settings.process_changelog_topic())
        warm = _orders(sc.settings.app_id, 0, 300, PAID)
        Drive(sc.settings, warm, window=10**9, rate=50, timeout=120).run(reader, "warm")
        first = 1000
        for spec in args.phases.split(","):
            first = phase(sc, reader, broker, spec, first, args.seconds)


if __name__ == "__main__":
    main()
