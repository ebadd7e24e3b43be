"""Runs the module services (the command handlers and the shipment outbox relay) in threads.

    python -m streams.modules.runner [--only carts,orders,payments,shipments,outbox,read_model]
                             [--metrics-port PORT]

The same components run inside every Faust worker (see streams/process/worker.py); this entry point
runs them on their own, for tests and for operators who scale modules separately.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Protocol

import prometheus_client

from streams import collector
from streams.kafka.admin import KafkaAccessError, check_access
from streams.modules.definitions import modules
from streams.modules.processor import AggregateProcessor
from streams.modules.shipment.handler import ShipmentHandler
from streams.modules.shipment.outbox import OutboxRelay
from streams.observability import liveness, metrics
from streams.observability.logs import configure_logging, get_logger
from streams.postgres.migrate import migrate
from streams.read_model.projector import OrdersProjector
from streams.settings import Settings, get_settings

log = get_logger(__name__)


class Component(Protocol):
    """A long-running part of a module; `ready` is set once it serves its partitions."""

    ready: threading.Event

    def run(self, stop: threading.Event) -> None: ...


def module_components(
    settings: Settings, only: Sequence[str] | None = None
) -> dict[str, Component]:
    """The command handlers of every module (or of those named in ``only``): one loop,
    ``aggregates``, for the event-sourced ones, and the shipment module's handler and outbox.

    The shipment module's schema is migrated first, so its handler finds its tables.
    """
    delay = timedelta(seconds=settings.payment_settlement_delay_s)
    aggregates = [module for module in modules(delay) if not only or module.name in only]
    relay = OutboxRelay(settings)
    found: dict[str, Component] = {
        "shipments": ShipmentHandler(settings, on_commit=relay.wake),
        "outbox": relay,
        "read_model": OrdersProjector(settings),
    }
    selected = {name: c for name, c in found.items() if not only or name in only}
    if aggregates:
        selected = {"aggregates": AggregateProcessor(aggregates, settings), **selected}
    if "shipments" in selected or "outbox" in selected:
        migrate(settings.database_url)
    return selected


def start(
    components: dict[str, Component], stop: threading.Event, stall_exit_after_s: float
) -> list[threading.Thread]:
    """Each component in a thread named after it, and the watchdog over their loops."""
    liveness.watch(stop, stall_exit_after_s)
    threads = []
    for name, component in components.items():
        thread = threading.Thread(target=_guarded(name, component, stop), name=name, daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _guarded(name: str, component: Component, stop: threading.Event) -> Callable[[], None]:
    def run() -> None:
        while not stop.is_set():
            try:
                component.run(stop)
            except Exception:
                log.exception("component crashed; restarting", component=name)
                stop.wait(1.0)
        liveness.retire()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.modules.runner")
    parser.add_argument("--only", help="comma-separated module names")
    parser.add_argument("--metrics-port", type=int, help="serve GET /metrics on this port")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    collector.tune()
    try:
        check_access(settings, say=log.warning)
    except KafkaAccessError as error:
        raise SystemExit(f"kafka: {error}") from None
    if args.metrics_port:
        # the module counters (commands_decided_total, outbox_published_total, dead letters)
        prometheus_client.start_http_server(
            args.metrics_port, addr=settings.web_bind, registry=metrics.REGISTRY
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    only = args.only.split(",") if args.only else None
    components = module_components(settings, only)
    threads = start(components, stop, settings.stall_exit_after_s)
    for component in components.values():
        component.ready.wait()
    log.info("modules running", modules=[t.name for t in threads])
    stop.wait()
    for thread in threads:
        thread.join(timeout=30)


if __name__ == "__main__":
    main()
