"""The scenarios: end to end, replay/verify, cost growth, timeout precision."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.baseline import raw_read
from bench.common import (
    PYTHON,
    REPO,
    CpuWindow,
    Drive,
    Ports,
    Scenario,
    end_offsets,
    log,
    percentile,
    reader_at_end,
    wait_quiet,
)
from bench.hops import hops
from streams.kafka.topics import PROCESS_INPUTS
from streams.settings import Settings
from streams.tools.demo import MIX, Kind, seed_stock

PAID = MIX[0]  # card_ok, in stock: Completed, no timeouts
SILENT = next(k for k in MIX if k.payment_method == "card_no_response")  # stays AwaitingPayment


@dataclass
class Context:
    base: Settings
    run_dir: Path
    ports: Ports
    keep_topics: bool = False
    profile_s: float = 0.0
    # each worker runs the process manager and has a module runner process beside it (the
    # deploy/workers.sh default); False: the module handlers run inside the e2e workers
    modules_apart: bool = True


def _orders(prefix: str, first: int, count: int, kind: Kind) -> list[tuple[str, int, Kind]]:
    return [(f"{prefix}-{i:07d}", i, kind) for i in range(first, first + count)]


def _sum(offsets: dict[str, int]) -> int:
    return sum(offsets.values())


def _profile(pid: int, seconds: float, out: Path, gil: bool = False) -> None:
    """py-spy record (raw collapsed stacks, per thread); ``gil``: only the thread holding it."""
    argv = [str(REPO / ".venv/bin/py-spy"), "record", "-p", str(pid), "-d", str(int(seconds))]
    argv += ["-f", "raw", "-o", str(out), "--threads", *(["--gil"] if gil else [])]
    log(f"py-spy on pid {pid} for {seconds:.0f} s -> {out}")
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60)


def _profile_both(pid: int, seconds: float, directory: Path, result: dict[str, Any]) -> None:
    """All threads for ``seconds``, then only the GIL holder for ``seconds``."""
    for name, gil in (("py-spy-w1.raw", False), ("py-spy-w1-gil.raw", True)):
        _profile(pid, seconds, directory / name, gil)
        result.setdefault("profile_files", []).append(str(directory / name))


def e2e(
    ctx: Context,
    workers: int,
    orders: int,
    window: int,
    paced_seconds: float,
    after_stop: Callable[[Scenario], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Throughput of ``orders`` paid orders fed as fast as the system takes them, then
    latency at ~70% of that rate; Kafka records produced to every topic of the scenario."""
    result: dict[str, Any] = {
        "workers": workers,
        "orders": orders,
        "window": window,
        "modules_apart": ctx.modules_apart,
    }
    env = {"WORKER_RUNS_MODULES": "false" if ctx.modules_apart else "true"}
    with Scenario(f"e2e{workers}w", ctx.base, ctx.run_dir, ctx.ports, workers, env) as sc:
        sc.keep_topics = True  # deleted below, after after_stop
        try:
            seed_stock(sc.settings)
            reader = reader_at_end(sc.settings, sc.settings.process_changelog_topic())
            result["rss_idle_mib"] = sc.rss_mib()
            before = end_offsets(sc.settings)
            profiler = None
            if ctx.profile_s and workers == 1:
                profiler = threading.Timer(
                    8.0, _profile_both, (sc.pids()[0], ctx.profile_s, sc.data_dir, result)
                )
                profiler.start()
            cpu = CpuWindow(sc.pids() + sc.pids("m")).start()
            parts = sc.cpu_by_component()
            drive = Drive(sc.settings, _orders(sc.settings.app_id, 0, orders, PAID), window=window)
            drive.timeout = max(600.0, orders / 5)
            drive.run(reader, f"e2e {workers}w throughput")
            at_end = end_offsets(sc.settings)
            result["cpu"] = cpu.stop()
            result["cpu_per_order"] = parts.stop(len(drive.done_at))
            if profiler is not None:
                profiler.join(timeout=2 * ctx.profile_s + 120)
            result["rss_after_mib"] = sc.rss_mib()
            quiet = wait_quiet(sc.settings)
            done = len(drive.done_at)
            span = drive.last_done() - drive.feed_started
            produced = _sum(at_end) - _sum(before)
            per_order = (_sum(quiet) - _sum(before)) / max(orders, 1)
            rate = drive.steady_rate()
            lat = drive.latencies_ms()
            result.update(
                completed=done,
                steady_orders_per_s=rate,
                overall_orders_per_s=done / span if span > 0 else float("nan"),
                run_s=span,
                kafka_records_during_run=produced,
                kafka_records_per_s=produced / span if span > 0 else float("nan"),
                kafka_records_per_order=per_order,
                records_per_topic={t: quiet.get(t, 0) - before.get(t, 0) for t in sorted(quiet)},
                saturated_latency_p50_ms=percentile(lat, 0.5) if lat else None,
            )
            log(
                f"e2e {workers}w: {done}/{orders} completed, steady {rate:.1f} orders/s, "
                f"{produced / span:.0f} Kafka records/s, {per_order:.1f} records/order"
            )
            # Latency at ~70% of the measured rate
            paced_rate = 0.7 * rate
            count = int(min(orders, max(200, paced_rate * paced_seconds)))
            paced_orders = _orders(sc.settings.app_id, orders, count, PAID)
            paced = Drive(
                sc.settings,
                paced_orders,
                window=10**9,
                rate=paced_rate,
                timeout=count / max(paced_rate, 1) + 300,
            ).run(reader, f"e2e {workers}w paced")
            lat = paced.latencies_ms()
            paced_span = paced.last_done() - paced.feed_started
            result["paced"] = {
                "target_orders_per_s": paced_rate,
                "orders": count,
                "completed": len(paced.done_at),
                "achieved_orders_per_s": len(paced.done_at) / paced_span,
                "latency_p50_ms": percentile(lat, 0.5) if lat else None,
                "latency_p95_ms": percentile(lat, 0.95) if lat else None,
                "latency_p99_ms": percentile(lat, 0.99) if lat else None,
                "latency_max_ms": max(lat) if lat else None,
            }
            log(f"e2e {workers}w paced: {result['paced']}")
            reader.close()
            wait_quiet(sc.settings, settle=2.0, limit=30.0)
            result["paced"]["hops"] = hops(
                sc.settings, {key.encode(): round(t * 1000) for key, t in paced.done_at.items()}
            )
            log(f"e2e {workers}w paced, slowest hops: {result['paced']['hops']}")
            result["topic_prefix"] = sc.settings.topic_prefix
            result["app_id"] = sc.settings.app_id
            sc.stop_workers()
            if after_stop is not None:
                result["after_stop"] = after_stop(sc)
        finally:
            sc.keep_topics = ctx.keep_topics
    return result


