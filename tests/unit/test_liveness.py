"""The watchdog over the module loops (streams/observability/liveness.py)."""

from __future__ import annotations

import threading
import time

from streams.observability import liveness


def _in_thread(name: str, action: object) -> None:
    thread = threading.Thread(target=action, name=name)  # type: ignore[arg-type]
    thread.start()
    thread.join()


def test_a_loop_that_stopped_beating_is_reported_with_how_long_it_has_been_silent() -> None:
    # Given two loops that beat, one of them long ago
    _in_thread("quiet-loop", liveness.beat)
    liveness._beats["quiet-loop"] -= 100.0
    _in_thread("busy-loop", liveness.beat)

    # When the watchdog looks with a 60 s limit
    silent = liveness.stalled(time.monotonic(), stall_after_s=60.0)

    # Then only the quiet loop is reported, silent for about 100 s
    assert set(silent) >= {"quiet-loop"}
    assert "busy-loop" not in silent
    assert 99.0 < silent["quiet-loop"] < 110.0
    _in_thread("quiet-loop", liveness.retire)
    _in_thread("busy-loop", liveness.retire)


def test_a_retired_loop_is_no_longer_watched() -> None:
    # Given a loop that beat long ago and then ended on purpose
    _in_thread("finished-loop", liveness.beat)
    liveness._beats["finished-loop"] -= 100.0
    _in_thread("finished-loop", liveness.retire)

    # When the watchdog looks
    silent = liveness.stalled(time.monotonic(), stall_after_s=60.0)

    # Then it is not reported
    assert "finished-loop" not in silent


def test_the_watch_thread_calls_on_stall_for_a_silent_loop_and_stops_when_told() -> None:
    # Given a loop silent for longer than the limit, and a watchdog that records instead of exiting
    _in_thread("stuck-loop", liveness.beat)
    liveness._beats["stuck-loop"] -= 10.0
    reports: list[dict[str, float]] = []
    stop = threading.Event()

    # When the watchdog runs with a 4 s limit (it checks every second)
    watcher = liveness.watch(stop, stall_after_s=4.0, on_stall=reports.append)
    deadline = time.monotonic() + 10.0
    while not reports and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    watcher.join(timeout=5.0)

    # Then it reported the stuck loop, and its thread ended
    assert reports and "stuck-loop" in reports[0]
    assert not watcher.is_alive()
    _in_thread("stuck-loop", liveness.retire)


def test_the_stack_of_a_stuck_loop_shows_the_call_it_waits_in() -> None:
    # Given a loop thread waiting in a call that does not return
    release = threading.Event()

    def wait_for_the_broker() -> None:
        release.wait()

    thread = threading.Thread(target=wait_for_the_broker, name="stuck-in-a-call")
    thread.start()
    try:
        # When the watchdog takes the stacks of that thread and of one that does not exist,
        # once the thread has had time to reach its call
        deadline = time.monotonic() + 5.0
        found = liveness.stacks(["stuck-in-a-call", "no-such-loop"])
        while not found["stuck-in-a-call"][-1].endswith("in wait") and time.monotonic() < deadline:
            time.sleep(0.01)
            found = liveness.stacks(["stuck-in-a-call", "no-such-loop"])
    finally:
        release.set()
        thread.join()

    # Then the stuck thread's stack ends in the waiting call, below the loop's function
    assert set(found) == {"stuck-in-a-call"}
    stack = found["stuck-in-a-call"]
    assert any(line.endswith("in wait_for_the_broker") for line in stack)
    assert stack[-1].endswith("in wait")
