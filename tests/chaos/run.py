"""Chaos run: orders of every outcome through the workers while processes are killed with
SIGKILL and the broker is stopped; then the independent checker (`streams.tools.check`) judges it.

    python -m tests.chaos.run [--profile classic|long-outage|long-outage-short] [--seed N]
                              [--orders N] [--rate R] [--burst N] [--outage-s S]
                              [--worker-kills N] [--runner-kills N] [--no-broker-restart]
                              [--max-seconds S] [--web-port P]

A profile (``tests/chaos/plan.py``) sets the load, the faults and the workers' timeouts; the
seed (random when not given, printed at the start and in the summary) makes every random
choice: when the broker stops, every kill's time and victim, and the order in which the carts
of the mix are sent. Every fault is printed as it happens, with its time since the feed
started, and again in the summary with how long its victim took to be ready again.

- ``classic`` (``make chaos``): two workers with the module handlers in their threads, a
  Faust worker killed about every 8 s, the broker restarted once.
- ``long-outage``: two workers and two module runners (``python -m streams.modules.runner``, as
  ``make start`` runs them), workers and runners killed before, during and after a broker
  outage longer than the payment and shipment timeouts the workers run with, and a burst of
  carts around the stop, so that many processes are caught mid-way and time out.
- ``long-outage-short``: the same in about 3 minutes; CI runs it (tests/chaos/test_chaos.py).
- ``cluster`` (``make chaos BROKERS=3``): on the three-node cluster of
  ``deploy/kafka/cluster.sh``, the node that leads the most partitions is killed with SIGKILL
  mid-run and started again later, workers and runners are killed around it, and the pause
  while the leaders move is measured: how long until no partition is led by the dead node,
  until the first order ended after the kill, and the longest gap between two orders ending.
  Only cluster nodes are touched; the other profiles stop the single broker and refuse a
  cluster.

A process that exits by itself (the watchdog's 70) is started again after 2 s, as
``deploy/workers.sh`` does, and reported. Every generation of every process logs to a file of
its own under ``.data/chaos/<run>/``. When every process has ended and every fault was carried
out, the run waits until every consumer group has consumed every committed record, stops the
processes and runs the checker. Bounded in count and time, workers on 127.0.0.1, and it stops by
itself; the broker is started again whatever happens. Exits 1 when an invariant fails, a
planned fault was not carried out, or the run did not finish in time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.kafka import groups
from streams.kafka.admin import cluster_size
from streams.modules.shipment.store import set_stock
from streams.observability.lag import ConsumerLag
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.settings import Settings, get_settings
from streams.tools.demo import Tracker, cart_records, kind_of
from tests.chaos.brokers import ClusterNode, SingleBroker
from tests.chaos.conductor import Conductor, Journal
from tests.chaos.members import Member, runner, worker
from tests.chaos.plan import (
    PROFILES,
    SHIPMENT_AND_PAYMENT_STATES,
    Outage,
    Profile,
    make_plan,
    send_times,
)
from tests.chaos.summary import Summary, pause_figures
from tests.integration.harness import REPO, isolated_settings

READY_TIMEOUT_S: Final = 120.0
DRAIN_LIMIT_S: Final = 60.0
# The driver's own clients say nothing below critical: while the broker is down on purpose,
# librdkafka would print a refused connection every 50 ms.
QUIET: Final = {"log_level": 2}


# Load


def seed_stock(database_url: str, skus: dict[str, int]) -> None:
    migrate(database_url)
    with connect(database_url) as conn, conn.transaction():
        for sku, quantity in skus.items():
            set_stock(conn, sku, quantity)


@dataclass
class Feed:
    sent: int = 0
    error: BaseException | None = None


def feed(
    settings: Settings,
    orders: dict[str, int],
    at: list[float],
    skus: list[str],
    tracker: Tracker,
    fed: Feed,
) -> None:
    """Send each cart's commands ``at`` its time (seconds after the start); librdkafka keeps
    them through the broker's outage and delivers them once it is back."""
    try:
        config = {"linger.ms": 5, "enable.idempotence": True, **QUIET}
        producer = Producer(settings.producer_config(**config))
        topic = settings.topic("carts.commands")
        started = time.monotonic()
        for n, (order_id, index) in enumerate(orders.items()):
            ahead = at[n] - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            kind = kind_of(index)
            for key, value in cart_records(order_id, index, kind, skus[:-1], skus[-1]):
                producer.produce(topic, key=key, value=value)
            tracker.finalized_at[order_id] = time.time()
            fed.sent += 1
            producer.poll(0)
        remaining = producer.flush(300)
        if remaining:
            raise RuntimeError(f"{remaining} commands were never delivered")
    except BaseException as error:
        fed.error = error


