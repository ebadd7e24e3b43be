"""Render a results JSON of ``python -m bench`` as Markdown (for BENCHMARKS.md).

python -m bench.report [bench/latest.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.run import fmt, rows_of


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Command: `{results['command']}` — started {results['started']}, "
        f"wall {results['wall_s'] / 60:.1f} min"
        + (" (quick mode)" if results.get("quick") else ""),
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Kafka {m['kafka']} (single node, same machine), Python {m['python']}; "
        f"load average at start {' '.join(m['load_avg_at_start'])}, "
        f"at end {' '.join(m.get('load_avg_at_end', []))}.",
        "",
        "| figure | value | unit | baseline (same run) | ratio | baseline is; notes |",
        "|---|---:|---|---:|---:|---|",
    ]
    for r in rows_of(results):
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        note = "; ".join(x for x in (r["baseline_label"], r["note"]) if x)
        lines.append(
            f"| {r['figure']} | {fmt(r['value'])} | {r['unit']} | {fmt(r['baseline'])} "
            f"| {ratio} | {note} |"
        )
    if results.get("failures"):
        lines += ["", "Failures: " + "; ".join(results["failures"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).with_name("latest.json")
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
