"""Chaos run: orders of every outcome on two workers, while workers are killed with SIGKILL and
the broker is restarted; then the independent checker (`streams.check`) judges the result.

    python -m tests.chaos.run [--orders 5000] [--rate 60] [--kill-every 8] [--max-seconds 900]

Bounded in count and time, 127.0.0.1 only, and it stops by itself. Exits 1 when an invariant
fails or the run did not finish in time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer

from streams.admin import ping
from streams.demo import Tracker, cart_records, changelog_reader, kind_of
from streams.metrics import ConsumerLag, consumer_groups
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.settings import Settings, get_settings
from streams.shipment.store import set_stock
from tests.integration.harness import REPO, Service, faust_worker, isolated_settings

KAFKA = REPO / "deploy" / "kafka" / "kafka.sh"


@dataclass
class Faults:
    """What was done to the system, and how long it took to come back each time."""

    kills: list[dict[str, float | str]] = field(default_factory=list)
    broker_restarts: list[dict[str, float]] = field(default_factory=list)
    # Workers that exited by themselves (the watchdog's exit 70 on a stuck module loop), and
    # were started again, as deploy/workers.sh's supervisor does.
    exits: list[dict[str, float | str | int]] = field(default_factory=list)


def seed(database_url: str, skus: dict[str, int]) -> None:
    migrate(database_url)
    with connect(database_url) as conn, conn.transaction():
        for sku, quantity in skus.items():
            set_stock(conn, sku, quantity)


def feed(
    settings: Settings, orders: dict[str, int], rate: float, skus: list[str], tracker: Tracker
) -> None:
    """Send every cart's commands at `rate` carts/s; librdkafka retries through broker restarts."""
    producer = Producer(settings.producer_config(**{"linger.ms": 5, "enable.idempotence": True}))
    topic = settings.topic("carts.commands")
    started = time.monotonic()
    for n, (order_id, index) in enumerate(orders.items()):
        kind = kind_of(index)
        for key, value in cart_records(order_id, index, kind, skus[:-1], skus[-1]):
            producer.produce(topic, key=key, value=value)
        tracker.finalized_at[order_id] = time.time()
        producer.poll(0)
        ahead = (n + 1) / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} commands were never delivered")


def kill_and_restart(worker: Service, faults: Faults) -> None:
    killed_at = time.monotonic()
    worker.kill()
    worker.start(ready_timeout=120)
    faults.kills.append({"worker": worker.name, "resumed_after_s": time.monotonic() - killed_at})


def restart_exited(workers: list[Service], faults: Faults) -> None:
    """Start again every worker that exited by itself, as deploy/workers.sh's supervisor does."""
    for worker in workers:
        if worker.running():
            continue
        assert worker.process is not None
        code = worker.process.returncode
        print(f"\n  {worker.name} exited by itself with {code}; starting it again", file=sys.stderr)
        started_at = time.monotonic()
        worker.start(ready_timeout=120)
        faults.exits.append(
            {
                "worker": worker.name,
                "exit_code": code,
                "resumed_after_s": time.monotonic() - started_at,
            }
        )


def drain(settings: Settings, workers: list[Service], faults: Faults, limit_s: float) -> int:
    """Wait until every consumer group has consumed every committed record (the workers
    still take in late messages after the last process ended, e.g. a payment settling);
    return the records left over after ``limit_s``. verify compares a quiet system only."""
    lag = ConsumerLag(settings, consumer_groups(settings))
    deadline = time.monotonic() + limit_s
    left = -1
    while time.monotonic() < deadline:
        restart_exited(workers, faults)
        try:
            behind = {f"{g} {t}": n for (g, t), n in lag.measure().items() if n}
        except Exception as error:  # the broker may still be recovering
            print(f"\n  lag not measured: {error!r}", file=sys.stderr)
            time.sleep(2)
            continue
        left = sum(behind.values())
        if not left:
            return 0
        print(f"\r  draining: {left} records behind {sorted(behind)}", end="", file=sys.stderr)
        time.sleep(2)
    return left


def restart_broker(faults: Faults) -> None:
    stopped_at = time.monotonic()
    subprocess.run(["bash", str(KAFKA), "stop"], check=True, capture_output=True)
    down_at = time.monotonic()
    subprocess.run(["bash", str(KAFKA), "start"], check=True, capture_output=True)
    settings = get_settings()
    while not ping(settings.confluent_config(), timeout=2):
        time.sleep(0.5)
    faults.broker_restarts.append(
        {"stop_s": down_at - stopped_at, "back_after_s": time.monotonic() - stopped_at}
    )


