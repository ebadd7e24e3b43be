"""The broker's CPU by thread kind, from a JFR recording's ``jdk.ThreadCPULoad`` events.

Each event gives one Java thread's user and system load, as a share of the whole machine,
averaged since the thread's previous event; JFR's ``profile`` settings take one per thread
every 10 s. Threads are grouped by name with their numbers dropped (the eight
``data-plane-kafka-request-handler-N`` are one kind; ``C1``/``C2`` of the JIT compilers are
kept). The garbage collector's and the VM's own threads are not Java threads and have no
event: their share is what ``/proc`` counts for the broker beyond these.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

_NUMBER = re.compile(r"(?<![A-Z])\d+")


def kind(thread: str) -> str:
    """``data-plane-kafka-request-handler-3`` -> ``data-plane-kafka-request-handler-N``."""
    return _NUMBER.sub("N", thread)


def cpu_by_kind(events: list[dict[str, Any]], cores: int) -> dict[str, float]:
    """ms of CPU per second of wall time, per thread kind, over the periods the events close
    (the first instant only opens one: its loads cover an unknown span)."""
    at: dict[datetime, list[tuple[str, float]]] = defaultdict(list)
    for event in events:
        values = event["values"]
        instant = datetime.fromisoformat(values["startTime"]).replace(microsecond=0)
        thread = values["eventThread"]["javaName"] or values["eventThread"]["osName"]
        at[instant].append((kind(thread), values["user"] + values["system"]))
    instants = sorted(at)
    cpu_s: dict[str, float] = defaultdict(float)
    span_s = 0.0
    for before, instant in zip(instants, instants[1:], strict=False):
        period = (instant - before).total_seconds()
        span_s += period
        for name, load in at[instant]:
            cpu_s[name] += load * period * cores
    if span_s == 0:
        return {}
    by_kind = {name: 1000 * seconds / span_s for name, seconds in cpu_s.items()}
    return dict(sorted(by_kind.items(), key=lambda item: -item[1]))


def read(recording: Path) -> list[dict[str, Any]]:
    """The ``jdk.ThreadCPULoad`` events of a recording (the JDK's ``jfr`` tool)."""
    printed = subprocess.run(
        ["jfr", "print", "--json", "--events", "jdk.ThreadCPULoad", str(recording)],
        check=True,
        capture_output=True,
        text=True,
    )
    events: list[dict[str, Any]] = json.loads(printed.stdout)["recording"]["events"]
    return events


def summary(recording: Path, cores: int, broker_ms_per_s: float, top: int = 6) -> dict[str, int]:
    """The ``top`` thread kinds, the rest of the Java threads, and the GC and VM threads (what
    ``/proc`` counted for the broker beyond the Java threads), in ms per s."""
    by_kind = cpu_by_kind(read(recording), cores)
    shown = dict(list(by_kind.items())[:top])
    rest = sum(by_kind.values()) - sum(shown.values())
    return {
        **{name: round(ms) for name, ms in shown.items()},
        "other Java threads": round(rest),
        "GC and VM threads": round(broker_ms_per_s - sum(by_kind.values())),
    }
