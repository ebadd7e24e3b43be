"""The final report of a chaos run: what was done to the system, how it came back, how the
orders ended, and what the checker and verify found. Printed, and kept as summary.json."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tests.chaos.conductor import Event
from tests.chaos.plan import Profile

SHOWN: Final = 20  # violations and differences shown; check.json has them all


@dataclass
class Summary:
    profile: Profile
    seed: int
    rerun: str
    run_dir: Path
    orders: int
    ended: int
    outcomes: dict[str, int]
    events: list[Event]
    not_done: list[str]
    left_behind: dict[str, int] | None
    """Records each group has not consumed, per ``"<group> <topic>"`` (``None``: the run
    did not get as far as measuring)."""
    check_code: int
    findings: dict[str, Any]
    elapsed_s: float
    feed_error: str | None
    conductor_error: str | None
    pause: dict[str, Any] | None = None
    """A cluster node's kill: how long the leaders took to move and the orders to end again
    (``pause_figures``)."""

    @property
    def violations(self) -> list[str]:
        return list(self.findings.get("violations", []))

    @property
    def verify_differences(self) -> list[dict[str, Any]]:
        return list((self.findings.get("verify") or {}).get("differences", []))

    def failures(self) -> list[str]:
        found = []
        if self.ended < self.orders:
            found.append(f"only {self.ended} of {self.orders} processes ended in time")
        if self.left_behind:
            found.append(f"records left unconsumed: {sum(self.left_behind.values())}")
        elif self.left_behind is None and self.ended == self.orders:
            found.append("consumer lag never measured")
        if self.not_done:
            found.append(f"{len(self.not_done)} planned faults not carried out")
        if self.check_code != 0:
            found.append(
                f"checker exit {self.check_code}: {len(self.violations)} violations, "
                f"{len(self.verify_differences)} verify differences"
            )
        if self.pause is not None and self.pause["leaders_moved_s"] is None:
            found.append("the killed node's partitions never had other leaders")
        found += [f"feeder failed: {self.feed_error}"] if self.feed_error else []
        found += [f"conductor failed: {self.conductor_error}"] if self.conductor_error else []
        return found

    def passed(self) -> bool:
        return not self.failures()

    def render(self) -> str:
        kills = [e for e in self.events if e.kind == "kill"]
        exits = [e for e in self.events if e.kind == "exit" and e.detail["was_ready"]]
        failed_starts = Counter(
            e.target for e in self.events if e.kind == "exit" and not e.detail["was_ready"]
        )
        watchdog = sum(1 for e in exits if e.detail.get("exit_code") == 70)
        lines = [
            "",
            f"chaos summary: profile {self.profile.name}, seed {self.seed}",
            f"  re-run: {self.rerun}",
            f"  logs: {self.run_dir}/ (every generation of every process)",
            f"  total {self.elapsed_s:.1f} s; {self.orders} orders fed over "
            f"{self.profile.feed_s:.0f} s, {self.ended} ended",
            f"  faults (seconds since the feed started): {len(kills)} kills, "
            f"{sum(1 for e in self.events if e.kind == 'broker')} broker outages",
        ]
        for event in sorted((e for e in self.events if e.kind != "exit"), key=lambda e: e.at_s):
            lines.append(f"    {_fault_line(event)}")
        lines += [f"  planned faults not carried out: {', '.join(self.not_done) or 'none'}"]
        lines += [f"  exits by themselves: {len(exits)} (watchdog exit 70: {watchdog})"]
        lines += [f"    {_fault_line(e)}" for e in exits]
        starts = ", ".join(f"{name} {n}" for name, n in sorted(failed_starts.items()))
        lines += [f"  starts that exited before they were ready: {starts or 'none'}"]
        if self.pause is not None:
            lines += [f"  pause: {_pause_line(self.pause)}"]
        lines += [f"  outcomes: {json.dumps(self.outcomes)}"]
        left = "not measured" if self.left_behind is None else self.left_behind or "none"
        lines += [f"  records left unconsumed: {left}"]
        lines += [f"  checker: exit {self.check_code}, {len(self.violations)} violations"]
        lines += [f"    {v}" for v in self.violations[:SHOWN]]
        if len(self.violations) > SHOWN:
            lines.append(f"    ... and {len(self.violations) - SHOWN} more (check.json)")
        kinds = Counter(d.get("kind", "?") for d in self.verify_differences)
        lines += [f"  verify: {len(self.verify_differences)} differences {dict(kinds)}"]
        lines += [
            f"    {d.get('order_id')}: {d.get('kind')} {json.dumps(d.get('fields', {}))}"
            for d in self.verify_differences[:SHOWN]
        ]
        failures = self.failures()
        lines += [f"  result: {'FAIL' if failures else 'PASS'}"]
        lines += [f"    {failure}" for failure in failures]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "profile": dataclasses.asdict(self.profile),
            "seed": self.seed,
            "rerun": self.rerun,
            "orders": self.orders,
            "ended": self.ended,
            "elapsed_s": round(self.elapsed_s, 1),
            "events": [e.as_json() for e in self.events],
            "not_done": self.not_done,
            "outcomes": self.outcomes,
            "left_behind": self.left_behind,
            "check_exit": self.check_code,
            "violations": self.violations,
            "verify_differences": self.verify_differences,
            "pause": self.pause,
            "failures": self.failures(),
        }


WINDOW_S: Final = 10.0


def pause_figures(
    killed_at: float, leaders_moved_at: float | None, back_at: float | None, ended: list[float]
) -> dict[str, Any]:
    """The pause a node's kill made, from the times (one clock) the node was killed, no
    partition was led by it any more, it answered again, and each order was seen to end:
    seconds from the kill until the leaders moved and until the first order ended after it,
    the longest gap between two orders ending (where it began), and orders ended per second
    in the ``WINDOW_S`` before the kill and after it."""
    times = sorted(ended)
    after = [t for t in times if t > killed_at]
    gaps = [(b - a, a) for a, b in zip(times, times[1:], strict=False)]
    longest, gap_at = max(gaps, default=(0.0, 0.0))
    # the gap the kill fell in: from the last order ended before it to the first after it
    before = [t for t in times if t <= killed_at]
    around = after[0] - before[-1] if after and before else None

    def since_kill(t: float | None) -> float | None:
        return None if t is None else round(t - killed_at, 1)

    def rate(lo: float, hi: float) -> float:
        return round(sum(1 for t in times if lo <= t < hi) / (hi - lo), 1)

    return {
        "killed_at_s": round(killed_at, 1),
        "leaders_moved_s": since_kill(leaders_moved_at),
        "first_end_after_kill_s": since_kill(after[0] if after else None),
        "gap_around_kill_s": None if around is None else round(around, 1),
        "longest_gap_s": round(longest, 1),
        "longest_gap_at_s": round(gap_at, 1),
        "ended_per_s_before": rate(killed_at - WINDOW_S, killed_at),
        "ended_per_s_after": rate(killed_at, killed_at + WINDOW_S),
        "node_back_s": since_kill(back_at),
    }


def _pause_line(p: dict[str, Any]) -> str:
    return (
        f"node killed at {p['killed_at_s']} s; its partitions had other leaders after "
        f"{p['leaders_moved_s']} s; the first order ended {p['first_end_after_kill_s']} s after "
        f"the kill (gap around the kill {p['gap_around_kill_s']} s); orders ended "
        f"{p['ended_per_s_before']}/s in the {WINDOW_S:.0f} s before it, "
        f"{p['ended_per_s_after']}/s in the {WINDOW_S:.0f} s after; longest gap between two "
        f"orders ending in the run {p['longest_gap_s']} s (at {p['longest_gap_at_s']} s); "
        f"node answering again {p['node_back_s']} s after the kill"
    )


def _fault_line(event: Event) -> str:
    resumed = (
        "never ready again"
        if event.resumed_after_s is None
        else f"ready again after {event.resumed_after_s:.1f} s"
    )
    if event.kind == "broker" and "node" in event.detail:
        d = event.detail
        return (
            f"{event.at_s:6.1f} s  SIGKILL cluster node {d['node']} (leading {d['leaders']} "
            f"of {d['partitions']} watched partitions; leaders moved after "
            f"{d.get('leaders_moved_s')} s), started again after {d['held_down_s']} s "
            f"(start {d['start_s']} s): answering again after {d['unavailable_s']} s"
        )
    if event.kind == "broker":
        d = event.detail
        return (
            f"{event.at_s:6.1f} s  broker stopped (stop {d['stop_s']} s, held down "
            f"{d['held_down_s']} s, start {d['start_s']} s): answering again after "
            f"{d['unavailable_s']} s"
        )
    if event.kind == "exit":
        code = event.detail["exit_code"]
        return f"{event.at_s:6.1f} s  {event.target} exited with {code}: {resumed}"
    late = event.detail.get("late_s", 0)
    when = f"[{event.planned}{f', {late} s late' if late >= 1 else ''}]"
    return (
        f"{event.at_s:6.1f} s  SIGKILL {event.target} {when} "
        f"(broker {event.detail.get('broker')}): {resumed}"
    )