def run(args: argparse.Namespace) -> int:
    base = get_settings()
    settings, env = isolated_settings(base)
    # Timeouts long enough that a worker outage alone does not cancel paying customers; the
    # silent gateway still times out.
    timeouts = {"AwaitingPayment": 20.0}
    env |= {
        "PROCESS_TIMEOUTS": json.dumps(timeouts),
        "PROCESS_TIMEOUT_ALL_S": "120",
        "PAYMENT_SETTLEMENT_DELAY_S": "3",
        "STALL_EXIT_AFTER_S": "60",
    }
    run_id = env["APP_ID"]
    skus = [f"{run_id}-sku-{n:02d}" for n in range(20)]
    seeded = {sku: 10_000 for sku in skus} | {f"{run_id}-scarce": 0}
    seed(settings.database_url, seeded)
    orders = {f"{run_id}-{i:05d}": i for i in range(args.orders)}
    data = Path(args.data_dir) / run_id
    workers = [faust_worker("streams.worker", env, data / f"w{n}", 16300 + n) for n in (1, 2)]
    for worker in workers:
        worker.start(ready_timeout=120)
    tracker = Tracker({order_id: kind_of(i) for order_id, i in orders.items()})
    faults = Faults()
    deadline = time.monotonic() + args.max_seconds
    feeder = threading.Thread(
        target=feed, args=(settings, orders, args.rate, skus + [f"{run_id}-scarce"], tracker)
    )
    reader = changelog_reader(settings)
    started = time.monotonic()
    feeder.start()
    rng = random.Random(args.seed)
    next_fault = time.monotonic() + args.kill_every
    broker_restarted = not args.broker_restart
    try:
        while tracker.done() < len(orders) and time.monotonic() < deadline:
            for message in reader.consume(1000, timeout=0.5):
                if message.error() is None and message.key() is not None:
                    tracker.observe(message.key(), message.value(), message.timestamp()[1])
            restart_exited(workers, faults)
            feeding = feeder.is_alive()
            if feeding and time.monotonic() >= next_fault:
                progress = tracker.done() / len(orders)
                if not broker_restarted and progress > 0.3:
                    restart_broker(faults)
                    broker_restarted = True
                else:
                    kill_and_restart(rng.choice(workers), faults)
                next_fault = time.monotonic() + args.kill_every
            print(
                f"\r  {tracker.done()}/{len(orders)} terminal, {len(faults.kills)} kills, "
                f"{len(faults.broker_restarts)} broker restarts",
                end="",
                file=sys.stderr,
            )
        finished = tracker.done() == len(orders)
        feeder.join(timeout=300)
        left_behind = drain(settings, workers, faults, limit_s=120) if finished else -1
    finally:
        print(file=sys.stderr)
        feeder.join(timeout=300)
        reader.close()
        for worker in workers:
            if worker.running():
                worker.stop()
    elapsed = time.monotonic() - started
    outcomes: dict[str, int] = {}
    for order_id in orders:
        state = tracker.state.get(order_id, "unknown")
        reason = tracker.reason.get(order_id)
        key = state if not reason else f"{state}/{reason}"
        outcomes[key] = outcomes.get(key, 0) + 1
    report = {
        "orders": len(orders),
        "terminal": tracker.done(),
        "elapsed_s": round(elapsed, 1),
        "kills": faults.kills,
        "broker_restarts": faults.broker_restarts,
        "exits": faults.exits,
        "records_left_unconsumed": left_behind,
        "outcomes": outcomes,
    }
    print(json.dumps(report, indent=2))
    check_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    seeded_args = [f"{sku}={qty}" for sku, qty in seeded.items()]
    checked = subprocess.run(
        [sys.executable, "-m", "streams.check", "--orders", run_id, "--seeded", *seeded_args],
        env=check_env,
        cwd=REPO,
    )
    if not finished:
        print(f"chaos: only {tracker.done()} of {len(orders)} processes ended in time")
    elif left_behind:
        print(f"chaos: {left_behind} committed records were never consumed")
    return 0 if finished and not left_behind and checked.returncode == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.run")
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=60.0, help="carts per second")
    parser.add_argument("--kill-every", type=float, default=8.0, help="seconds between faults")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--no-broker-restart", dest="broker_restart", action="store_false")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", default=str(REPO / ".data" / "chaos"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
