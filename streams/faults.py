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

RELAY_CRASH_AFTER_PUBLISH = "relay_crash_after_publish"
HANDLER_CRASH_BEFORE_OFFSET_COMMIT = "handler_crash_before_offset_commit"
PROCESSOR_HANG_BEFORE_OFFSETS = "processor_hang_before_offsets"
# The Faust worker hands table changelog records to its producer this late (seconds in
# ORDERFLOW_FAULT_DELAY_S), as when its event loop is busy or the broker is away.
CHANGELOG_PUBLISH_DELAY = "changelog_publish_delay"


def crash_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        os._exit(137)


def hang_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        threading.Event().wait()


async def delay_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        await asyncio.sleep(float(os.environ.get("ORDERFLOW_FAULT_DELAY_S", "10")))
