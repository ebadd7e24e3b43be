"""Fault injection for tests only: ORDERFLOW_FAULT=<point> crashes or hangs at that point.

A crash is ``os._exit(137)`` (what SIGKILL looks like), so no ``finally`` block, flush or
commit runs: the test sees exactly the state a crash leaves behind. A hang blocks the calling
thread for good, like a client call that never returns. A delay holds one step back for
ORDERFLOW_FAULT_DELAY_S seconds.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from process_manager import Decide, Outcome, handle

RELAY_CRASH_AFTER_PUBLISH = "relay_crash_after_publish"
HANDLER_CRASH_BEFORE_OFFSET_COMMIT = "handler_crash_before_offset_commit"
PROCESSOR_HANG_BEFORE_OFFSETS = "processor_hang_before_offsets"
# The Faust worker hands table changelog records to its producer this late (seconds in
# ORDERFLOW_FAULT_DELAY_S), as when its event loop is busy or the broker is away.
CHANGELOG_PUBLISH_DELAY = "changelog_publish_delay"
# The Faust worker's recovery takes in each table changelog record this late
# (ORDERFLOW_FAULT_DELAY_S), as when its event loop is busy: fetched records wait in its queue.
CHANGELOG_EVENT_DELAY = "changelog_event_delay"
# The process manager's handler raises for messages of the order ids that contain
# ORDERFLOW_FAULT_MATCH, of the types in ORDERFLOW_FAULT_TYPES (comma-separated; all if unset):
# a bug that breaks one process.
PROCESS_HANDLER_ERROR = "process_handler_error"


class InjectedFault(Exception):
    """The exception a fault raises."""


def crash_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        os._exit(137)


def hang_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        threading.Event().wait()


async def delay_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        await asyncio.sleep(float(os.environ.get("ORDERFLOW_FAULT_DELAY_S", "10")))


def faulty_handle() -> Decide:
    """``handle``, or with ``PROCESS_HANDLER_ERROR`` set, a ``handle`` that raises for the
    configured orders and message types."""
    if os.environ.get("ORDERFLOW_FAULT") != PROCESS_HANDLER_ERROR:
        return handle
    match = os.environ.get("ORDERFLOW_FAULT_MATCH", "")
    types = {t for t in os.environ.get("ORDERFLOW_FAULT_TYPES", "").split(",") if t}

    def decide(process: Any, envelope: Any, **kwargs: Any) -> Outcome:
        if match in envelope.correlation_id and (not types or envelope.type in types):
            raise InjectedFault(f"injected fault for {envelope.type} of {envelope.correlation_id}")
        return handle(process, envelope, **kwargs)

    return decide
