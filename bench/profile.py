"""Summarize a py-spy ``-f raw`` (collapsed stacks) file: hot spots by share of samples.

python -m bench.profile FILE [--top 25]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _frame(raw: str) -> str:
    match = FRAME.match(raw.strip())
    if not match:
        return raw.strip()
    return f"{_short(match['file'])}:{match['func']}"


def summarize(path: Path, top: int = 60) -> dict[str, Any]:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"error": f"{path} missing"}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = next((p for p in parts if p.startswith("thread ")), "thread ?")
        frames = [_frame(p) for p in parts if not p.startswith(("thread ", "process "))]
        if not frames:
            continue
        total += count
        threads[thread] += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def listing(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "samples": n, "share": n / total}
            for frame, n in counter.most_common(top)
        ]

    return {
        "file": str(path),
        "samples": total,
        "self": listing(self_counts),
        "inclusive": listing(inclusive),
        "threads": listing(threads),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    summary = summarize(args.file, args.top)
    if "error" in summary:
        print(summary["error"], file=sys.stderr)
        return 1
    print(f"{summary['samples']} samples")
    for title in ("threads", "self", "inclusive"):
        print(f"\n{title}:")
        for entry in summary[title]:
            print(f"  {entry['share']:6.1%}  {entry['samples']:7d}  {entry['frame']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
