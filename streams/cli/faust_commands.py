"""The orderflow commands as Faust custom commands of the worker's app (``@app.command``).

    faust -A streams.cli.faust_commands dead-letters list --json
    faust -A streams.cli.faust_commands worker -l info       the worker itself, as always

The worker module must not import the offline tools, so the commands are registered here, in a
module that imports the worker's app: ``-A`` names this module instead. Each command takes its
arguments as they are and hands them to the same click command ``orderflow`` runs
(``streams.cli.main.COMMANDS``); ``worker`` is Faust's own. Importing the worker asks Kafka
for its metadata first, as a worker start does.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, NoReturn

import click
from faust.cli import AppCommand, argument

from streams.cli.main import COMMANDS, load
from streams.process.worker import app

FAUSTS_OWN = frozenset({"worker"})


class Passthrough(AppCommand):
    """A Faust command that runs one orderflow command with the arguments it was given."""

    abstract: ClassVar[bool] = True  # Faust registers the subclasses, not this base
    orderflow_command: str

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        command = load(self.orderflow_command)
        given = list(self.kwargs.get("args", ()))
        prog = f"faust -A {__name__} {self.orderflow_command}"
        command.main(args=given, prog_name=prog, standalone_mode=True)
        sys.exit(0)  # pragma: no cover: standalone_mode exits


def register(name: str) -> type[AppCommand]:
    """``name`` as a Faust command of ``app``, passing every argument through."""

    async def run(self: Any) -> None:  # pragma: no cover: Passthrough.__call__ runs instead
        raise NotImplementedError

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    run.__doc__ = load(name).get_short_help_str(limit=300)
    command: type[AppCommand] = app.command(
        argument("args", nargs=-1, type=click.UNPROCESSED),
        base=Passthrough,
        orderflow_command=name,
    )(run)
    # Options belong to the orderflow command (its --help and --json too), not to Faust.
    command._click.context_settings.update(
        ignore_unknown_options=True, allow_interspersed_args=False, help_option_names=[]
    )
    return command


FAUST_COMMANDS = {name: register(name) for name in COMMANDS if name not in FAUSTS_OWN}
