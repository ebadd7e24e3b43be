"""Operate the shipment module.

python -m streams.modules.shipment migrate                 apply the database migrations
python -m streams.modules.shipment outbox                  show published and pending outbox rows
python -m streams.modules.shipment run [--only handler|relay]
                                                   run the command handler and the outbox
                                                   relay until SIGINT or SIGTERM

The stock is set and listed with ``orderflow stock`` (``streams.cli.stock``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from streams.modules.shipment import store
from streams.modules.shipment.handler import ShipmentHandler
from streams.modules.shipment.outbox import OutboxRelay
from streams.observability.logs import configure_logging, get_logger
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.settings import Settings, get_settings

log = get_logger(__name__)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = settings or get_settings()
    command: Callable[[argparse.Namespace, Settings], int] = args.command
    return command(args, settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streams.modules.shipment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    p = commands.add_parser("migrate", help="apply the database migrations")
    p.set_defaults(command=_migrate)

    p = commands.add_parser("outbox", help="show published and pending outbox rows per topic")
    p.set_defaults(command=_outbox)

    p = commands.add_parser("run", help="run the command handler and the outbox relay")
    p.add_argument("--only", choices=["handler", "relay"], help="run just one of the two")
    p.add_argument("--batch-size", type=int, default=200, help="commands per consumer batch")
    p.set_defaults(command=_run)
    return parser


def _migrate(_: argparse.Namespace, settings: Settings) -> int:
    applied = migrate(settings.database_url)
    print("applied: " + ", ".join(applied) if applied else "the database is up to date")
    return 0


def _outbox(_: argparse.Namespace, settings: Settings) -> int:
    migrate(settings.database_url)
    with connect(settings.database_url) as conn:
        counts = store.outbox_counts(conn)
    if not counts:
        print("the outbox is empty")
        return 0
    _table(("TOPIC", "PENDING", "PUBLISHED"), [(t, str(p), str(d)) for t, p, d in counts])
    return 0


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _run(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_format, settings.log_level)
    migrate(settings.database_url)
    stop = threading.Event()
    failed = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()  # only this: logging from a signal handler can deadlock

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    components: dict[str, Callable[[threading.Event], None]] = {}
    relay = OutboxRelay(settings)
    if args.only in (None, "handler"):
        handler = ShipmentHandler(settings, batch_size=args.batch_size, on_commit=relay.wake)
        components["handler"] = handler.run
    if args.only in (None, "relay"):
        components["relay"] = relay.run

    def guarded(name: str, target: Callable[[threading.Event], None]) -> None:
        try:
            target(stop)
        except BaseException:
            log.exception("component crashed", component=name)
            failed.set()
            stop.set()

    threads = [
        threading.Thread(target=guarded, args=(name, target), name=name, daemon=True)
        for name, target in components.items()
    ]
    for thread in threads:
        thread.start()
    log.info("shipment module running; SIGINT or SIGTERM stops it", components=list(components))
    while not stop.wait(0.5):
        pass
    log.info("stopping", components=list(components))
    for thread in threads:
        thread.join(30)
    return 1 if failed.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
