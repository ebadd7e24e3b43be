"""Faust's restore of a changelog written in Kafka transactions, outside its exactly_once mode.

Faust restores an active partition until it has seen offset ``highwater - 1``
(``Recovery._build_highwaters``). On a changelog written in transactions that offset is the
last commit marker, which no consumer ever receives, so the restore waits for ever ("No event
received for active tp ..."). Faust has the fix, ``detect_aborted_tx`` in
``Recovery._slurp_changelogs``, but runs it only when ``app.in_transaction`` (faust-streaming
#47 is the same hang in exactly_once mode before that fix). This patch counts an active
partition as restored once the consumer's fetch position has passed the highwater and no
changelog record came for QUIET_S, whatever the processing guarantee.
"""

from __future__ import annotations

from collections import Counter
from time import monotonic
from typing import Any

from faust.tables import recovery as faust_recovery

_faust_active_remaining = faust_recovery.Recovery.active_remaining


def _position(app: Any, tp: Any) -> int | None:
    """The aiokafka consumer's fetch position of ``tp`` (read from Faust's consumer thread's
    state: a plain attribute read), or None."""
    consumer = app.consumer._thread._ensure_consumer()
    subscription = consumer._subscription
    if not subscription.is_assigned(tp):
        return None
    state = subscription.subscription.assignment.state_value(tp)
    return int(state.position) if state is not None and state.has_valid_position else None


# The records the consumer has fetched can still be on their way to the recovery's queue; so a
# position past the highwater counts only once no changelog record came for this long (the
# recovery checks again after every 5 s without one). Faust's detect_aborted_tx waits for two
# such rounds.
QUIET_S = 4.0


def active_remaining(recovery: Any) -> Counter[Any]:
    remaining: Counter[Any] = _faust_active_remaining(recovery)
    received = recovery._active_events_received_at.values()
    if monotonic() - max(received, default=0.0) < QUIET_S:
        return remaining
    for tp, left in list(remaining.items()):
        if left <= 0:
            continue
        position = _position(recovery.app, tp)
        if position is not None and position > recovery.active_highwaters[tp]:
            recovery.active_offsets[tp] = recovery.active_highwaters[tp]
            remaining[tp] = 0
    return remaining


def use_marker_safe_restore() -> None:
    faust_recovery.Recovery.active_remaining = active_remaining  # type: ignore[method-assign,assignment]
