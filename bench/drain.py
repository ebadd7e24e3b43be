"""The process-manager drain: inputs pre-loaded on its topics, one worker drains them.

The same ``CartFinalized`` records (valid envelopes, keyed by order id) go to

- the process manager's ``carts.events``, drained by one Faust worker (``streams.process.worker``)
  with ``WORKER_RUNS_MODULES=false`` and no module runner, so nothing answers: each input
  makes one process and one ``InitOrder`` on ``orders.commands``;
- the source topic of the minimal Faust table relay (``bench/faust_relay.py``), the baseline,
  once before the process manager and once after (the mean is the baseline).

Both are loaded while their worker is stopped (before its first start) and timed from the
record timestamps of the first and the last output they produced, so start-up is left out.
Every input must come out: the outputs are counted, with their distinct keys.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from aggregates.messages import CartFinalized, ProductItem
from bench import cpu
from bench.baseline import _create
from bench.common import PYTHON, REPO, Scenario, log, partitions_of, scenario_topics
from bench.scenarios import Context
from streams.kafka.admin import ensure_topics
from streams.kafka.codec import encode, external, key_of
from streams.kafka.producing import produce_waiting
from streams.kafka.topics import commands_of, events_of
from streams.settings import Settings

INIT_ORDER = b'"type":"InitOrder"'


def cart_finalized(prefix: str, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` valid CartFinalized records, one per order, as the cart module writes them."""
    records = []
    for i in range(count):
        order_id = f"{prefix}-{i:07d}"
        price = Decimal(f"{5 + i % 40}.99")
        event = CartFinalized(
            cart_id=order_id,
            client_id=f"client-{i % 97}",
            product_items=(
                ProductItem(product_id=f"sku-{i % 20:03d}", quantity=1, unit_price=price),
            ),
            total_price=price,
        )
        envelope = external(event)
        records.append((key_of(envelope), encode(envelope)))
    return records


def load(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Produce ``records`` to ``topic`` (murmur2, as every producer of the system); seconds."""
    started = time.monotonic()
    producer = Producer(settings.producer_config(**{"linger.ms": 20, "enable.idempotence": True}))
    for n, (key, value) in enumerate(records):
        produce_waiting(producer, topic, key=key, value=value)
        if n % 1000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError(f"{topic}: not every input was loaded")
    return time.monotonic() - started


@dataclass
class FaustWorker:
    """One Faust worker process of its own (no supervisor, no module runner)."""

    app: str
    env: dict[str, str]
    log_path: Path
    web_port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FaustWorker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        Path(self.env["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        argv = [str(PYTHON), "-m", "faust", "-A", self.app, "worker", "-l", "info"]
        argv += ["--web-port", str(self.web_port), "--web-bind", "127.0.0.1"]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        log(f"{self.app}: worker pid {self.proc.pid}, log {self.log_path}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def collect(
    settings: Settings,
    topic: str,
    expected: int,
    worker: FaustWorker,
    start_timeout: float = 240.0,
    stall_timeout: float = 60.0,
    marker: bytes | None = None,
) -> tuple[list[float], set[bytes], int]:
    """Read ``topic`` from the beginning until ``expected`` records (with ``marker`` in their
    value, when given) came, or none for ``stall_timeout`` s (``start_timeout`` before the
    first). Returns their timestamps (s), their distinct keys, and the other records seen."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": f"bench-drain-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                # the loop's commands count once their transaction commits
                "isolation.level": "read_committed",
            }
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions_of(consumer, topic)])
    times: list[float] = []
    keys: set[bytes] = set()
    others = 0
    last_progress = time.monotonic()
    try:
        while len(times) < expected:
            limit = stall_timeout if times else start_timeout
            if time.monotonic() - last_progress > limit:
                log(f"{topic}: {len(times)}/{expected} after {limit:.0f} s without a new one")
                break
            if worker.exited() is not None:
                log(f"{topic}: worker exited with {worker.exited()}; see {worker.log_path}")
                break
            for message in consumer.consume(2000, timeout=0.5):
                value, key = message.value(), message.key()
                if message.error() is not None or value is None or key is None:
                    continue
                if marker is not None and marker not in value:
                    others += 1
                    continue
                times.append(message.timestamp()[1] / 1000)
                keys.add(key)
                last_progress = time.monotonic()
    finally:
        consumer.close()
    return sorted(times), keys, others


def rates(times: list[float]) -> dict[str, float | None]:
    """Outputs/s from the first to the last output, and between the 10th and 90th percentile."""
    if len(times) < 2 or times[-1] <= times[0]:
        return {"per_s": None, "steady_per_s": None, "span_s": None}
    a, b = int(0.1 * (len(times) - 1)), int(0.9 * (len(times) - 1))
    steady = (b - a) / (times[b] - times[a]) if times[b] > times[a] else None
    span = times[-1] - times[0]
    return {"per_s": (len(times) - 1) / span, "steady_per_s": steady, "span_s": span}


def cpu_per_output(samples: Any, times: list[float]) -> dict[str, Any] | None:
    """ms of CPU per output of each sampled component, over the samples inside the drain."""
    if not times:
        return None
    window = cpu.window_of(samples, times[0], times[-1])
    if window is None:
        return None
    t0, t1, deltas = window
    count = cpu.count_between(times, t0, t1)
    return cpu.summary(deltas, count, t1 - t0, {})


