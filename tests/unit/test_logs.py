"""Logging set-up: what every process gets from ``configure_logging``."""

from __future__ import annotations

import faulthandler
import logging
from collections.abc import Iterator

import pytest
import structlog

from streams.observability import logs


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Logging not set up and no fault handler; afterwards, all of it as it was (the set-up
    binds structlog and the root logger to this test's captured stderr)."""
    was_enabled = faulthandler.is_enabled()
    structlog_config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(logs, "_configured", False)
    faulthandler.disable()
    yield
    structlog.configure(**structlog_config)
    root.handlers[:], root.level = handlers, level
    if was_enabled:
        faulthandler.enable()
    else:
        faulthandler.disable()


@pytest.mark.usefixtures("unconfigured")
def test_a_configured_process_writes_python_stacks_when_c_code_crashes() -> None:
    # given a process whose logging is not set up, and no fault handler
    assert not faulthandler.is_enabled()

    # when it sets up its logging
    logs.configure_logging("json", "INFO")

    # then a crash in C code (SIGSEGV) writes every thread's Python stack to stderr
    assert faulthandler.is_enabled()
