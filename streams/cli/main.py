"""The ``orderflow`` command line.

    orderflow COMMAND [ARGS]...       (installed by ``make venv``; ``python -m streams.cli``)

Every command is a click command in a module of its own, named in ``COMMANDS`` and imported
only when it runs (or when ``--help`` lists them): adding one is one line there. The same
commands are Faust custom commands of the worker's app (``streams.cli.faust_commands``).

Exit codes: 0 done; 1 refused (an operator request the worker declined, a dead letter that
may not be redriven) or differences found (``verify``); 2 a usage error, or nothing to talk to
(no worker answering, no topic). A refusal or failure is one line on stderr.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from streams import collector

COMMANDS: dict[str, str] = {
    "worker": "streams.cli.tools:worker",
    "cancel": "streams.cli.operator:cancel",
    "resume": "streams.cli.operator:resume",
    "skip": "streams.cli.operator:skip",
    "processes": "streams.cli.processes:processes",
    "stock": "streams.cli.stock:stock",
    "verify": "streams.cli.tools:verify",
    "replay": "streams.cli.tools:replay",
    "dead-letters": "streams.cli.dead_letters:dead_letters",
    "dry-run": "streams.tools.dry_run:command",
    "timeline": "streams.tools.timeline:command",
}
"""Every command, by name: ``module:attribute`` of its click command (or group)."""


def load(name: str) -> click.Command:
    """The click command registered as ``name``."""
    module, _, attribute = COMMANDS[name].partition(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command), f"{COMMANDS[name]} is not a click command"
    return command


class LazyGroup(click.Group):
    """A group whose commands are imported when asked for, from ``COMMANDS``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load(cmd_name) if cmd_name in COMMANDS else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """orderflow: run and operate the order process manager."""


def main(args: Any = None) -> None:
    collector.tune(full_every_s=None)  # replay and verify keep a partition's records to fold
    cli.main(args=args, prog_name="orderflow")