def _measure(
    settings: Settings,
    worker: FaustWorker,
    topic: str,
    expected: int,
    marker: bytes | None,
    label: str,
) -> dict[str, Any]:
    port = cpu.kafka_port(settings.kafka_bootstrap_servers)
    worker.start()
    try:
        of = cpu.components(port, None, [worker.pid], kafka_pidfile=cpu.kafka_pidfile(REPO))
        with cpu.CpuSampler(of, interval=0.25) as sampler:
            times, keys, others = collect(settings, topic, expected, worker, marker=marker)
    finally:
        worker.stop()
    result: dict[str, Any] = {
        "inputs": expected,
        "outputs": len(times),
        "distinct_keys": len(keys),
        "other_records": others,
        "all_applied": len(times) == expected and len(keys) == expected,
        **rates(times),
        "cpu": cpu_per_output(sampler.samples, times),
        "pids": of.pids,
    }
    per_s = result["per_s"]
    log(
        f"{label}: {len(times)}/{expected} outputs ({len(keys)} keys), "
        + (f"{per_s:,.0f}/s" if per_s else "no rate")
    )
    return result


def faust_relay(ctx: Context, records: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The minimal Faust table relay over the same records."""
    app_id = f"bench-frelay-{uuid.uuid4().hex[:8]}"
    settings = ctx.base.model_copy(update={"topic_prefix": f"{app_id}.", "app_id": app_id})
    source, sink = f"{app_id}.in", f"{app_id}.out"
    port = ctx.ports.take(1)
    data_dir = ctx.run_dir / "drain" / app_id
    env = {
        **os.environ,
        "RELAY_APP_ID": app_id,
        "RELAY_SOURCE": source,
        "RELAY_SINK": sink,
        "DATA_DIR": str(data_dir),
        "WEB_PORT": str(port),
        "WEB_BIND": "127.0.0.1",
        "KAFKA_BOOTSTRAP_SERVERS": ctx.base.kafka_bootstrap_servers,
        "PYTHONPATH": str(REPO),
    }
    worker = FaustWorker("bench.faust_relay", env, data_dir / "relay.log", port)
    _create(settings, source, sink)
    try:
        loaded = load(settings, source, records)
        result = _measure(settings, worker, sink, len(records), None, "faust relay")
        result["load_s"] = loaded
        result["app_id"] = app_id
        return result
    finally:
        if not ctx.keep_topics:
            _delete_all(settings)


def process_manager(
    ctx: Context, records: list[tuple[bytes, bytes]], hot_path: str
) -> dict[str, Any]:
    """One process-manager worker, modules off, draining ``records`` from carts.events."""
    env = {
        "WORKER_RUNS_MODULES": "false",
        "PROCESS_TIMEOUTS": '{"AwaitingOrder": 3600}',
        "HOT_PATH": hot_path,
    }
    # a data directory of its own: the same records, so the same keys, in each run
    sc = Scenario(f"drain-{hot_path}", ctx.base, ctx.run_dir, ctx.ports, 1, env, ctx.keep_topics)
    worker_env = {**sc.env, "DATA_DIR": str(sc.data_dir / "w1"), "WEB_PORT": str(sc.web_port)}
    worker = FaustWorker("streams.process.worker", worker_env, sc.data_dir / "w1.log", sc.web_port)
    ensure_topics(sc.settings)
    try:
        loaded = load(sc.settings, sc.settings.topic(events_of("carts")), records)
        result = _measure(
            sc.settings,
            worker,
            sc.settings.topic(commands_of("orders")),
            len(records),
            INIT_ORDER,
            f"process-manager drain (HOT_PATH={hot_path})",
        )
        result["load_s"] = loaded
        result["app_id"] = sc.settings.app_id
        return result
    finally:
        if not ctx.keep_topics:
            sc.delete_topics()


def _delete_all(settings: Settings) -> None:
    admin = AdminClient(settings.confluent_config())
    names = scenario_topics(settings)
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()
    with contextlib.suppress(Exception):
        for future in admin.delete_consumer_groups([settings.app_id], request_timeout=10).values():
            future.result()


def drain(ctx: Context, inputs: int) -> dict[str, Any]:
    """The process manager's drain rate and the minimal Faust relay's, on the same records."""
    prefix = f"drain-{uuid.uuid4().hex[:6]}"
    records = cart_finalized(prefix, inputs)
    mean = sum(len(k) + len(v) for k, v in records) / max(1, len(records))
    log(f"drain: {inputs} CartFinalized records, {mean:.0f} B key+value on average")
    relays = [faust_relay(ctx, records)]
    agent = process_manager(ctx, records, "agent")
    pm_loop = process_manager(ctx, records, "loop")
    relays.append(faust_relay(ctx, records))  # before and after: the box's load drifts
    return {
        "inputs": inputs,
        "record_bytes_mean": mean,
        "faust_relay": relays,
        "process_manager": agent,
        "process_manager_loop": pm_loop,
    }


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def relay_mean(runs: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    """The Faust relay's runs (before and after the process manager) as one: the mean rate
    and CPU per record, the fewest records relayed, each run's rate."""
    if isinstance(runs, dict):
        return runs
    if not runs:
        return {}
    cpus = [r.get("cpu") or {} for r in runs]
    names = {n for c in cpus for n in c.get("ms_per_unit") or {}}
    return {
        "outputs": min(r.get("outputs", 0) for r in runs),
        "per_s": _mean([r.get("per_s") for r in runs]),
        "steady_per_s": _mean([r.get("steady_per_s") for r in runs]),
        "runs_per_s": [r.get("per_s") for r in runs],
        "cpu": {
            "ms_per_unit": {
                n: _mean([(c.get("ms_per_unit") or {}).get(n) for c in cpus]) for n in names
            },
            "machine_ms_per_unit": _mean([c.get("machine_ms_per_unit") for c in cpus]),
        },
    }
