"""The process queries of the web view, pure: list filters, the stalled rule, summaries.

A process is *stalled* when it is not terminal and its deadline has passed, or it has not moved
for ``stalled_after`` seconds (60 by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from process_manager import Process, State, is_quarantined, is_terminal

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
STALLED_AFTER = timedelta(seconds=60)
SUMMARY_FIELDS = {
    "order_id",
    "state",
    "deadline",
    "client_id",
    "total_price",
    "currency",
    "payment_method",
    "cancellation_reason",
    "escalation",
}


class Unavailable(Exception):
    """The answer needs a worker or a partition that is not there right now (503)."""


@dataclass(frozen=True)
class Query:
    """The filters of a list request."""

    state: State | None = None
    stalled: bool = False
    quarantined: bool = False
    limit: int = DEFAULT_LIMIT
    stalled_after: timedelta = STALLED_AFTER

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        """The query of request parameters; ``ValueError`` with a readable reason otherwise."""
        state = params.get("state") or None
        if state is not None and state not in State.__members__:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(State)}")
        limit = _number(params, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        after = _number(params, "stalled_after", STALLED_AFTER.total_seconds())
        if after < 0:
            raise ValueError("stalled_after must not be negative")
        return cls(
            state=State(state) if state else None,
            stalled=flag(params.get("stalled")),
            quarantined=flag(params.get("quarantined")),
            limit=int(limit),
            stalled_after=timedelta(seconds=after),
        )

    def params(self) -> dict[str, str]:
        """The request parameters that parse back to this query."""
        params = {
            "stalled": "true" if self.stalled else "false",
            "quarantined": "true" if self.quarantined else "false",
            "limit": str(self.limit),
            "stalled_after": str(self.stalled_after.total_seconds()),
        }
        return params | ({"state": self.state.value} if self.state else {})

    def matches(self, process: Process, now: datetime) -> bool:
        if self.state is not None and process.state != self.state:
            return False
        if self.quarantined and not is_quarantined(process):
            return False
        return not self.stalled or is_stalled(process, now, self.stalled_after)


def _number(params: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(params.get(name) or default)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None


def flag(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes", "on"}


def changed_at(process: Process) -> datetime | None:
    return process.history[-1].at if process.history else None


def is_stalled(process: Process, now: datetime, after: timedelta) -> bool:
    """Not terminal, and past its deadline or unmoved for ``after``."""
    if is_terminal(process.state):
        return False
    if process.deadline is not None and process.deadline <= now:
        return True
    changed = changed_at(process)
    return changed is not None and now - changed >= after


def summarize(process: Process, now: datetime, after: timedelta) -> dict[str, Any]:
    """The list entry of a process: its record without items, applied ids and history."""
    summary = process.model_dump(mode="json", include=SUMMARY_FIELDS)
    last = process.history[-1].model_dump(mode="json")["at"] if process.history else None
    quarantine = process.quarantine
    held = None
    if quarantine is not None:
        held = {
            "message_id": quarantine.message.message_id,
            "message_type": quarantine.message.type,
            "reason": quarantine.reason,
            "parked": len(quarantine.parked),
        }
    return summary | {
        "updated_at": last,
        "stalled": is_stalled(process, now, after),
        "quarantine": held,
    }


def latest_first(summary: Mapping[str, Any]) -> tuple[float, str]:
    """Sort key: latest change first, then by order id."""
    at = summary.get("updated_at")
    return (-datetime.fromisoformat(at).timestamp() if at else 0.0, summary["order_id"])


def check_coverage(parts: list[dict[str, Any]], partitions: int) -> None:
    """Every partition covered by exactly one part, or ``Unavailable``."""
    covered = sorted(p for part in parts for p in part["partitions"])
    if covered != list(range(partitions)):
        raise Unavailable(
            f"the workers cover partitions {covered}, not 0..{partitions - 1} once each "
            "(rebalancing?); try again"
        )
