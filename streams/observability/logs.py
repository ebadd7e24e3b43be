"""structlog, configured once: JSON lines for machines or console output for people (LOG_FORMAT).

structlog renders its own lines and writes them straight to stderr, so a Faust worker's own
logging set-up (which takes over the standard library's root logger) cannot re-wrap them.

A crash in C code (librdkafka, RocksDB, psycopg's libpq) kills the process with no Python
traceback; ``faulthandler`` then writes the Python stacks to stderr, beside the logs. It cannot
help when the crashing thread has no Python frames: the module runners' SIGSEGV in librdkafka's
own main thread (2026-12-07, ``streams.kafka.consuming.offsets_reader``) left nothing, and was
found with a core file and gdb.
"""

from __future__ import annotations

import faulthandler
import logging
import sys

import structlog

_configured = False


def configure_logging(log_format: str = "console", level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    faulthandler.enable()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks
            if log_format == "json"
            else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level.upper(), stream=sys.stderr)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(logger_name=name)  # type: ignore[no-any-return]
