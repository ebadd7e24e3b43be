"""Fault injection for tests only: ORDERFLOW_FAULT=<point> crashes or hangs at that point.

A crash is ``os._exit(137)`` (what SIGKILL looks like), so no ``finally`` block, flush or
commit runs: the test sees exactly the state a crash leaves behind. A hang blocks the calling
thread for good, like a client call that never returns.
"""

from __future__ import annotations

import os
import threading

RELAY_CRASH_AFTER_PUBLISH = "relay_crash_after_publish"
HANDLER_CRASH_BEFORE_OFFSET_COMMIT = "handler_crash_before_offset_commit"
PROCESSOR_HANG_BEFORE_OFFSETS = "processor_hang_before_offsets"


def crash_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        os._exit(137)


def hang_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        threading.Event().wait()
