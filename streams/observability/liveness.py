"""A watchdog for the module threads: a loop that stops turning ends the worker.

Every module loop calls ``beat()`` once a turn. A loop that has not beaten for
``STALL_EXIT_AFTER_S`` is stuck in a call that will not return, and no code in this process
can free it; so the watchdog exits the process with ``EXIT_STALLED`` and its supervisor
(``deploy/workers.sh``, systemd, Kubernetes) starts it again. A restarted worker rebuilds
everything from Kafka, which is what the design already relies on after a crash.

The one stall seen so far: librdkafka's ``send_offsets_to_transaction`` ignores its timeout
and can wait for ever after a broker restart (confluentinc/librdkafka#5456, #5511).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable

from streams.observability.logs import get_logger

log = get_logger(__name__)

EXIT_STALLED = 70  # EX_SOFTWARE

_beats: dict[str, float] = {}


def beat() -> None:
    """This thread's loop turned (threads are named after their component)."""
    _beats[threading.current_thread().name] = time.monotonic()


def retire() -> None:
    """This thread's loop ended on purpose: stop watching it."""
    _beats.pop(threading.current_thread().name, None)


def stalled(now: float, stall_after_s: float) -> dict[str, float]:
    """The loops silent for longer than ``stall_after_s``, with how long they have been."""
    return {name: now - at for name, at in list(_beats.items()) if now - at > stall_after_s}


def stacks(names: Iterable[str]) -> dict[str, list[str]]:
    """Where each of the named threads is now, innermost call last ("file:line in function")."""
    frames = sys._current_frames()
    wanted = set(names)
    return {
        thread.name: [
            f"{frame.filename}:{frame.lineno} in {frame.name}"
            for frame in traceback.extract_stack(frames[thread.ident])
        ]
        for thread in threading.enumerate()
        if thread.name in wanted and thread.ident in frames
    }


def _exit_stalled(silent: dict[str, float]) -> None:
    log.critical(
        "module loop stalled; exiting so the supervisor restarts this worker",
        silent_s={name: round(s, 1) for name, s in silent.items()},
        stuck_in={name: stack[-6:] for name, stack in stacks(silent).items()},
        exit_code=EXIT_STALLED,
    )
    sys.stderr.flush()
    os._exit(EXIT_STALLED)


def watch(
    stop: threading.Event,
    stall_after_s: float,
    on_stall: Callable[[dict[str, float]], None] = _exit_stalled,
) -> threading.Thread:
    """Check the loops every few seconds in a daemon thread until ``stop`` is set."""

    def check() -> None:
        while not stop.wait(min(5.0, stall_after_s / 4)):
            silent = stalled(time.monotonic(), stall_after_s)
            if silent:
                on_stall(silent)

    thread = threading.Thread(target=check, name="watchdog", daemon=True)
    thread.start()
    return thread