def _run_tool(sc: Scenario, module: str, *args: str) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run(
        [str(PYTHON), "-m", "streams.cli", module, *args, "--json"],
        env=sc.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.monotonic() - started
    out: dict[str, Any] = {"exit_code": proc.returncode, "wall_s": wall}
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out["error"] = (proc.stderr or proc.stdout)[-1500:]
        return out
    out.update(
        events=report.get("events"),
        tool_elapsed_s=report.get("elapsed_s"),
        tool_events_per_s=report.get("events_per_s"),
        wall_events_per_s=(report.get("events") or 0) / wall,
        differences=len(report["differences"]) if "differences" in report else None,
        processes=report.get("processes"),
    )
    if proc.returncode not in (0, 1):
        out["error"] = proc.stderr[-1500:]
    log(f"{module}: {out}")
    return out


def tools(sc: Scenario) -> dict[str, Any]:
    """Time streams.tools.verify and streams.tools.replay on a stopped scenario's topics,
    against a raw read (confluent-kafka, no decoding) of the topics each one reads."""
    s = sc.settings
    inputs = [s.topic(t) for t in PROCESS_INPUTS]
    result: dict[str, Any] = {}
    raw_inputs = raw_read(s, inputs)
    raw_with_table = raw_read(s, [*inputs, s.process_changelog_topic()])
    log(f"raw read of the inputs: {raw_inputs}; with the table: {raw_with_table}")
    result["raw_inputs"] = raw_inputs
    result["raw_inputs_and_table"] = raw_with_table
    result["verify"] = _run_tool(sc, "verify")
    result["replay"] = _run_tool(sc, "replay", "--to-version", "2")
    return result


def _create_live(
    sc: Scenario, reader: Any, prefix: str, first: int, count: int, window: int, budget: float
) -> tuple[Drive, int]:
    """``count`` card_no_response orders until each is AwaitingPayment; feeding stops after
    ``budget`` seconds (the orders in flight then still finish). Returns the drive, how many."""
    drive = Drive(
        sc.settings,
        _orders(prefix, first, count, SILENT),
        window=window,
        markers=(b'"state":"AwaitingPayment"',),
        timeout=budget + 180,
        feed_budget=budget,
    )
    drive.run(reader, f"live processes {first}..{first + count}")
    return drive, len(drive.done_at)


def growth(
    ctx: Context,
    live_small: int,
    rss_mark: int,
    live_target: int,
    batch: int,
    budget: float,
    window: int,
) -> dict[str, Any]:
    """Throughput with few vs many live processes, and worker RSS vs stored processes."""
    env = {"PROCESS_TIMEOUTS": json.dumps({"AwaitingPayment": 3600})}
    result: dict[str, Any] = {"batch": batch}
    with Scenario("growth", ctx.base, ctx.run_dir, ctx.ports, 1, env, ctx.keep_topics) as sc:
        seed_stock(sc.settings)
        reader = reader_at_end(sc.settings, sc.settings.process_changelog_topic())
        prefix = sc.settings.app_id
        result["rss_idle_mib"] = sc.rss_mib()[0]
        live, next_index = 0, 0
        stored = 0

        def add_live(count: int, limit: float) -> Drive:
            nonlocal live, next_index, stored
            drive, made = _create_live(
                sc, reader, prefix + "-live", next_index, count, window, limit
            )
            live += made
            stored += len(drive.sent_at)
            next_index += count
            return drive

        def throughput(label: str) -> dict[str, Any]:
            nonlocal stored, next_index
            drive = Drive(
                sc.settings,
                _orders(prefix + "-paid", next_index, batch, PAID),
                window=max(100, batch // 10),
            )
            drive.run(reader, f"throughput with {live} live")
            next_index += batch
            stored += batch
            time.sleep(6)  # let the payments settle (5 s) so they do not overlap the next step
            out = {
                "live_processes": live,
                "completed": len(drive.done_at),
                "steady_orders_per_s": drive.steady_rate(),
                "rss_mib": sc.rss_mib()[0],
                "stored_processes": stored,
            }
            log(f"growth {label}: {out}")
            return out

        add_live(live_small, 600)
        result["small"] = throughput("small")
        if stored < rss_mark:
            add_live(rss_mark - stored, 600)
        result["rss_at_mark"] = {"stored_processes": stored, "rss_mib": sc.rss_mib()[0]}
        log(f"growth: RSS at {stored} stored: {result['rss_at_mark']['rss_mib']:.0f} MiB")
        started = time.monotonic()
        before = live
        drive = add_live(max(0, live_target - live), budget)
        made = live - before
        elapsed = drive.last_done() - drive.feed_started
        result["creation"] = {
            "live_created": made,
            "seconds": time.monotonic() - started,
            "steady_live_per_s": drive.steady_rate(),
            "target": live_target,
            "budget_s": budget,
            "reached_target": live >= live_target,
            "creation_span_s": elapsed,
        }
        result["large"] = throughput("large")
        result["rss_at_max"] = {"stored_processes": stored, "rss_mib": sc.rss_mib()[0]}
        reader.close()
    return result


def timeouts(ctx: Context, count: int, rate: float, timeout_s: float) -> dict[str, Any]:
    """Lateness of the AwaitingPayment timeout: when the process left the state minus its
    deadline, from the process table's changelog."""
    env = {"PROCESS_TIMEOUTS": json.dumps({"AwaitingPayment": timeout_s})}
    deadline: dict[str, datetime] = {}
    fired: dict[str, float] = {}
    written: dict[str, float] = {}
    other: dict[str, str] = {}

    def on_record(key: bytes, value: bytes, ts_ms: int) -> None:
        order_id = key.decode()
        if order_id in written:
            return
        process = json.loads(value)
        if process["state"] == "AwaitingPayment":
            deadline[order_id] = datetime.fromisoformat(process["deadline"])
            return
        for entry in process.get("history", ()):
            if entry.get("from_state") == "AwaitingPayment" and order_id in deadline:
                due = deadline[order_id]
                fired[order_id] = (datetime.fromisoformat(entry["at"]) - due).total_seconds()
                written[order_id] = ts_ms / 1000 - due.timestamp()
                if entry["message_type"] != "ProcessTimedOut":
                    other[order_id] = entry["message_type"]

    with Scenario("timeouts", ctx.base, ctx.run_dir, ctx.ports, 1, env, ctx.keep_topics) as sc:
        seed_stock(sc.settings)
        reader = reader_at_end(sc.settings, sc.settings.process_changelog_topic())
        drive = Drive(
            sc.settings,
            _orders(sc.settings.app_id, 0, count, SILENT),
            window=10**9,
            rate=rate,
            markers=(b'"from_state":"AwaitingPayment"',),
            timeout=count / rate + timeout_s + 120,
            on_record=on_record,
        ).run(reader, "timeouts")
        reader.close()
    ms_fired = [v * 1000 for v in fired.values()]
    ms_written = [v * 1000 for v in written.values()]

    def stats(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50_ms": None, "p95_ms": None, "max_ms": None, "min_ms": None}
        return {
            "p50_ms": percentile(values, 0.5),
            "p95_ms": percentile(values, 0.95),
            "max_ms": max(values),
            "min_ms": min(values),
        }

    result = {
        "orders": count,
        "rate": rate,
        "timeout_s": timeout_s,
        "left_awaiting_payment": len(written),
        "not_by_timeout": len(other),
        "done": len(drive.done_at),
        "timer_fired_minus_deadline": stats(ms_fired),
        "left_state_minus_deadline": stats(ms_written),
    }
    log(f"timeouts: {result}")
    return result
