"""Fault injection for tests only: ORDERFLOW_FAULT=<point> kills the process at that point.

The process dies with ``os._exit(137)`` (what SIGKILL looks like), so no ``finally`` block,
flush or commit runs: the test sees exactly the state a crash leaves behind.
"""

from __future__ import annotations

import os

RELAY_CRASH_AFTER_PUBLISH = "relay_crash_after_publish"
HANDLER_CRASH_BEFORE_OFFSET_COMMIT = "handler_crash_before_offset_commit"


def crash_point(name: str) -> None:
    if os.environ.get("ORDERFLOW_FAULT") == name:
        os._exit(137)