READER_SILENT_S: Final = 20.0
"""A reader that got nothing for this long while orders are still open is made anew."""


def changelog_reader(settings: Settings, positions: dict[int, int]) -> Consumer:
    """The process table's changelog from ``positions`` (partition -> next offset), and every
    other partition from its end as it is now (the demo's reader, quiet).

    The driver makes a new reader when one stays silent: in a CI run (seed 944790) the reader
    received nothing after the broker's restart while the workers completed every order (the
    changelog held a terminal record for all 920, and verify matched them); librdkafka
    consumers can stay stuck after a leader epoch change (confluentinc/librdkafka#4492).
    """
    topic = settings.process_changelog_topic()
    config = {"group.id": f"chaos-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False, **QUIET}
    consumer = Consumer(settings.confluent_config(**config))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for p in partitions:
            if p not in positions:
                end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                positions[p] = end
        consumer.assign([TopicPartition(topic, p, positions[p]) for p in partitions])
    except KafkaException:
        consumer.close()
        raise
    return consumer


def drain(settings: Settings, journal: Journal, limit_s: float) -> dict[str, int] | None:
    """Wait until every consumer group has consumed every committed record (the workers
    still take in late messages after the last process ended, e.g. a payment settling);
    return what is left after ``limit_s`` per ``"<group> <topic>"`` (``None``: never
    measured). verify compares a quiet system only."""
    lag = ConsumerLag(settings, groups.members(settings))
    deadline = time.monotonic() + limit_s
    behind: dict[str, int] | None = None
    shown = 0.0
    try:
        while time.monotonic() < deadline:
            try:
                behind = {f"{g} {t}": n for (g, t), n in lag.measure().items() if n}
            except Exception as error:  # the broker may still be recovering
                journal.say(f"lag not measured: {error!r}")
                time.sleep(2)
                continue
            if not behind:
                return behind
            if time.monotonic() - shown > 10:
                shown = time.monotonic()
                journal.say(f"draining: {sum(behind.values())} records behind: {behind}")
            time.sleep(2)
    finally:
        lag.close()
    return behind


def await_ready(members: list[Member], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(m.poll() for m in members):
        for member in members:
            if member.exit_code() is not None:
                raise RuntimeError(f"{member.name} exited with {member.exit_code()} at start")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready in {timeout:.0f} s: {[m.name for m in members]}")
        time.sleep(0.2)


# The run


def brokers_in(settings: Settings) -> int:
    admin = AdminClient({**settings.confluent_config(), "socket.timeout.ms": 10_000})
    return cluster_size(admin.list_topics(timeout=10))


def run(profile: Profile, seed: int, data_dir: Path, web_port: int = 16300) -> int:
    rerun = f"python -m tests.chaos.run {' '.join(rerun_args(profile, seed, web_port))}"
    print(f"chaos: profile {profile.name}, seed {seed}\n  re-run: {rerun}", flush=True)
    base = get_settings()
    brokers = brokers_in(base)
    if profile.on_cluster and brokers < 3:
        print(f"chaos: profile {profile.name} needs a cluster (BROKERS=3), not {brokers} broker")
        return 2
    if not profile.on_cluster and profile.outage is not None and brokers > 1:
        # kafka.sh would stop and start a single broker this run does not use
        print(f"chaos: profile {profile.name} stops the single broker; {brokers} brokers here")
        return 2
    settings, env = isolated_settings(base)
    env |= {
        "PROCESS_TIMEOUTS": json.dumps(profile.timeouts),
        "PROCESS_TIMEOUT_ALL_S": str(profile.timeout_all_s),
        "PAYMENT_SETTLEMENT_DELAY_S": "3",
        "STALL_EXIT_AFTER_S": str(profile.stall_exit_after_s),
        "WORKER_RUNS_MODULES": "false" if profile.separate_modules else "true",
    }
    run_id = env["APP_ID"]
    run_dir = data_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    skus = [f"{run_id}-sku-{n:02d}" for n in range(20)]
    seeded = {sku: 10_000 for sku in skus} | {f"{run_id}-scarce": 0}
    seed_stock(settings.database_url, seeded)
    # The mix of every 100 carts is the demo's; the seed decides the order they are sent in
    # (and, for fewer than 100 orders, which carts of the mix they are).
    indices = random.Random(f"{seed}:orders").sample(
        range(max(profile.orders, 100)), profile.orders
    )
    orders = {f"{run_id}-{n:05d}": index for n, index in enumerate(indices)}
    members = [worker(n, env, run_dir, web_port + n) for n in (1, 2)]
    if profile.separate_modules:
        members += [runner(n, env, run_dir, web_port + n) for n in (1, 2)]
    plan = make_plan(
        profile,
        seed,
        [m.name for m in members if m.kind == "worker"],
        [m.name for m in members if m.kind == "runner"],
    )
    times = send_times(profile, plan)
    print(describe_profile(profile), flush=True)
    print("  plan:\n" + "\n".join(f"    {line}" for line in plan.describe()), flush=True)
    print(f"  logs: {run_dir}/<process>/<process>.<generation>.log", flush=True)
    tracker = Tracker({order_id: kind_of(i) for order_id, i in orders.items()})
    fed = Feed()
    conductor: Conductor | None = None
    reader = None
    started = time.monotonic()
    finished = False
    left_behind: dict[str, int] | None = None
    completions: list[float] = []  # when the reader saw each order end, on the journal's clock
    journal = Journal()
    try:
        for member in members:
            member.spawn()
        await_ready(members, READY_TIMEOUT_S)
        positions: dict[int, int] = {}
        reader = changelog_reader(settings, positions)
        heard = time.monotonic()
        journal = Journal()  # the feed starts now: every time in the report counts from here
        config = settings.confluent_config()
        fault = (
            ClusterNode(config, run_dir, (settings.topic_prefix, settings.faust_app_id()))
            if profile.on_cluster
            else SingleBroker(config, run_dir)
        )
        conductor = Conductor(members, plan, journal, run_dir, fault)
        feeder = threading.Thread(
            target=feed,
            args=(settings, orders, times, [*skus, f"{run_id}-scarce"], tracker, fed),
            daemon=True,
        )
        feeder.start()
        conductor.start()
        deadline = time.monotonic() + profile.max_seconds
        shown = 0.0
        while time.monotonic() < deadline and conductor.error is None:
            for message in reader.consume(1000, timeout=0.5):
                key = message.key()
                if message.error() is None and key is not None:
                    heard = time.monotonic()
                    positions[message.partition() or 0] = (message.offset() or 0) + 1
                    ended_before = tracker.done()
                    tracker.observe(key, message.value(), message.timestamp()[1])
                    if tracker.done() > ended_before:
                        completions.append(journal.now())
            ended = tracker.done() == len(orders)
            answering = conductor.broker in ("up", "back", "restored")
            if not ended and answering and time.monotonic() - heard >= READER_SILENT_S:
                heard = time.monotonic()
                try:
                    fresh = changelog_reader(settings, positions)
                except KafkaException as error:  # the broker is away: try again later
                    journal.say(f"reader: silent, and no new one yet ({error})")
                else:
                    journal.say(f"reader: nothing for {READER_SILENT_S:.0f} s; a new reader")
                    reader.close()
                    reader = fresh
            if ended and conductor.done() and not feeder.is_alive():
                finished = True
                break
            if time.monotonic() - shown >= 10:
                shown = time.monotonic()
                journal.say(
                    f"progress: {fed.sent}/{len(orders)} fed, {tracker.done()} ended, "
                    f"{len(plan.kills) - len(conductor.pending)}/{len(plan.kills)} kills, "
                    f"broker {conductor.broker}"
                )
        if finished:
            left_behind = drain(settings, journal, limit_s=DRAIN_LIMIT_S)
    finally:
        if conductor is not None:
            conductor.stop()
            conductor.restore_broker()
        for member in members:
            member.terminate()
        for member in members:
            member.wait_stopped(timeout=30)
        if reader is not None:
            reader.close()
    elapsed = time.monotonic() - started
    check_code, findings = run_checker(env, run_id, seeded, run_dir)
    summary = Summary(
        profile=profile,
        seed=seed,
        rerun=rerun,
        run_dir=run_dir,
        orders=len(orders),
        ended=tracker.done(),
        outcomes=outcome_counts(tracker, orders),
        events=journal.events,
        not_done=[] if conductor is None else [k.describe() for k in conductor.pending],
        left_behind=left_behind,
        check_code=check_code,
        findings=findings,
        elapsed_s=elapsed,
        pause=None
        if conductor is None or conductor.stop_began is None or not profile.on_cluster
        else pause_figures(
            conductor.stop_began, conductor.leaders_moved_at, conductor.back_at, completions
        ),
        feed_error=None if fed.error is None else repr(fed.error),
        conductor_error=None
        if conductor is None or conductor.error is None
        else repr(conductor.error),
    )
    print(summary.render())
    (run_dir / "summary.json").write_text(json.dumps(summary.as_json(), indent=2))
    return 0 if summary.passed() else 1


def run_checker(
    env: dict[str, str], run_id: str, seeded: dict[str, int], run_dir: Path
) -> tuple[int, dict[str, Any]]:
    """Run ``python -m streams.tools.check`` on the run's topics; its output goes to check.log."""
    check_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    seeded_args = [f"{sku}={qty}" for sku, qty in seeded.items()]
    out = run_dir / "check.json"
    argv = [sys.executable, "-m", "streams.tools.check", "--orders", run_id, "--json-out", str(out)]
    with (run_dir / "check.log").open("wb") as log:
        checked = subprocess.Popen(
            [*argv, "--seeded", *seeded_args], env=check_env, cwd=REPO, stdout=subprocess.PIPE
        )
        assert checked.stdout is not None
        for line in checked.stdout:
            log.write(line)
            sys.stdout.write(line.decode(errors="replace"))
        code = checked.wait()
    sys.stdout.flush()
    findings = json.loads(out.read_text()) if out.exists() else {}
    return code, findings


def outcome_counts(tracker: Tracker, orders: dict[str, int]) -> dict[str, int]:
    outcomes: Counter[str] = Counter()
    for order_id in orders:
        state = tracker.state.get(order_id, "unknown")
        reason = tracker.reason.get(order_id)
        outcomes[state if not reason else f"{state}/{reason}"] += 1
    return dict(sorted(outcomes.items()))


def describe_profile(profile: Profile) -> str:
    outage = profile.outage
    broker = (
        "no broker fault"
        if outage is None
        else f"SIGKILL the cluster node leading the most partitions at {outage.at_s[0]:.0f}-"
        f"{outage.at_s[1]:.0f} s, started again {outage.down_s:.0f} s later, "
        f"{profile.kills_while_down} kills while it is down"
        if profile.on_cluster
        else f"broker restarted at once, stop at {outage.at_s[0]:.0f}-{outage.at_s[1]:.0f} s"
        if outage.down_s == 0
        else f"broker down {outage.down_s:.0f} s from a stop at {outage.at_s[0]:.0f}-"
        f"{outage.at_s[1]:.0f} s, {profile.kills_while_down} kills while it is down"
    )
    timeouts = ", ".join(f"{s} {profile.timeout_of(s):.0f} s" for s in SHIPMENT_AND_PAYMENT_STATES)
    modules = "in module runners of their own" if profile.separate_modules else "in the workers"
    burst = f" (+{profile.burst} around the broker stop)" if profile.burst else ""
    return (
        f"  {profile.orders} orders at {profile.rate:g}/s{burst}; {profile.worker_kills} "
        f"worker and {profile.runner_kills} runner kills; {broker}; module handlers {modules}; "
        "timeouts "
        f"{timeouts}, others {profile.timeout_all_s:.0f} s; at most {profile.max_seconds:.0f} s"
    )


def rerun_args(profile: Profile, seed: int, web_port: int = 16300) -> list[str]:
    """The arguments that run ``profile`` (with any overrides) again with ``seed``."""
    base = PROFILES[profile.name]
    args = ["--profile", profile.name, "--seed", str(seed)]
    if web_port != 16300:
        args += ["--web-port", str(web_port)]
    overrides = {
        "--orders": (profile.orders, base.orders),
        "--rate": (profile.rate, base.rate),
        "--burst": (profile.burst, base.burst),
        "--worker-kills": (profile.worker_kills, base.worker_kills),
        "--runner-kills": (profile.runner_kills, base.runner_kills),
        "--max-seconds": (profile.max_seconds, base.max_seconds),
    }
    for flag, (value, default) in overrides.items():
        if value != default:
            args += [flag, f"{value:g}"]
    if profile.outage is None and base.outage is not None:
        args.append("--no-broker-restart")
    elif profile.outage is not None and profile.outage != base.outage:
        args += ["--outage-s", f"{profile.outage.down_s:g}"]
    return args


def chosen_profile(args: argparse.Namespace) -> Profile:
    profile = PROFILES[args.profile]
    changes: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("orders", "rate", "burst", "worker_kills", "runner_kills", "max_seconds")
        if getattr(args, name) is not None
    }
    if not args.broker_restart:
        changes["outage"] = None
    elif args.outage_s is not None:
        at_s = profile.outage.at_s if profile.outage is not None else (20.0, 30.0)
        changes["outage"] = Outage(at_s, args.outage_s)
    return dataclasses.replace(profile, **changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="classic")
    parser.add_argument("--seed", type=int, help="makes every random choice (default: random)")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--rate", type=float, help="carts per second, but for the burst")
    parser.add_argument("--burst", type=int, help="carts sent around the broker stop")
    parser.add_argument("--outage-s", type=float, help="seconds the broker stays down")
    parser.add_argument("--worker-kills", type=int)
    parser.add_argument("--runner-kills", type=int)
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--no-broker-restart", dest="broker_restart", action="store_false")
    parser.add_argument(
        "--web-port", type=int, default=16300, help="worker N serves on P+N (default 16300)"
    )
    parser.add_argument("--data-dir", type=Path, default=REPO / ".data" / "chaos")
    args = parser.parse_args(argv)
    profile = chosen_profile(args)
    if profile.runner_kills and not profile.separate_modules:
        parser.error(f"profile {profile.name} runs no module runners to kill")
    if not 0 <= profile.burst < profile.orders:
        parser.error(f"the burst ({profile.burst}) must be smaller than --orders")
    long_stop = profile.outage is not None and profile.outage.down_s > 0
    if long_stop and not profile.on_cluster and not profile.outlasts_timeouts():
        print(f"note: the outage does not outlast the timeouts of {SHIPMENT_AND_PAYMENT_STATES}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return run(profile, seed, args.data_dir, args.web_port)


if __name__ == "__main__":
    sys.exit(main())
