"""python -m bench [--quick] [--only baseline,drain,e2e,tools,growth,timeouts] [--profile S]
                 [--port-base P]

Runs the scenarios on fresh isolated topics with their own workers (deploy/workers.sh), prints
a table in which every figure has a baseline measured in the same run, and writes the results
to .data/bench/results-<timestamp>.json and bench/latest.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baseline
from bench.common import REPO, Ports, log
from bench.drain import drain, relay_mean
from bench.profile import summarize
from bench.scenarios import Context, e2e, growth, timeouts, tools
from streams.settings import get_settings

ALL = ("baseline", "drain", "e2e", "tools", "growth", "timeouts")
SHARED = ("broker", "postgres")  # the machine's services, not the scenario's own processes
COMPONENTS = {
    "broker": "Kafka broker",
    "postgres": "PostgreSQL",
    "worker": "Faust worker(s)",
    "module_runner": "module runner(s)",
    "driver": "load driver",
}


def kafka_version() -> str:
    """The broker version deploy/kafka/pom.xml pins."""
    pom = (Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "pom.xml").read_text()
    return pom.split("<kafka.version>", 1)[1].split("<", 1)[0]


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": int(nproc or 0),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "kafka": kafka_version(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg_at_start": list(Path("/proc/loadavg").read_text().split()[:3]),
    }


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0 or math.isnan(value) or math.isnan(base):
        return None
    return value / base


def row(
    figure: str,
    value: float | None,
    unit: str,
    base: float | None,
    base_label: str,
    note: str = "",
    r: float | None = None,
) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "baseline": base,
        "baseline_label": base_label,
        "ratio": r if r is not None else ratio(value, base),
        "note": note,
    }


def missing(figure: str, why: str) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": None,
        "unit": "",
        "baseline": None,
        "baseline_label": "",
        "ratio": None,
        "note": why,
    }


HOT_PATHS = {"agent": "process_manager", "loop": "process_manager_loop"}


def drain_rows(d: dict[str, Any], relay: float | None) -> list[dict[str, Any]]:
    """The process manager's drain on each hot path against the minimal Faust relay and the
    raw relay, and their CPU per input."""
    fr = relay_mean(d.get("faust_relay") or {})
    rows: list[dict[str, Any]] = []
    for hot_path, key in HOT_PATHS.items():
        if key in d:
            rows += _pm_drain_rows(f"PM drain, HOT_PATH={hot_path}", d[key] or {}, fr, d, relay)
    if fr.get("per_s"):
        rows.append(
            row(
                "minimal Faust table relay",
                fr["per_s"],
                "msgs/s",
                relay,
                "raw relay msgs/s",
                f"{fr['outputs']}/{d['inputs']} relayed; table[key] = value (RocksDB, "
                f"changelog), then send; runs before and after the PM: "
                + ", ".join(fmt(r) for r in fr.get("runs_per_s", [fr["per_s"]]))
                + f"; 10-90 % {fmt(fr.get('steady_per_s'))}/s",
            )
        )
    return rows


def _pm_drain_rows(
    label: str, pm: dict[str, Any], fr: dict[str, Any], d: dict[str, Any], relay: float | None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not pm.get("per_s"):
        rows.append(missing(f"{label}: inputs/s", f"not measured: {pm.get('outputs', 0)} outputs"))
    applied = f"{pm.get('outputs', 0)}/{d['inputs']} inputs applied"
    if pm and not pm.get("all_applied"):
        applied = f"ONLY {applied} ({pm.get('distinct_keys', 0)} distinct orders)"
    span = f"{pm['span_s']:.1f} s" if pm.get("span_s") else "-"
    if pm.get("per_s"):
        rows.append(
            row(
                f"{label}: inputs/s (1 worker, modules off)",
                pm["per_s"],
                "inputs/s",
                fr.get("per_s"),
                "minimal Faust table relay (mean of 2), same records",
                f"{applied} (one InitOrder each), {span} first->last command timestamp; "
                f"10-90 % {fmt(pm.get('steady_per_s'))}/s; {d['record_bytes_mean']:.0f} B records",
            )
        )
        rows.append(
            row(f"{label} vs raw relay", pm["per_s"], "inputs/s", relay, "raw relay msgs/s")
        )
    pm_cpu, fr_cpu = pm.get("cpu") or {}, fr.get("cpu") or {}
    for name in ("worker", "broker"):
        value = (pm_cpu.get("ms_per_unit") or {}).get(name)
        if value is None:
            continue
        rows.append(
            row(
                f"{label}: CPU per input, {COMPONENTS[name]}",
                value,
                "ms CPU",
                (fr_cpu.get("ms_per_unit") or {}).get(name),
                f"Faust relay's {COMPONENTS[name]} per record",
                f"machine {fmt(pm_cpu.get('machine_ms_per_unit'))} ms per input in all "
                f"(relay {fmt(fr_cpu.get('machine_ms_per_unit'))}); over "
                f"{pm_cpu['units']} inputs in {pm_cpu['wall_s']:.1f} s",
            )
        )
    return rows


def cpu_rows(prefix: str, c: dict[str, Any]) -> list[dict[str, Any]]:
    """ms of CPU per completed order of each component, against all of ours together."""
    ours = c.get("ours_ms_per_unit")
    rows = []
    for name, label in COMPONENTS.items():
        value = c["ms_per_unit"].get(name)
        if name not in c["ms_per_unit"]:
            continue
        rows.append(
            row(
                f"{prefix}: CPU per order, {label}",
                value,
                "ms CPU",
                ours,
                "all our components",
                f"{c['cpu_s'][name]:.1f} CPU s in the window"
                + ("; shared: other clients' work counts too" if name in SHARED else ""),
            )
        )
    rows.append(
        row(
            f"{prefix}: CPU per order, all ours",
            ours,
            "ms CPU",
            c.get("machine_ms_per_unit"),
            "the machine's busy CPU per order",
            f"the rest, {fmt(c.get('other_ms_per_unit'))} ms, is other processes and the "
            f"kernel; {c['units']} orders over {c['wall_s']:.0f} s",
        )
    )
    return rows


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = results.get("baseline", {})
    relay_rates = [r["msgs_per_s"] for r in base.get("relay", [])]
    relay = sorted(relay_rates)[len(relay_rates) // 2] if relay_rates else None
    hop = base.get("hop_latency", {}).get("p50_ms")
    if relay is not None:
        spread = f"runs: {', '.join(f'{r:,.0f}' for r in relay_rates)}"
        rows.append(
            row("raw relay consume->produce (median)", relay, "msgs/s", relay, "itself", spread)
        )
    if hop is not None:
        hl = base["hop_latency"]
        rows.append(
            row(
                "raw hop latency p50",
                hop,
                "ms",
                hop,
                "itself",
                f"p95 {hl['p95_ms']:.1f} ms, p99 {hl['p99_ms']:.1f} ms",
            )
        )
    if "drain" in results.get("selected", []) and not results.get("drain"):
        rows.append(missing("PM drain", "not measured: the drain scenario failed"))
    if results.get("drain"):
        rows += drain_rows(results["drain"], relay)
    for key in ("e2e1w", "e2e2w"):
        e = results.get(key)
        if not e:
            continue
        w = e["workers"]
        per_order = e["kafka_records_per_order"]
        ceiling = relay / per_order if relay and per_order else None
        cpu = e.get("cpu", {})
        cpu_note = ""
        if cpu:
            shares = [f"{c:.0%}" for c in cpu["worker_cpu_share_of_one_core"]]
            busy = cpu["machine_busy_share"]
            if e.get("modules_apart"):
                cpu_note = (
                    f"; modules apart: worker CPU {', '.join(shares[:w])}, module runner CPU "
                    f"{', '.join(shares[w:])} of a core, machine {busy:.0%} busy"
                )
            else:
                cpu_note = f"; worker CPU {', '.join(shares)} of a core, machine {busy:.0%} busy"
        rows.append(
            row(
                f"e2e {w}w: completed orders/s (steady)",
                e["steady_orders_per_s"],
                "orders/s",
                ceiling,
                "relay msgs/s / records per order",
                f"{e['completed']}/{e['orders']} completed, window {e['window']}, "
                f"{per_order:.1f} Kafka records/order{cpu_note}",
            )
        )
        rows.append(
            row(
                f"e2e {w}w: Kafka records produced/s",
                e["kafka_records_per_s"],
                "records/s",
                relay,
                "relay msgs/s",
                "end-offset deltas of every topic incl. changelog, transaction markers included",
            )
        )
        p = e.get("paced") or {}
        if p.get("latency_p50_ms") is not None:
            note = (
                f"at {p['target_orders_per_s']:.0f} orders/s target "
                f"({p['achieved_orders_per_s']:.0f} achieved), {p['completed']}/{p['orders']}; "
                f"p95 {p['latency_p95_ms']:.0f}, p99 {p['latency_p99_ms']:.0f}, "
                f"max {p['latency_max_ms']:.0f} ms"
            )
            rows.append(
                row(
                    f"e2e {w}w: latency FinalizeCart->terminal p50",
                    p["latency_p50_ms"],
                    "ms",
                    hop,
                    "raw hop p50",
                    note,
                )
            )
            rows.append(
                row(f"e2e {w}w: latency p99", p["latency_p99_ms"], "ms", hop, "raw hop p50")
            )
            for h in p.get("hops") or []:
                rows.append(
                    row(
                        f"e2e {w}w: hop {h['hop']} p50",
                        h["p50_ms"],
                        "ms",
                        hop,
                        "raw hop p50",
                        f"p99 {h['p99_ms']:.0f} ms, mean {h['mean_ms']:.0f}, {h['n']} orders "
                        "(record timestamps; the slowest hops by mean)",
                    )
                )
        if e.get("cpu_per_order"):
            rows += cpu_rows(f"e2e {w}w", e["cpu_per_order"])
        if e.get("rss_after_mib") and e.get("rss_idle_mib"):
            rows.append(
                row(
                    f"e2e {w}w: worker RSS after the run",
                    max(e["rss_after_mib"]),
                    "MiB",
                    max(e["rss_idle_mib"]),
                    "idle worker RSS",
                    f"{e['completed']:,} completed processes stored (split over {w} worker(s))",
                )
            )
    if "e2e1w" in results and "e2e2w" in results:
        one, two = results["e2e1w"]["steady_orders_per_s"], results["e2e2w"]["steady_orders_per_s"]
        rows.append(row("e2e scaling 2w vs 1w", two, "orders/s", one, "1 worker orders/s"))
    t = results.get("tools")
    if "tools" in results.get("selected", []) and not t:
        rows.append(missing("replay / verify", "not measured: no e2e run to read"))
    if t:
        for tool, raw_key in (("verify", "raw_inputs_and_table"), ("replay", "raw_inputs")):
            got = t.get(tool, {})
            raw = t[raw_key]
            raw_eps = t["raw_inputs"]["records"] / raw["elapsed_s"]
            if got.get("missing"):
                rows.append(missing(f"{tool} events/s", "not measured: tool missing"))
            elif got.get("tool_events_per_s") is None:
                rows.append(missing(f"{tool} events/s", f"not measured: {got.get('error', '')}"))
            else:
                note = (
                    f"{got['events']} events, {got['tool_elapsed_s']:.1f} s in the tool, "
                    f"{got['wall_s']:.1f} s wall ({got['wall_events_per_s']:,.0f}/s), "
                    f"exit {got['exit_code']}"
                )
                if got.get("differences") is not None:
                    note += f", {got['differences']} differences"
                rows.append(
                    row(
                        f"{tool} events/s",
                        got["tool_events_per_s"],
                        "events/s",
                        raw_eps,
                        "raw read of the same topics",
                        note,
                    )
                )
    g = results.get("growth")
    if g:
        small, large = g["small"], g["large"]
        c = g["creation"]
        rows.append(
            row(
                f"throughput with {large['live_processes']:,} live",
                large["steady_orders_per_s"],
                "orders/s",
                small["steady_orders_per_s"],
                f"with {small['live_processes']:,} live",
                f"batch {g['batch']}; target {c['target']:,} live"
                + ("" if c["reached_target"] else f", cut by the {c['budget_s']:.0f} s budget"),
            )
        )
        span = c.get("creation_span_s") or 0
        live_rate = c["live_created"] / span if span > 0 else None
        eta = 1_000_000 / live_rate / 60 if live_rate and live_rate > 0 else None
        rows.append(
            row(
                "live process creation",
                live_rate,
                "procs/s",
                results.get("e2e1w", {}).get("steady_orders_per_s"),
                "e2e 1w completed orders/s",
                f"{c['live_created']:,} created in {span:.0f} s (first sent to last in"
                f" AwaitingPayment)"
                + (f"; 1M would take ~{eta:.0f} min at this rate (extrapolated)" if eta else ""),
            )
        )
        mark, top = g["rss_at_mark"], g["rss_at_max"]
        extra = max(1, top["stored_processes"] - mark["stored_processes"])
        per_process = (top["rss_mib"] - mark["rss_mib"]) * 1024 / extra
        rows.append(
            row(
                f"worker RSS at {mark['stored_processes']:,} stored",
                mark["rss_mib"],
                "MiB",
                g["rss_idle_mib"],
                "idle worker RSS",
            )
        )
        rows.append(
            row(
                f"worker RSS at {top['stored_processes']:,} stored",
                top["rss_mib"],
                "MiB",
                mark["rss_mib"],
                f"RSS at {mark['stored_processes']:,} stored",
                f"{per_process:.2f} KiB per extra process",
            )
        )
    to = results.get("timeouts")
    if to:
        for label, key in (
            ("left AwaitingPayment", "left_state_minus_deadline"),
            ("timer fired", "timer_fired_minus_deadline"),
        ):
            s = to[key]
            if s["p50_ms"] is None:
                rows.append(missing(f"timeout: {label} - deadline", "no process left the state"))
                continue
            rows.append(
                row(
                    f"timeout: {label} - deadline p50",
                    s["p50_ms"],
                    "ms",
                    hop,
                    "raw hop p50",
                    f"p95 {s['p95_ms']:.0f} ms, max {s['max_ms']:.0f} ms, "
                    f"min {s['min_ms']:.0f} ms; "
                    f"{to['left_awaiting_payment']}/{to['orders']} orders at {to['rate']:.0f}/s, "
                    f"timeout {to['timeout_s']:.0f} s, check interval 0.5 s",
                )
            )
    return rows


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    header = f"{'figure':44} {'value':>12} {'unit':10} {'baseline':>10} {'ratio':>7}"
    header += "  baseline is / note"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio_text = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(
            f"{r['figure'][:44]:44} {fmt(r['value']):>12} {r['unit'][:10]:10} "
            f"{fmt(r['baseline']):>10} {ratio_text:>7}  "
            + "; ".join(x for x in (r["baseline_label"], r["note"]) if x)
        )
    return "\n".join(lines)


PROJECT = ("streams/", "aggregates/", "process_manager/")


def profile_text(title: str, top: dict[str, Any]) -> str:
    lines = [f"\npy-spy {title}: {top['samples']} samples"]
    lines.append(
        "  threads: "
        + ", ".join(
            f"{t['frame'].split(': ', 1)[-1]} {t['share']:.0%}" for t in top["threads"][:10]
        )
    )
    lines.append("  self (share of samples):")
    lines += [f"    {e['share']:6.1%}  {e['frame']}" for e in top["self"][:15]]
    lines.append("  inclusive, project code:")
    project = [e for e in top["inclusive"] if e["frame"].startswith(PROJECT)]
    lines += [f"    {e['share']:6.1%}  {e['frame']}" for e in project[:15]]
    return "\n".join(lines)


def hop_latency(settings: Any) -> dict[str, Any]:
    """The raw hop latency; once more when a first try got no record back (seen once)."""
    result = baseline.hop_latency(settings)
    if not result["messages"]:
        log("hop latency: no record came back; trying once more")
        result = baseline.hop_latency(settings)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for CI")
    parser.add_argument("--orders", type=int, help="e2e orders (20,000; quick 2,000)")
    parser.add_argument("--workers", default="1,2", help="e2e worker counts (1,2)")
    parser.add_argument(
        "--window", type=int, help="orders in flight when feeding (orders/10, 100..1000)"
    )
    parser.add_argument("--only", default=",".join(ALL), help=f"subset of {','.join(ALL)}")
    parser.add_argument(
        "--drain-inputs", type=int, help="inputs pre-loaded for the drain (20,000; quick 5,000)"
    )
    parser.add_argument("--live-target", type=int, help="live processes (100,000; quick 10,000)")
    parser.add_argument("--growth-budget", type=float, help="seconds of feeding live ones")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy the 1-worker e2e")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete bench topics")
    parser.add_argument(
        "--port-base", type=int, default=16200, help="first web port of the scenarios' workers"
    )
    parser.add_argument(
        "--modules-in-worker",
        action="store_true",
        help="e2e: module handlers inside the workers, not in runners beside them",
    )
    args = parser.parse_args(argv)
    selected = [s.strip() for s in args.only.split(",") if s.strip()]
    quick = args.quick
    orders = args.orders or (2000 if quick else 20000)
    window = args.window or min(1000, max(100, orders // 10))
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    run_dir = REPO / ".data" / "bench" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    base = get_settings()
    ctx = Context(
        base,
        run_dir,
        Ports(args.port_base),
        args.keep_topics,
        args.profile,
        not args.modules_in_worker,
    )
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {
        "command": command.strip(),
        "started": started.isoformat(),
        "quick": quick,
        "machine": machine(),
        "selected": selected,
    }
    t0 = time.monotonic()
    relay_count = max(200_000, orders * 20)
    failures: list[str] = []

    def attempt(name: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - report, go on with the next scenario
            log(f"{name} failed: {error!r}")
            failures.append(f"{name}: {error!r}")
            return None

    try:
        needs_baseline = any(
            s in selected for s in ("baseline", "drain", "e2e", "growth", "timeouts")
        )
        if needs_baseline:
            results["baseline"] = {
                "relay": [baseline.relay(base, relay_count), baseline.relay(base, relay_count)],
                "hop_latency": hop_latency(base),
            }
        if "drain" in selected:
            inputs = args.drain_inputs or (5000 if quick else 20000)
            results["drain"] = attempt("drain", lambda: drain(ctx, inputs))
        if "e2e" in selected:
            counts = [int(w) for w in args.workers.split(",") if w]
            for w in counts:
                after = tools if ("tools" in selected and w == max(counts)) else None
                got = attempt(
                    f"e2e{w}w",
                    lambda w=w, after=after: e2e(
                        ctx, w, orders, window, 20.0 if quick else 45.0, after
                    ),
                )
                if got is not None:
                    if "after_stop" in got:
                        results["tools"] = got.pop("after_stop")
                    for file in got.get("profile_files", []):
                        got.setdefault("profile_top", {})[Path(file).name] = summarize(Path(file))
                    results[f"e2e{w}w"] = got
        if "growth" in selected:
            results["growth"] = attempt(
                "growth",
                lambda: growth(
                    ctx,
                    live_small=1000,
                    rss_mark=10_000,
                    live_target=args.live_target or (10_000 if quick else 100_000),
                    batch=1000 if quick else 2000,
                    budget=args.growth_budget or (45.0 if quick else 150.0),
                    window=args.window or 1000,
                ),
            )
        if "timeouts" in selected:
            results["timeouts"] = attempt(
                "timeouts",
                lambda: timeouts(
                    ctx, count=300 if quick else 1000, rate=25.0 if quick else 40.0, timeout_s=2.0
                ),
            )
        if needs_baseline:
            results["baseline"]["relay"].append(baseline.relay(base, relay_count))
    except KeyboardInterrupt:
        failures.append("interrupted")
    results = {k: v for k, v in results.items() if v is not None}
    results["failures"] = failures
    results["wall_s"] = time.monotonic() - t0
    results["machine"]["load_avg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["rows"] = rows_of(results)
    text = table(results["rows"])
    print(f"\n{results['command']}  ({stamp}, {results['wall_s'] / 60:.1f} min)\n")
    print(text)
    if failures:
        print("\nfailures:\n  " + "\n  ".join(failures))
    for key in ("e2e1w", "e2e2w"):
        for name, top in results.get(key, {}).get("profile_top", {}).items():
            if "self" in top:
                print(profile_text(f"{key} worker, {name}", top))
    out = REPO / ".data" / "bench" / f"results-{stamp}.json"
    payload = json.dumps(results, indent=2, default=str)
    out.write_text(payload)
    (REPO / "bench" / "latest.json").write_text(payload)
    print(f"\nresults: {out.relative_to(REPO)} and bench/latest.json")
    return 1 if failures else 0
