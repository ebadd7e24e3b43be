"""python -m bench.spike [--inputs N] [--per-key K] [--only a,b,c] [--restore] [--rebalance c]

Loads the same N records for each candidate, drains them one after another, checks each,
and prints candidate, msgs/s and the ratio to (a); the figures go to .data/spike/<time>/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from bench.common import REPO, log
from bench.spike import core
from bench.spike.runner import CANDIDATES, Run
from streams.settings import get_settings


def table(results: list[dict[str, Any]], inputs: int) -> str:
    # (a) may run more than once (first and last: the shared machine's load drifts): the mean
    runs = [r["per_s"] for r in results if r["candidate"] == "a" and r["per_s"]]
    baseline = sum(runs) / len(runs) if runs else None
    header = f"{'candidate':<48} {'msgs/s':>9} {'x (a)':>7} {'cpu ms/msg':>10} {'check':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        per_s = r["per_s"]
        ratio = f"{per_s / baseline:.1f}" if per_s and baseline else "-"
        cpu = r.get("worker_cpu_s")
        ms = f"{1000 * cpu / inputs:.3f}" if cpu == cpu and cpu is not None else "-"
        ok = "ok" if r["check"]["ok"] and r["check"]["outputs"] == inputs else "FAIL"
        rate = f"{per_s:,.0f}" if per_s else "-"
        lines.append(f"{r['title']:<48} {rate:>9} {ratio:>7} {ms:>10} {ok:>6}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spike")
    parser.add_argument("--inputs", type=int, default=60_000)
    parser.add_argument("--per-key", type=int, default=10)
    parser.add_argument("--only", default="a,a2,b,c")
    parser.add_argument("--restore", action="store_true", help="probe Faust's restore of (c)")
    parser.add_argument(
        "--restore-unpatched", action="store_true", help="also probe Faust's restore unpatched"
    )
    parser.add_argument(
        "--rebalance", default="", help="candidates to run again with a second worker joining"
    )
    parser.add_argument("--keep-topics", action="store_true")
    args = parser.parse_args()
    run_dir = REPO / ".data" / "spike" / time.strftime("%Y%m%dT%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    records = core.records(f"o{uuid.uuid4().hex[:6]}", args.inputs, args.per_key)
    mean = sum(len(k) + len(v) for k, v in records) / len(records)
    log(f"spike: {len(records)} records, {len(records) // args.per_key} orders, {mean:.0f} B")
    run = Run(get_settings(), run_dir, records, keep=args.keep_topics)
    results = []
    plan = [(name, False) for name in args.only.split(",") if name]
    plan += [(name, True) for name in args.rebalance.split(",") if name]
    for name, rebalance in plan:
        candidate = CANDIDATES[name]
        probe = args.restore and name == "c"
        if rebalance:
            results.append(run.rebalance(candidate))
        else:
            results.append(run.measure(candidate, probe, probe and args.restore_unpatched))
        summary = {"inputs": len(records), "record_bytes_mean": mean, "results": results}
        (run_dir / "results.json").write_text(json.dumps(summary, indent=2, default=str))
        print(table(results, len(records)), file=sys.stderr)  # so far, in case of a timeout
    print(table(results, len(records)))
    for r in results:
        if "restore" in r:
            print(f"restore probes of {r['candidate']}: {json.dumps(r['restore'])}")
    log(f"spike: figures in {run_dir / 'results.json'}")


if __name__ == "__main__":
    main()
